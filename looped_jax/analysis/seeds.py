"""Runs of one model under several seeds: grouping by name and mean / min-max bands.

Variants named MODEL_sK (configs/gong_horizon.py: looped_s0, looped_s1, ...) are seeds of
one model; plots draw each model's mean over seeds with its min-max range shaded, and
reports quote the same spread.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from looped_jax.analysis.shift_compare import values_at

_SEEDED = re.compile(r"^(?P<model>.+)_s(?P<seed>\d+)$")


def model_of(name: str) -> str:
  """'looped_s2' -> 'looped'; a name without a seed suffix is its own model."""
  match = _SEEDED.match(name)
  return match["model"] if match else name


def group(names) -> dict[str, list[str]]:
  """model -> the names of its runs, in the order given."""
  out: dict[str, list[str]] = {}
  for name in names:
    out.setdefault(model_of(name), []).append(name)
  return out


def has_seeds(names) -> bool:
  """Whether some model has runs under two or more seeds."""
  return any(len(runs) > 1 for runs in group(names).values())


@dataclasses.dataclass(frozen=True)
class Band:
  """A metric over steps across seeds: arrays of shape [num_steps]."""

  steps: np.ndarray
  mean: np.ndarray
  low: np.ndarray  # min over seeds
  high: np.ndarray  # max over seeds
  num_seeds: int


def band(runs: list[list[dict]], key: str) -> Band:
  """The band of `key` over the steps at which every run logged it."""
  per_run = [values_at(records, key) for records in runs]
  steps = sorted(set.intersection(*(set(v) for v in per_run))) if per_run else []
  table = np.asarray([[v[s] for s in steps] for v in per_run], dtype=np.float64)
  table = table.reshape(len(per_run), len(steps))
  return Band(np.asarray(steps), table.mean(0), table.min(0), table.max(0), len(per_run))
