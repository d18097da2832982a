"""Append-only JSONL logs of {"step": int, ...} records that survive crashes and resumes.

A record is one line ending in a newline. A run killed mid-append leaves a torn last line,
which readers leave out; a resumed run first cuts its log back to the records up to the step
it resumes from, so the file equals an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import sys

from looped_jax.errors import ConfigError


def read(path: str) -> list[dict]:
  """The records of a log (none if it does not exist); a torn last line is left out."""
  return read_records(path)[0]


def read_records(path: str) -> tuple[list[dict], bool]:
  """(records, torn): `torn` says the last line was half-written (a crash mid-append) and is
  left out. Any other line that is not a {"step": ...} record raises ConfigError."""
  if not os.path.exists(path):
    return [], False
  with open(path) as f:
    lines = f.read().split("\n")
  unfinished = lines.pop()  # records end in a newline: text after the last one was torn
  records = [_record(line, number, path) for number, line in enumerate(lines, 1) if line.strip()]
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


def cut_after(path: str, step: int) -> None:
  """Keeps the records up to `step` (a resume point); a torn last line is dropped with a
  warning."""
  records, torn = read_records(path)
  if torn:
    print(f"warning: dropped the half-written last line of {path} (the run was stopped while "
          "writing it).", file=sys.stderr, flush=True)
  if os.path.exists(path):
    with open(path, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in records if r["step"] <= step)


class Log:
  """An append-only log at `path`, cut back to `resume_step` when opened; `create`: the file
  exists from the start, if empty (else from the first record)."""

  def __init__(self, path: str, resume_step: int = 0, create: bool = True):
    self.path = path
    cut_after(path, resume_step)
    if create:
      open(path, "a").close()

  def append(self, record: dict) -> None:
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
