"""SHIFT against plain looped training from their metrics.jsonl records.

Gong et al. (arXiv 2510.10089) claim comparable accuracy in less wall-clock; the measure
here: the train time (perf/train_seconds: evals, hooks and saves excluded) SHIFT needs to
first reach the looped run's final value of a metric minus `points`, against the looped
run's whole train time and against its own time to the same target, at eval resolution.
"""

from __future__ import annotations

import math

TRAIN_SECONDS = "perf/train_seconds"


def values_at(records: list[dict], key: str) -> dict[int, float]:
  """step -> the value of `key` logged at that step (the last one if logged twice)."""
  return {r["step"]: r[key] for r in records if key in r}


def final(records: list[dict], key: str) -> float:
  values = values_at(records, key)
  return values[max(values)]


def first_step_reaching(records: list[dict], key: str, target: float,
                        lower: bool = False) -> int | None:
  """The first step at which `key` was logged >= target (<= with `lower`); None if never."""
  return next((s for s, v in sorted(values_at(records, key).items())
               if (v <= target if lower else v >= target)), None)


def seconds_at(records: list[dict], step: int) -> float:
  """perf/train_seconds logged at `step` (a log step: eval.every a multiple of log_every)."""
  return values_at(records, TRAIN_SECONDS)[step]


def compare(looped: list[dict], shift: list[dict], key: str, points: float,
            lower: bool = False) -> dict[str, float]:
  """The SHIFT numbers of one seed: `gap` (SHIFT's final minus looped's), `time_ratio`
  (SHIFT's train time to the target over looped's whole train time) and
  `time_ratio_to_own` (over looped's own time to the target); inf when SHIFT never gets
  there. The target is looped's final value minus `points` (plus, for a `lower`-is-better
  metric such as a loss)."""
  target = final(looped, key) + (points if lower else -points)
  reached = first_step_reaching(shift, key, target, lower)
  own = first_step_reaching(looped, key, target, lower)
  total = seconds_at(looped, max(values_at(looped, TRAIN_SECONDS)))
  shift_seconds = math.inf if reached is None else seconds_at(shift, reached)
  return {"gap": final(shift, key) - final(looped, key), "target": target,
          "shift_step": reached, "looped_step": own,
          "time_ratio": shift_seconds / total,
          "time_ratio_to_own": shift_seconds / seconds_at(looped, own)}
