"""On-the-fly sampling of an in-context regression batch versus one train step.

  python benchmarks/icl_sampling.py [--repeats 30]

For the CPU config of each of the five tasks (configs/yang_icl.py:TASK), times the trainer's
jitted sampler (batch 64 at a step past every curriculum stage, output placed on the mesh);
for linear regression also the train step of the looped model (b = 20 loops, window 10) and of
the 6-layer standard model. Medians over `repeats` calls after a warm-up (compile excluded).
Goal: sampling a batch costs under 5 % of a train step at the CPU config, i.e.
sample / step(standard) < 0.05, the cheaper and so stricter of the two steps.
Writes benchmarks/results/icl_sampling.json.
"""

import argparse
import importlib.util
import os
import statistics
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import write_result  # noqa: E402

from looped_jax.train import experiment  # noqa: E402
from looped_jax.train import build  # noqa: E402

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                      "yang_icl.py")
TASKS = ("linear_regression", "noisy_linear_regression", "sparse_linear_regression",
         "decision_tree", "relu2nn")
STEP = 10**6  # every curriculum at its end: the largest prompts


def load_config(arg: str):
  spec = importlib.util.spec_from_file_location("yang_icl", CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def median_seconds(fn, repeats: int) -> float:
  jax.block_until_ready(fn(0))  # compile
  times = []
  for i in range(1, repeats + 1):
    start = time.perf_counter()
    jax.block_until_ready(fn(i))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=30)
  args = parser.parse_args()
  result = {"sample_ms": {}, "batch_size": 64}
  key = jax.random.key(0)
  for task in TASKS:
    exp = build.Experiment.build(experiment.expand(load_config(f"{task}:looped"))["looped"])
    sample = exp.sampler(exp.config.train.batch_size)
    seconds = median_seconds(lambda i: sample(jax.random.fold_in(key, i), STEP), args.repeats)
    result["sample_ms"][task] = round(1e3 * seconds, 4)
  result["step_ms"] = {}
  for name, cfg in experiment.expand(load_config("linear_regression")).items():
    if name == "looped_no_inject":
      continue
    exp = build.Experiment.build(cfg)
    batch = exp.sampler(cfg.train.batch_size)(key, STEP)
    step = exp.train_step(cfg.model.num_loops)
    holder = {"state": exp.initial_state()}

    def one(i, step=step, batch=batch, holder=holder):
      holder["state"], metrics = step(holder["state"], batch)
      return metrics

    result["step_ms"][name] = round(1e3 * median_seconds(one, max(5, args.repeats // 3)), 4)
  lr = result["sample_ms"]["linear_regression"]
  result["ratio_sample_over_step"] = {n: round(lr / s, 5) for n, s in result["step_ms"].items()}
  result["max_ratio_any_task_over_standard_lr_step"] = round(
      max(result["sample_ms"].values()) / result["step_ms"]["standard"], 5)
  result["goal_met"] = result["ratio_sample_over_step"]["standard"] < 0.05
  write_result("icl_sampling", result)


if __name__ == "__main__":
  main()
