"""Shared by the benchmarks: machine description and writing results."""

import json
import os
import platform

import jax

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def machine() -> dict:
  return {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
          "platform": jax.default_backend(), "devices": len(jax.devices()),
          "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__}


def write_result(name: str, result: dict) -> str:
  os.makedirs(RESULTS, exist_ok=True)
  path = os.path.join(RESULTS, f"{name}.json")
  with open(path, "w") as f:
    json.dump(result | {"machine": machine()}, f, indent=2, sort_keys=True)
  print(json.dumps(result), flush=True)
  return path
