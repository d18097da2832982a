"""looped_jax vs the PyTorch baseline: one process pair, steps alternating A B A B.

  python benchmarks/compare_torch.py [model flags] [--steps 10]
      [--save NAME] [--torch_device cuda] [--torch_matmul_precision high]
      [-- JAX-only flags, e.g. --remat full]

Starts benchmarks/step_throughput.py (A, JAX) and benchmarks/torch_step.py (B, PyTorch) as two
worker processes with the same model flags and --serve; once both have compiled and warmed up,
asks them for one train step at a time, A B A B ..., --steps times each, so that load drifts
of a shared machine hit both sides alike (the other worker idles meanwhile). ratio = torch
median s/step / JAX median s/step (> 1: JAX is faster); the median of the per-pair ratios and
the ratio of process CPU seconds per step are reported too. Prints one JSON line; --save NAME
also writes benchmarks/results/NAME.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MODEL_FLAGS = ("model", "layers", "loops", "window", "d_model", "heads", "batch", "points",
               "dims", "warmup")


class Worker:
  """One benchmark process in --serve mode."""

  def __init__(self, script: str, flags: list[str]):
    self.proc = subprocess.Popen([sys.executable, str(HERE / script), *flags, "--serve"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 env=os.environ.copy())

  def read(self) -> dict:
    line = self.proc.stdout.readline()
    if not line:
      raise RuntimeError(f"worker {self.proc.args[1]} exited with {self.proc.wait()}")
    return json.loads(line)

  def send(self, command: str) -> dict:
    self.proc.stdin.write(command + "\n")
    self.proc.stdin.flush()
    return self.read()

  def finish(self) -> dict:
    result = self.send("done")
    self.proc.wait()
    return result


def main():
  from step_throughput import add_model_flags  # noqa: PLC0415 (after sys.path is set)

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  add_model_flags(parser)
  parser.add_argument("--save", default="")
  parser.add_argument("--torch_device", default="cpu", help="torch_step.py --device")
  parser.add_argument("--torch_matmul_precision", default="highest",
                      help="torch_step.py --matmul_precision (high = TF32, as XLA on a GPU)")
  args, jax_extra = parser.parse_known_args()
  jax_extra = [f for f in jax_extra if f != "--"]
  flags = [f"--{k}={getattr(args, k)}" for k in MODEL_FLAGS]
  torch_flags = [f"--device={args.torch_device}",
                 f"--matmul_precision={args.torch_matmul_precision}"]
  workers = {"jax": Worker("step_throughput.py", flags + jax_extra),
             "torch": Worker("torch_step.py", flags + torch_flags)}
  for w in workers.values():  # both compiled and warmed up before any timed step
    assert w.read()["ready"]
  for i in range(args.steps):
    for name, w in workers.items():
      t = w.send("step")["seconds"]
      print(f"pair {i} {name}: {t:.4f} s", file=sys.stderr, flush=True)
  final = {name: w.finish() for name, w in workers.items()}
  jax_r, torch_r = final["jax"], final["torch"]
  pairs = [t / j for j, t in zip(jax_r["times_s"], torch_r["times_s"])]
  result = {
      "shape": {k: jax_r[k] for k in ("model", "layers", "loops", "window", "d_model", "heads",
                                      "batch", "points", "dims")},
      "jax_extra_flags": jax_extra, "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "order": "one process pair, steps A B A B", "steps": args.steps, "warmup": args.warmup,
      "gflop_per_step": jax_r["gflop_per_step"],
      "jax_median_s": jax_r["median_s"], "torch_median_s": torch_r["median_s"],
      "jax_gflop_per_s": jax_r["gflop_per_s"], "torch_gflop_per_s": torch_r["gflop_per_s"],
      "ratio_torch_over_jax_time": torch_r["median_s"] / jax_r["median_s"],
      "median_pair_ratio": statistics.median(pairs),
      "ratio_torch_over_jax_cpu_time": torch_r["median_cpu_s"] / jax_r["median_cpu_s"],
      "versions": {"jax": jax_r["jax"], "torch": torch_r["torch"],
                   "torch_threads": torch_r["threads"]},
      "devices": {"jax": jax_r["device"], "torch": torch_r["device"]},
      "torch_matmul_precision": torch_r["matmul_precision"],
      "jax_default_matmul_precision": os.environ.get("JAX_DEFAULT_MATMUL_PRECISION", ""),
      "load_average": os.getloadavg(),
      "runs": final,
  }
  if args.save:
    from common import write_result  # noqa: PLC0415
    write_result(args.save, result)
  else:
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
