"""SHIFT vs plain Looped-Attn, same step budget: wall-clock to the looped run's final accuracy.

Trains the `looped` and `shift` variants of a SHIFT config (one device) and reports, for
each, the training wall-clock (evals and checkpoint saves excluded: `perf/train_seconds`,
compilation included) until `--metric` first reaches the plain Looped-Attn run's final
value, at eval resolution (every `eval.every` steps); plus SHIFT's switch step, dip and
recovery, and the steady-state seconds per train step at each stage's loop count (a few
timed steps after compilation, before training). Prints one JSON line and writes
benchmarks/results/NAME.json.

Commands (the scale is the config's):
  PYTHONPATH=. python benchmarks/shift_vs_looped.py        # quick start: configs/shift_markov.py
  PYTHONPATH=. python benchmarks/shift_vs_looped.py --config=configs/shift_markov.py:medium \
      --name=shift_vs_looped_markov_medium
  PYTHONPATH=. python benchmarks/shift_vs_looped.py --config=configs/shift_p_hop.py \
      --metric=eval/accuracy --name=shift_vs_looped_p_hop
  add --time_only to measure only the step times (seconds, no training).
Time: the quick start about 3-6 minutes on a loaded 2-core CPU; see each config.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import tempfile
import time

import jax

from looped_jax import jsonl, run_files
from looped_jax.analysis import shift_compare
from looped_jax.train import experiment, shift, trainer
from looped_jax.train import build

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(spec: str, steps: int | None):
  """`path[:arg]` -> the config of its get_config([arg]), on one device."""
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location(
      "shift_config", path if os.path.isabs(path) else os.path.join(REPO, path))
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(arg) if arg else module.get_config()
  if steps is not None:
    config.train.num_steps = steps
  config.mesh.data = 1
  return config


def step_seconds(config, loops: int, stage: int, repeats: int) -> float:
  """Mean seconds per SHIFT train step of stage `stage` (at `loops`) over `repeats` steps on
  one fixed batch, after one warm-up (compiling) step."""
  exp = build.Experiment.build(config, devices=jax.devices()[:1])
  state = exp.initial_state()
  if stage:  # the stage-k step expects a state in stage k
    state["opt_state"] = jax.device_put(shift.switch_stage(state["opt_state"], stage),
                                        exp.state_shardings["opt_state"])
  batch = exp.sampler(config.train.batch_size)(jax.random.key(0), 0)
  step = exp.train_step(loops, stage)
  state, m = step(state, batch)
  jax.block_until_ready(m)
  start = time.perf_counter()
  for _ in range(repeats):
    state, m = step(state, batch)
  jax.block_until_ready(m)
  return (time.perf_counter() - start) / repeats


def seconds_to_reach(records: list[dict], metric: str,
                     target: float) -> tuple[int | None, float | None]:
  """(first eval step with `metric` >= target, perf/train_seconds logged at that step)."""
  step = shift_compare.first_step_reaching(records, metric, target)
  return step, None if step is None else shift_compare.seconds_at(records, step)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/shift_markov.py",
                      help="config file[:arg] with `looped` and `shift` variants")
  parser.add_argument("--steps", type=int, default=None, help="default: the config's")
  parser.add_argument("--metric", default="eval/accuracy/complex")
  parser.add_argument("--name", default="shift_vs_looped", help="benchmarks/results/NAME.json")
  parser.add_argument("--time_repeats", type=int, default=10, help="timed steps per loop count")
  parser.add_argument("--time_only", action="store_true", help="only the step times")
  args = parser.parse_args()
  runs = experiment.expand(load_config(args.config, args.steps))
  schedule = build.Experiment.build(runs["shift"]).schedule
  step_ms = {str(n): 1000 * step_seconds(runs["shift"], n, k, args.time_repeats)
             for k, n in enumerate(schedule.loops)}
  result = {"benchmark": "shift_vs_looped", "config": args.config,
            "steps": runs["looped"].train.num_steps, "step_ms_by_loops": step_ms,
            "step_time_ratio": step_ms[str(schedule.loops[0])] / step_ms[str(schedule.loops[-1])]}
  if not args.time_only:
    result |= compare(runs, args.metric)
  result["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                       "jax": jax.__version__, "device": str(jax.devices()[0]),
                       "cpu_count": os.cpu_count(), "load_avg_1_5_15": os.getloadavg()}
  print(json.dumps(result), flush=True)
  if args.time_only:
    return
  out = os.path.join(REPO, "benchmarks", "results", f"{args.name}.json")
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w") as f:
    json.dump(result, f, indent=2, sort_keys=True)


def compare(runs: dict, metric: str) -> dict:
  """Trains both variants; the wall-clock-to-target comparison."""
  records, summaries = {}, {}
  with tempfile.TemporaryDirectory() as tmp:
    for name in ("looped", "shift"):
      workdir = os.path.join(tmp, name)
      trainer.train(runs[name], workdir, quiet=True)
      records[name] = jsonl.read(os.path.join(workdir, run_files.METRICS))
      with open(os.path.join(workdir, "summary.json")) as f:
        summaries[name] = json.load(f)
  target = summaries["looped"][metric]
  result = {"target_metric": metric, "target": target, "eval_every": runs["looped"].eval.every}
  for name in ("looped", "shift"):
    step, sec = seconds_to_reach(records[name], metric, target)
    curve = [(r["step"], r[metric]) for r in records[name] if metric in r]
    result[name] = {"final": summaries[name][metric], "step_to_target": step,
                    "seconds_to_target": sec, "train_seconds": summaries[name]["train_seconds"],
                    "curve": curve}
  result["shift"] |= {k: v for k, v in summaries["shift"].items()
                      if k.startswith(("shift/", "perf/"))}
  result["shift"]["criterion"] = runs["shift"].shift.criterion.to_dict()
  result["shift"]["curve_at_trained_loops"] = [
      (r["step"], r["shift/accuracy"]) for r in records["shift"] if "shift/accuracy" in r]
  result["speedup_to_target"] = (
      result["looped"]["seconds_to_target"] / result["shift"]["seconds_to_target"]
      if result["shift"]["seconds_to_target"] else None)
  result["final_gap_points"] = 100 * (result["shift"]["final"] - result["looped"]["final"])
  return result


if __name__ == "__main__":
  main()
