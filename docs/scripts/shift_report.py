"""SHIFT vs plain looped runs of a seeded config (looped_sK and shift_sK in one workdir).

  python docs/scripts/shift_report.py runs/shift_prefix --metric=eval/accuracy \
      --length_setting=bits32

prints, per seed and as mean [min, max]: the final gap in --metric, SHIFT's train time to
the looped run's final value minus --points over the looped run's whole train time (and over
its own time to that target), SHIFT's switch step, and when --mode=eval has written
loop_sweep.json, the per-token accuracy at the trained loop count on --length_setting; then
the verdict against --max_ratio and --points (configs/shift_prefix_sums.py fixes them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from looped_jax import jsonl, run_files
from looped_jax.analysis import seeds, shift_compare


def _pm(values, scale: float = 1.0) -> str:
  v = np.asarray(values, np.float64) * scale
  return f"{v.mean():.3g} [{v.min():.3g}, {v.max():.3g}]"


def length_accuracy(workdir: str, setting: str) -> float | None:
  path = os.path.join(workdir, run_files.LOOP_SWEEP)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)["settings"][setting]["at_train_loops"]["token_accuracy"]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("workdir")
  parser.add_argument("--metric", default="eval/accuracy")
  parser.add_argument("--points", type=float, default=0.01)
  parser.add_argument("--max_ratio", type=float, default=0.7)
  parser.add_argument("--length_setting", default=None, help="a loop_sweep setting, e.g. bits32")
  args = parser.parse_args(argv)
  names = sorted(n for n in os.listdir(args.workdir)
                 if os.path.isfile(os.path.join(args.workdir, n, run_files.SUMMARY)))
  seed_ids = sorted(int(n.rsplit("_s", 1)[1]) for n in names
                    if seeds.model_of(n) == "looped" and f"shift_{n.rsplit('_', 1)[1]}" in names)
  if not seed_ids:
    print(f"no seed has finished both looped_sK and shift_sK in {args.workdir}", file=sys.stderr)
    return 1
  records = {n: jsonl.read(os.path.join(args.workdir, n, run_files.METRICS)) for n in names}
  rows = []
  print(f"| seed | {args.metric}: looped / shift | gap (points) | time ratio | "
        "ratio to looped's own time | switch step |" + (f" {args.length_setting} token "
        "accuracy: looped / shift |" if args.length_setting else ""))
  print("|---" * (6 + bool(args.length_setting)) + "|")
  for k in seed_ids:
    looped, shift = records[f"looped_s{k}"], records[f"shift_s{k}"]
    c = shift_compare.compare(looped, shift, args.metric, args.points)
    switch = shift_compare.final(shift, "shift/switch_step") if any(
        "shift/switch_step" in r for r in shift) else None
    lengths = [length_accuracy(os.path.join(args.workdir, f"{m}_s{k}"), args.length_setting)
               if args.length_setting else None for m in ("looped", "shift")]
    rows.append(c | {"switch": switch, "length": lengths,
                     "finals": [shift_compare.final(r, args.metric) for r in (looped, shift)]})
    print(f"| {k} | {rows[-1]['finals'][0]:.4f} / {rows[-1]['finals'][1]:.4f} | "
          f"{100 * c['gap']:+.2f} | {c['time_ratio']:.3f} | {c['time_ratio_to_own']:.3f} | "
          f"{switch} |" + (f" {lengths[0]:.4f} / {lengths[1]:.4f} |"
                           if None not in lengths and args.length_setting else ""))
  gaps, ratios = [r["gap"] for r in rows], [r["time_ratio"] for r in rows]
  print(f"\nfinal gap {_pm(gaps, 100)} points; time ratio {_pm(ratios)}x; ratio to looped's own "
        f"time {_pm([r['time_ratio_to_own'] for r in rows])}x")
  met = np.mean(gaps) >= -args.points and np.mean(ratios) <= args.max_ratio
  if args.length_setting and all(None not in r["length"] for r in rows):
    length_gap = [r["length"][1] - r["length"][0] for r in rows]
    print(f"{args.length_setting} token accuracy, SHIFT - looped: {_pm(length_gap, 100)} points")
    met = met and np.mean(length_gap) >= -args.points
  print(f"verdict (within {100 * args.points:g} point(s) in at most {args.max_ratio}x the train "
        f"time): **{'met' if met else 'not met'}**")
  print("\n" + json.dumps(rows, default=float))
  return 0


if __name__ == "__main__":
  sys.exit(main())
