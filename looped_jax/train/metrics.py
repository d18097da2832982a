"""Metric writers (JSONL + TensorBoard via tensorboardX) and the console progress line."""

from __future__ import annotations

import math
import os
import sys
import time

from tensorboardX import SummaryWriter

from looped_jax import jsonl, run_files

class MetricWriter:
  """Appends {"step": s, name: value, ...} records; on resume drops records past `resume_step`
  so that a resumed run's file equals an uninterrupted run's."""

  def __init__(self, workdir: str, resume_step: int = 0):
    self.log = jsonl.Log(os.path.join(workdir, run_files.METRICS), resume_step)
    self.tb = SummaryWriter(os.path.join(workdir, run_files.TENSORBOARD),
                            purge_step=resume_step + 1)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    self.log.append({"step": int(step)} | {k: float(v) for k, v in scalars.items()})
    for name, value in scalars.items():
      self.tb.add_scalar(name, float(value), int(step))

  def close(self) -> None:
    self.tb.close()


class NullWriter:
  """What processes other than 0 write: nothing (same interface as the writers)."""

  def write(self, *args, **kwargs) -> None:
    del args, kwargs

  def close(self) -> None:
    pass


class Progress:
  """Prints `step 120/2000 | loss 1.2345 | 310.2 steps/s | ETA 0:00:06` lines."""

  def __init__(self, total: int, start: int, prefix: str = "", stream=None):
    self.total, self.prefix = total, prefix
    self.stream = stream or sys.stdout
    self._last_step, self._last_time = start, time.perf_counter()

  def update(self, step: int, scalars: dict[str, float], seconds_left: float = math.inf) -> float:
    """Prints one line; returns the steps/s since the previous call. The ETA is the earlier of
    the last step and the end of a time budget with `seconds_left`."""
    now = time.perf_counter()
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    eta = min((self.total - step) / rate if rate > 0 else math.inf, max(seconds_left, 0.0))
    shown = " | ".join(f"{k} {v:.4f}" for k, v in scalars.items())
    eta_text = _hours_minutes_seconds(eta) if math.isfinite(eta) else "?"
    print(f"{self.prefix}step {step}/{self.total} | {shown} | {rate:.1f} steps/s | ETA {eta_text}",
          file=self.stream, flush=True)
    return rate


def _hours_minutes_seconds(seconds: float) -> str:
  """H:MM:SS with as many hours as it takes (time.strftime would wrap at 24 h)."""
  minutes, secs = divmod(int(round(seconds)), 60)
  return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
