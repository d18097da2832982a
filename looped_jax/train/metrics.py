"""Metric writers (JSONL + TensorBoard via tensorboardX) and the console progress line."""

from __future__ import annotations

import json
import math
import os
import sys
import time

from tensorboardX import SummaryWriter

from looped_jax.errors import ConfigError

METRICS_FILE = "metrics.jsonl"


def read_jsonl(path: str) -> list[dict]:
  """The records of an append-only JSONL file; a torn last line is left out (see read_records)."""
  return read_records(path)[0]


def read_records(path: str) -> tuple[list[dict], bool]:
  """(records, torn): `torn` says the last line was half-written (a crash mid-append) and is
  left out. Any other line that is not a {"step": ...} record raises ConfigError."""
  if not os.path.exists(path):
    return [], False
  with open(path) as f:
    lines = f.read().split("\n")
  # Records end in a newline: a last line without one was being appended when the run died.
  unfinished = lines.pop()
  records = []
  for number, line in enumerate(lines, 1):
    if line.strip():
      records.append(_record(line, number, path))
  torn = False
  if unfinished.strip():
    try:
      records.append(_record(unfinished, len(lines) + 1, path))
    except ConfigError:
      torn = True
  return records, torn


def _record(line: str, number: int, path: str) -> dict:
  try:
    record = json.loads(line)
  except ValueError:
    record = None
  if not (isinstance(record, dict) and isinstance(record.get("step"), int)):
    raise ConfigError(f"line {number} of {path} is not a JSON record with a step; the file is "
                      "only appended to, so it was edited or damaged: fix or delete that line.")
  return record


def resume_jsonl(path: str, resume_step: int) -> None:
  """Cuts an append-only JSONL file back to the records up to `resume_step`, so that a resumed
  run's file equals an uninterrupted run's; a torn last line is dropped with a warning."""
  records, torn = read_records(path)
  if torn:
    print(f"warning: dropped the half-written last line of {path} (the run was stopped while "
          "writing it).", file=sys.stderr, flush=True)
  if os.path.exists(path):
    kept = [r for r in records if r["step"] <= resume_step]
    with open(path, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)


class MetricWriter:
  """Appends {"step": s, name: value, ...} records; on resume drops records past `resume_step`
  so that a resumed run's file equals an uninterrupted run's."""

  def __init__(self, workdir: str, resume_step: int = 0):
    self.path = os.path.join(workdir, METRICS_FILE)
    resume_jsonl(self.path, resume_step)
    open(self.path, "a").close()  # the file exists from the start, if empty
    self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    record = {"step": int(step)} | {k: float(v) for k, v in scalars.items()}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
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
