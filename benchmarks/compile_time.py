"""Compile time of the train step versus loop count: lax.scan keeps it flat in L.

  python benchmarks/compile_time.py [--loops 1,8,64] [--repeats 3]

Lowers and compiles the full train step (forward, backward through every loop, Adam update)
of the quickstart model (attention-only, D=32) and of a GPT-2 block (D=64) at each loop
count, taking the median over fresh compilations. Goal: compile(L=64) <= 2 x compile(L=1).
Writes benchmarks/results/compile_time.json.
"""

import argparse
import os
import statistics
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import write_result  # noqa: E402

from looped_jax import tasks  # noqa: E402
from looped_jax.config import base_config  # noqa: E402
from looped_jax.train import build  # noqa: E402


def compile_seconds(block: str, d_model: int, loops: int, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    c = base_config()
    c.task = tasks.default_config("markov", vocab=16, length=32)
    c.model.update(block=block, d_model=d_model, num_heads=4, num_loops=loops)
    c.mesh.data = 1
    exp = build.Experiment.build(c, devices=jax.devices()[:1])
    state = jax.eval_shape(exp.initial_state)
    batch = jax.eval_shape(lambda: exp.task.sample(jax.random.key(0), c.train.batch_size, 0))
    jax.clear_caches()  # a fresh compilation every repeat
    start = time.perf_counter()
    exp.train_step(loops).lower(state, batch).compile()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--loops", default="1,8,64")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  loops = [int(x) for x in args.loops.split(",")]
  result = {}
  for block, d_model in (("attn_only", 32), ("gpt2", 64)):
    seconds = {l: compile_seconds(block, d_model, l, args.repeats) for l in loops}
    result[block] = {"compile_seconds": {str(l): round(s, 4) for l, s in seconds.items()},
                     "ratio_max_over_1": round(seconds[max(loops)] / seconds[min(loops)], 3)}
  write_result("compile_time", result)


if __name__ == "__main__":
  main()
