"""looped_jax vs the PyTorch baseline, alternating processes A B A B, and the speed ratio.

  flock /work/cpu.lock python benchmarks/compare_torch.py [--rounds 2] [model flags]
      [--save NAME]

Runs benchmarks/step_throughput.py (A, JAX) and benchmarks/torch_step.py (B, PyTorch) as
fresh subprocesses in turn, --rounds times each, with the same model flags, so slow drifts of
a shared machine hit both alike. ratio = torch median s/step / JAX median s/step over the
pooled per-process medians (> 1: JAX is faster); each round's ratio is reported too. Extra
flags after `--` go to the JAX process only (e.g. `-- --remat full`). Prints one JSON line;
--save NAME also writes benchmarks/results/NAME.json.
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
               "dims", "warmup", "steps")


def run(script: str, flags: list[str]) -> dict:
  out = subprocess.run([sys.executable, str(HERE / script), *flags], check=True,
                       capture_output=True, text=True, env=os.environ.copy())
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  from step_throughput import add_model_flags  # noqa: PLC0415 (after sys.path is set)

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  add_model_flags(parser)
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--save", default="")
  args, jax_extra = parser.parse_known_args()
  jax_extra = [f for f in jax_extra if f != "--"]
  flags = [f"--{k}={getattr(args, k)}" for k in MODEL_FLAGS]
  runs = {"jax": [], "torch": []}
  for r in range(args.rounds):
    for name, script, extra in (("jax", "step_throughput.py", jax_extra),
                                ("torch", "torch_step.py", [])):
      res = run(script, flags + extra)
      runs[name].append(res)
      print(f"round {r} {name}: {res['median_s']:.4f} s/step, {res['gflop_per_s']:.1f} GFLOP/s",
            file=sys.stderr, flush=True)
  med = {k: statistics.median(r["median_s"] for r in v) for k, v in runs.items()}
  result = {
      "shape": {k: runs["jax"][0][k] for k in ("model", "layers", "loops", "window", "d_model",
                                               "heads", "batch", "points", "dims")},
      "jax_extra_flags": jax_extra, "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "order": "A B " * args.rounds, "steps_per_process": args.steps, "warmup": args.warmup,
      "jax_median_s": med["jax"], "torch_median_s": med["torch"],
      "jax_gflop_per_s": runs["jax"][0]["gflop_per_step"] / med["jax"],
      "torch_gflop_per_s": runs["torch"][0]["gflop_per_step"] / med["torch"],
      "gflop_per_step": runs["jax"][0]["gflop_per_step"],
      "ratio_torch_over_jax_time": med["torch"] / med["jax"],
      "round_ratios": [t["median_s"] / j["median_s"] for j, t in zip(runs["jax"], runs["torch"])],
      "versions": {"jax": runs["jax"][0]["jax"], "torch": runs["torch"][0]["torch"],
                   "torch_threads": runs["torch"][0]["threads"]},
      "runs": runs,
  }
  if args.save:
    from common import write_result  # noqa: PLC0415
    write_result(args.save, result)
  else:
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
