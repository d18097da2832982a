"""Shared helpers of the end-to-end tests."""

import os
import subprocess
import sys

import ml_collections

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "tests", "tiny_config.py")


def cli(*args: str, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
  """Runs `python -m looped_jax.main ARGS` with the test environment (8 CPU devices)."""
  return subprocess.run([sys.executable, "-m", "looped_jax.main", *args], cwd=REPO, text=True,
                        capture_output=True, timeout=timeout, env=dict(os.environ), **popen)


def cli_each(rows: list[list[str]], timeout: float = 300) -> list[subprocess.CompletedProcess]:
  """`cli(*row)` for every row, in one subprocess that forks per row (tests/cli_forks.py):
  each row still gets a fresh process, status and streams, for one interpreter's imports."""
  import json
  done = subprocess.run([sys.executable, os.path.join(REPO, "tests", "cli_forks.py")],
                        input=json.dumps(rows), cwd=REPO, text=True, capture_output=True,
                        timeout=timeout, env=dict(os.environ), check=True)
  return [subprocess.CompletedProcess(row, r["status"], r["stdout"], r["stderr"])
          for row, r in zip(rows, json.loads(done.stdout))]


def tiny_config(**sections) -> ml_collections.ConfigDict:
  import importlib.util
  spec = importlib.util.spec_from_file_location("tiny_config", TINY)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for section, values in sections.items():
    config[section].update(values)
  return config


def metric_records(workdir: str) -> list[dict]:
  """metrics.jsonl without wall-clock fields."""
  from looped_jax import jsonl, run_files
  return [{k: v for k, v in r.items() if not k.startswith("perf/")}
          for r in jsonl.read(os.path.join(workdir, run_files.METRICS))]


def repo_config(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """configs/NAME.py's get_config(arg), loaded from its file (configs/ is not a package)."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config() if arg is None else module.get_config(arg)
