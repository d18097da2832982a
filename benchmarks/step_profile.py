"""Where the train step's time goes: a jax.profiler trace summed by XLA op.

  python benchmarks/step_profile.py [model flags of step_throughput.py] [--unroll U]
      [--logdir /tmp/step_profile]

Traces --steps compiled steps after two untimed ones and prints the time of each executed
HLO op (the thunk events of XLA's CPU threads, summed over threads, per step), grouped
by kind: `ynn_fusion` (YNNPACK matmul fusions), loop fusions, copies, dynamic slices,
zero-filled buffers (`wrapped_broadcast`); with --by_shape, by kind and output shape (e.g.
`wrapped_reduce-window f32[2,3,1024]`, the MLP bias gradient). Shares, not absolute times, are
the point: on a shared machine every op slows down alike. Ops on XLA's two CPU threads overlap,
so a share is not the wall time that removing the op would save: measure that with
step_variants.py.
"""

from __future__ import annotations

import argparse
import collections
import glob
import pathlib
import re
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import jax  # noqa: E402

import step_throughput as st  # noqa: E402
from looped_jax.train import build  # noqa: E402

CONTAINERS = ("while", "ThunkExecutor", "SlinkyThreadPool", "conditional", "call")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  st.add_model_flags(parser)
  parser.add_argument("--remat", default="none")
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--unroll", type=int, default=-1)
  parser.add_argument("--logdir", default="/tmp/step_profile")
  parser.add_argument("--top", type=int, default=15)
  parser.add_argument("--by_shape", action="store_true", help="group by kind and output shape")
  args = parser.parse_args()
  cfg = st.yang_config(args)
  exp = build.Experiment.build(cfg, devices=jax.devices()[:1])
  state = exp.initial_state()
  batch = exp.sampler(args.batch)(jax.random.key(0), 0)
  step = exp.train_step(cfg.model.num_loops).lower(state, batch).compile()
  shapes = output_shapes(step.as_text())
  for _ in range(2):
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
  shutil.rmtree(args.logdir, ignore_errors=True)
  jax.profiler.start_trace(args.logdir)
  for _ in range(args.steps):
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
  jax.profiler.stop_trace()
  path = glob.glob(f"{args.logdir}/**/*.xplane.pb", recursive=True)[0]
  ops = collections.Counter()
  for plane in jax.profiler.ProfileData.from_file(path).planes:
    for line in plane.lines:
      if not line.name.startswith("tf_XLA"):  # XLA's CPU threads (Eigen pool, client)
        continue
      for event in line.events:
        if not event.name.startswith(CONTAINERS):  # leaf ops only: no double counting
          ops[event.name] += event.duration_ns / 1e6 / args.steps
  kinds = collections.Counter()
  for name, ms in ops.items():
    kind = re.sub(r"\.\d+$", "", name)
    kinds[f"{kind} {shapes.get(name, '?')}" if args.by_shape else kind] += ms
  total = sum(ops.values())
  print(f"op time per step, summed over threads: {total:.1f} ms")
  for title, counter in (("by kind", kinds), ("top ops", ops)):
    print(f"-- {title}")
    for name, ms in counter.most_common(args.top):
      print(f"{ms:10.1f} ms  {100 * ms / total:5.1f}%  {name}")


def output_shapes(hlo_text: str) -> dict[str, str]:
  """HLO instruction name -> its output shape without layout, e.g. 'f32[64,82,256]'."""
  shapes = {}
  for line in hlo_text.splitlines():
    match = re.match(r"\s*(?:ROOT )?%(\S+) = (\S+?)(?:\{[^}]*\})? ", line)
    if match:
      shapes[match.group(1)] = match.group(2)
  return shapes


if __name__ == "__main__":
  main()
