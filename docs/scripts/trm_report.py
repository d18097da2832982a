"""Tables of a configs/trm_sudoku.py or configs/trm_maze.py workdir.

  python docs/scripts/trm_report.py runs/trm_sudoku [--jsonl docs/data/trm_sudoku.jsonl]

Prints, from each variant's last evaluation (metrics.jsonl):
  1. TRM vs the plain looped model, mean [min, max] over seeds: whole-puzzle accuracy
     (eval/sequence_accuracy), cell accuracy (eval/accuracy), optimizer steps, train seconds;
  2. accuracy vs supervision steps (TRM: eval@s; looped: eval@(s x its loops)), halting off,
     then TRM with halting on (eval/halting/...: accuracy and mean steps used);
  3. the ablation table on seed 0: TRM, without deep supervision, without halting, without
     EMA;
and the cell accuracy of copying the input (marking no path, filling every blank with a 1),
the floor a model must beat.
--jsonl writes the numbers behind the tables (one record per variant) for docs/data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from looped_jax import jsonl, run_files, tasks
from looped_jax.analysis import seeds

ABLATIONS = ("trm_s0", "trm_no_ds_s0", "trm_no_halt_s0", "trm_no_ema_s0")
WHOLE, CELLS = "sequence_accuracy", "accuracy"


def _pm(values, scale: float = 100.0) -> str:
  v = np.asarray(values, np.float64) * scale
  return f"{v.mean():.1f} [{v.min():.1f}, {v.max():.1f}]" if len(v) > 1 else f"{v[0]:.1f}"


def last_eval(records: list[dict]) -> dict:
  """The last record holding eval/... metrics, merged with the last train-log record."""
  evals = [r for r in records if any(k.startswith("eval") for k in r)]
  logs = [r for r in records if "perf/train_seconds" in r]
  out = dict(evals[-1]) if evals else {}
  if logs:
    out |= {"steps": logs[-1]["step"], "train_seconds": logs[-1]["perf/train_seconds"]}
  return out


def depth_curve(final: dict) -> dict[int, float]:
  """Whole-puzzle accuracy by loop count: eval (the default count) and eval@L."""
  out = {}
  for key, value in final.items():
    if key.endswith(f"/{WHOLE}") and "/halting/" not in key and key.count("/") == 1:
      prefix = key.split("/")[0]
      out[prefix] = value
  return out


def summarize(workdir: str) -> dict[str, dict]:
  names = sorted(n for n in os.listdir(workdir)
                 if os.path.isfile(os.path.join(workdir, n, run_files.METRICS)))
  finals = {n: last_eval(jsonl.read(os.path.join(workdir, n, run_files.METRICS))) for n in names}
  return {n: r for n, r in finals.items() if f"eval/{WHOLE}" in r}  # evaluated at least once


def copy_input_accuracy(workdir: str, name: str) -> float:
  """Scored-cell accuracy of predicting each input token as its target, on 1,024 held-out
  examples of the run's task (the eval batches' distribution)."""
  with open(os.path.join(workdir, name, run_files.CONFIG)) as f:
    config = json.load(f)
  task = tasks.get(config["task"]).held_out()
  batch = task.sample(jax.random.key(config["eval_seed"]), 1024)
  right = (batch["inputs"] == batch["targets"]).astype(jnp.float32) * batch["weights"]
  return float(right.sum() / batch["weights"].sum())


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("workdir")
  parser.add_argument("--jsonl", default=None, help="write one record per variant here")
  args = parser.parse_args(argv)
  finals = summarize(args.workdir)
  groups = seeds.group(finals)
  if not {"trm", "looped"} <= set(groups):
    print(f"no trm_sK and looped_sK runs with evaluations in {args.workdir}", file=sys.stderr)
    return 1
  print("| model | seeds | whole-puzzle accuracy % | cell accuracy % | steps | train s |")
  print("|---|---|---|---|---|---|")
  for model in ("trm", "looped"):
    runs = [finals[n] for n in groups[model]]
    print(f"| {model} | {len(runs)} | {_pm([r['eval/' + WHOLE] for r in runs])} | "
          f"{_pm([r['eval/' + CELLS] for r in runs])} | "
          f"{_pm([r['steps'] for r in runs], 1)} | {_pm([r['train_seconds'] for r in runs], 1)} |")
  print()
  print("Whole-puzzle accuracy % by evaluation depth, mean [min, max] over seeds:")
  for model in ("trm", "looped"):
    curves = [depth_curve(finals[n]) for n in groups[model]]
    keys = sorted(curves[0], key=lambda k: int(k.split("@")[1]) if "@" in k else -1)
    print(f"  {model}: " + ", ".join(f"{k} {_pm([c[k] for c in curves])}" for k in keys))
  trm = [finals[n] for n in groups["trm"]]
  if all(f"eval/halting/{WHOLE}" in r for r in trm):
    print(f"  trm with halting at eval: {_pm([r['eval/halting/' + WHOLE] for r in trm])}, "
          f"steps used {_pm([r['eval/halting/steps'] for r in trm], 1)}")
  print(f"  copy-the-input cell accuracy: {100 * copy_input_accuracy(args.workdir, 'trm_s0'):.1f}%")
  present = [n for n in ABLATIONS if n in finals]
  if len(present) > 1:
    print()
    print("| seed 0 | whole-puzzle accuracy % | cell accuracy % | steps |")
    print("|---|---|---|---|")
    for name in present:
      r = finals[name]
      print(f"| {name} | {100 * r['eval/' + WHOLE]:.1f} | {100 * r['eval/' + CELLS]:.1f} | "
            f"{r['steps']} |")
  if args.jsonl:
    os.makedirs(os.path.dirname(os.path.abspath(args.jsonl)), exist_ok=True)
    with open(args.jsonl, "w") as f:
      for name, r in finals.items():
        f.write(json.dumps({"variant": name} | r, sort_keys=True) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
