"""Train-step throughput of looped_jax on Yang et al.'s in-context linear regression.

  python benchmarks/step_throughput.py [--model=looped|standard] [--layers 1] [--loops 20]
      [--window 10] [--d_model 256] [--heads 8] [--batch 64] [--points 41] [--dims 20]
      [--warmup 2] [--steps 10] [--remat none] [--unroll U] [--xla_options auto] [--peak]
      [--peak_sizes 2048,3072] [--dtype float32] [--memory] [--serve] [--save NAME]

The model is built from configs/yang_linear_regression.py (looped: one GPT-2 block applied
--loops times with input injection, position embedding and ln_f inside every loop, loss on the
read-outs of the last --window loops; standard: its `standard` variant, --layers blocks applied
once) with the sizes above, and timed through `build.Experiment.train_step`, the jitted step
that training uses (forward, backward, Adam update, donated state). The defaults are the
reference configuration of docs/performance.md: d=256, 8 heads, 1 layer x 20 loops, window 10,
batch 64, 41 points of dimension 20 (82 tokens).

Prints one JSON line: median seconds per step after --warmup steps, steps/s, model GFLOP per
step (looped_jax.models.flops: matmuls only, forward of all loops + backward of the window)
and achieved GFLOP/s. --peak also times a large jitted matmul in --dtype (this device's matmul
peak under JAX) and reports the fraction achieved; --memory adds the compiled memory analysis
of the step at 8 and 64 loops (--steps 0 skips the timing). --serve times one step per
`step` line on stdin instead (compare_torch.py's worker mode). --save NAME writes
benchmarks/results/NAME.json as well.
Anything else goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # This checkout's looped_jax, not an installed one.
sys.path.insert(0, str(ROOT / "benchmarks"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from common import write_result  # noqa: E402
from looped_jax import config as config_lib  # noqa: E402
from looped_jax import models  # noqa: E402
from looped_jax.models import flops  # noqa: E402
from looped_jax.train import build  # noqa: E402

MEMORY_LOOPS = (8, 64)


def add_model_flags(parser: argparse.ArgumentParser) -> None:
  """The command-line contract shared with benchmarks/torch_step.py."""
  parser.add_argument("--model", choices=("looped", "standard"), default="looped")
  parser.add_argument("--layers", type=int, default=1)
  parser.add_argument("--loops", type=int, default=20)
  parser.add_argument("--window", type=int, default=10, help="loops that get gradients")
  parser.add_argument("--d_model", type=int, default=256)
  parser.add_argument("--heads", type=int, default=8)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--points", type=int, default=41, help="in-context points: 2x tokens")
  parser.add_argument("--dims", type=int, default=20, help="input dimension d")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--serve", action="store_true",
                      help="time one step per `step` line on stdin (compare_torch.py)")


def shape(args) -> dict:
  """The run's shape as the JSON reports it; standard models run their layers once."""
  looped = args.model == "looped"
  return {"model": args.model, "layers": args.layers, "loops": args.loops if looped else 1,
          "window": min(args.window, args.loops) if looped else 1, "d_model": args.d_model,
          "heads": args.heads, "batch": args.batch, "points": args.points, "dims": args.dims}


def yang_config(args):
  """configs/yang_linear_regression.py:full at the requested sizes (one variant)."""
  spec = importlib.util.spec_from_file_location("yang", ROOT / "configs/yang_linear_regression.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  full = module.get_config("full")
  c = config_lib.apply_overrides(config_lib.without_variants(full),
                                 dict(full.variants[args.model if args.model == "standard"
                                                    else "looped"]))
  c.task.update(n_dims=args.dims, n_points=args.points, curriculum=False)
  c.model.update(d_model=args.d_model, num_heads=args.heads, num_layers=args.layers,
                 remat=args.remat, dtype=args.dtype)
  if args.unroll >= 0:
    c.model.unroll = args.unroll
  if args.model == "looped":
    c.model.num_loops = args.loops
    c.train.grad_loops = args.window
  c.train.batch_size = args.batch
  c.mesh.data = 1
  c.xla_options = getattr(args, "xla_options", "auto")
  return c


def step_flops(exp: build.Experiment, loops: int) -> int:
  spec = models.ModelSpec.from_config(exp.config.model, exp.task)
  t = exp.config.train
  return flops.train_step(spec, t.batch_size, exp.task.seq_len, loops, t.grad_loops, t.loss_on)


def run_steps(step_fn, args) -> dict:
  """--warmup untimed calls of step_fn (which returns once the step is done), then --steps
  timed ones; with --serve, one timed step per `step` line on stdin, each answered with a
  JSON line, until `done` (the protocol of compare_torch.py, which alternates two workers).
  Returns wall and process-CPU seconds per timed step."""
  for _ in range(args.warmup):
    step_fn()

  def timed():
    wall, cpu = time.perf_counter(), time.process_time()
    step_fn()
    return time.perf_counter() - wall, time.process_time() - cpu

  if not args.serve:
    pairs = [timed() for _ in range(args.steps)]
  else:
    print(json.dumps({"ready": True}), flush=True)
    pairs = []
    for line in sys.stdin:
      if line.strip() != "step":
        break
      pairs.append(timed())
      print(json.dumps({"seconds": pairs[-1][0], "cpu_seconds": pairs[-1][1]}), flush=True)
  return {"times": [w for w, _ in pairs], "cpu_times": [c for _, c in pairs]}


def time_steps(exp: build.Experiment, loops: int, args) -> dict:
  """Times the compiled step (after compile + warm-up) on one fixed on-device batch."""
  step = exp.train_step(loops)
  state = exp.initial_state()
  batch = exp.sampler(exp.config.train.batch_size)(jax.random.key(0), 0)
  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  last = {"state": state}

  def step_fn():
    last["state"], last["metrics"] = compiled(last["state"], batch)
    jax.block_until_ready(last["metrics"])

  timing = run_steps(step_fn, args)
  return timing | {"compile_s": compile_s, "loss": float(last["metrics"]["loss"])}


def summary(times: list[float], cpu_times: list[float], gflop: float) -> dict:
  median = statistics.median(times)
  return {"median_s": median, "steps_per_s": 1 / median, "gflop_per_s": gflop / median,
          "median_cpu_s": statistics.median(cpu_times),
          "times_s": [round(t, 4) for t in times]}


def matmul_peak(sizes=(2048, 3072), repeats: int = 5, dtype: str = "float32") -> dict:
  """Best median GFLOP/s of a jitted n x n matmul in `dtype` (random data, not zeros)."""
  best = {}
  for n in sizes:
    a = jax.random.normal(jax.random.key(1), (n, n), dtype)
    b = jax.random.normal(jax.random.key(2), (n, n), dtype)
    f = jax.jit(jnp.matmul)
    f(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      f(a, b).block_until_ready()
      times.append(time.perf_counter() - start)
    best[n] = 2 * n**3 / statistics.median(times) / 1e9
  return {"matmul_peak_gflop_per_s": max(best.values()), "matmul_peak_dtype": dtype,
          "matmul_gflop_per_s_by_size": {str(n): round(g, 2) for n, g in best.items()}}


def memory(args) -> dict:
  """Compiled memory analysis of the step at 8 and 64 loops: the benchmark's window, and full
  backprop through every loop (window = loops) under remat none and full."""
  out = {}
  cases = {f"window{args.window}_remat_{args.remat}": (args.window, args.remat),
           "full_backprop_remat_none": (0, "none"), "full_backprop_remat_full": (0, "full")}
  for name, (window, remat) in cases.items():
    row = {}
    for loops in MEMORY_LOOPS:
      c = yang_config(argparse.Namespace(**{**vars(args), "remat": remat, "loops": loops,
                                            "window": window or loops}))
      exp = build.Experiment.build(c, devices=jax.devices()[:1])
      state = jax.eval_shape(exp.initial_state)
      batch = jax.eval_shape(lambda: exp.task.sample(jax.random.key(0), args.batch, 0))
      m = exp.train_step(loops).lower(state, batch).compile().memory_analysis()
      peak = (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
              - m.alias_size_in_bytes)
      row[str(loops)] = {"temp_mib": m.temp_size_in_bytes / 2**20, "peak_mib": peak / 2**20}
    row["peak_ratio_64_over_8"] = row["64"]["peak_mib"] / row["8"]["peak_mib"]
    out[name] = row
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  add_model_flags(parser)
  parser.add_argument("--remat", default="none", help="model.remat: none|full|dots|dots_no_batch")
  parser.add_argument("--dtype", default="float32", help="model.dtype (compute)")
  parser.add_argument("--unroll", type=int, default=-1,
                      help="model.unroll (-1: the config's value)")
  parser.add_argument("--xla_options", default="auto",
                      help="config xla_options: auto | '' (XLA defaults) | FLAG=VALUE;...")
  parser.add_argument("--peak", action="store_true",
                      help="also time the matmul peak in --dtype (n x n, n in --peak_sizes)")
  parser.add_argument("--peak_sizes", default="2048,3072",
                      help="matmul sizes of --peak (a GPU needs larger: 4096,8192)")
  parser.add_argument("--memory", action="store_true", help="also report peak memory 8 vs 64")
  parser.add_argument("--save", default="", help="write benchmarks/results/SAVE.json")
  args = parser.parse_args()
  cfg = yang_config(args)
  exp = build.Experiment.build(cfg, devices=jax.devices()[:1])
  loops = cfg.model.num_loops
  gflop = step_flops(exp, loops) / 1e9
  result = {"framework": "jax", "jax": jax.__version__, "device": jax.devices()[0].device_kind,
            **shape(args), "remat": args.remat, "dtype": args.dtype,
            "unroll": cfg.model.get("unroll", 0), "xla_options": exp.compiler_options,
            "gflop_per_step": gflop}
  if args.steps > 0 or args.serve:  # --steps 0: memory and/or peak only
    timing = time_steps(exp, loops, args)
    result |= summary(timing["times"], timing["cpu_times"], gflop)
    result |= {"compile_s": timing["compile_s"], "final_loss": timing["loss"]}
  if args.peak:
    result |= matmul_peak(tuple(int(n) for n in args.peak_sizes.split(",")), dtype=args.dtype)
    if "gflop_per_s" in result:
      result["fraction_of_peak"] = result["gflop_per_s"] / result["matmul_peak_gflop_per_s"]
  if args.memory:
    result["memory"] = memory(args)
  if args.save:
    write_result(args.save, result)  # prints the JSON line too
  else:
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
