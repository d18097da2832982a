"""SHIFT (L = 1 -> 3 via SCP) vs plain Looped-Attn (L = 3) on the Markov language, same step budget.

Trains both variants of configs/shift_markov.py (one device) and reports, for each, the
training wall-clock (evals and checkpoint saves excluded: `perf/train_seconds`, compilation
included) until `eval/accuracy/complex` (at L=3) first reaches the plain Looped-Attn run's
final value, at eval resolution (every `eval.every` steps); plus SHIFT's switch step, dip
and recovery. Prints one JSON line and writes benchmarks/results/shift_vs_looped.json.

Command:
  PYTHONPATH=. python benchmarks/shift_vs_looped.py [--steps=1500]
Time: about 3-6 minutes on a loaded 2-core CPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import tempfile

import jax

from looped_jax.train import experiment, metrics, trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = "eval/accuracy/complex"


def load_config(steps: int):
  spec = importlib.util.spec_from_file_location(
      "shift_markov", os.path.join(REPO, "configs", "shift_markov.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.train.num_steps = steps
  config.mesh.data = 1
  return config


def seconds_to_reach(records: list[dict], target: float) -> tuple[int | None, float | None]:
  """(first eval step with TARGET >= target, perf/train_seconds logged at that step)."""
  seconds = {r["step"]: r["perf/train_seconds"] for r in records if "perf/train_seconds" in r}
  for r in records:
    if TARGET in r and r[TARGET] >= target:
      return r["step"], seconds.get(r["step"])
  return None, None


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=1500)
  parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results",
                                                    "shift_vs_looped.json"))
  args = parser.parse_args()
  runs = experiment.expand(load_config(args.steps))
  records, summaries = {}, {}
  with tempfile.TemporaryDirectory() as tmp:
    for name in ("looped", "shift"):
      workdir = os.path.join(tmp, name)
      trainer.train(runs[name], workdir, quiet=True)
      records[name] = metrics.read_jsonl(os.path.join(workdir, metrics.METRICS_FILE))
      with open(os.path.join(workdir, "summary.json")) as f:
        summaries[name] = json.load(f)
  target = summaries["looped"][TARGET]
  result = {"benchmark": "shift_vs_looped", "steps": args.steps, "target_metric": TARGET,
            "target": target, "eval_every": runs["looped"].eval.every}
  for name in ("looped", "shift"):
    step, sec = seconds_to_reach(records[name], target)
    result[name] = {"final": summaries[name][TARGET], "step_to_target": step,
                    "seconds_to_target": sec, "train_seconds": summaries[name]["train_seconds"]}
  result["shift"] |= {k: v for k, v in summaries["shift"].items() if k.startswith(("shift/", "perf/"))}
  result["shift"]["criterion"] = runs["shift"].shift.criterion.to_dict()
  result["speedup_to_target"] = (
      result["looped"]["seconds_to_target"] / result["shift"]["seconds_to_target"]
      if result["shift"]["seconds_to_target"] else None)
  result["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                       "jax": jax.__version__, "device": str(jax.devices()[0]),
                       "cpu_count": os.cpu_count(), "load_avg_1_5_15": os.getloadavg()}
  print(json.dumps(result), flush=True)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=2, sort_keys=True)


if __name__ == "__main__":
  main()
