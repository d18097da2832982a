"""What a workdir may be, and which folders `--overwrite` may delete.

A folder is a run of this project when its config.json is a looped_jax config and every
other entry is a file or folder the project writes (RUN_ENTRIES); a folder whose entries are
such runs (the variants of a config) and the comparison plots drawn over them is one too.
`--overwrite` deletes only such folders: anything else in them is refused, so that no file
a person put there is ever lost.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile

from looped_jax import run_files
from looped_jax.errors import ConfigError, check

CONFIG_FILE, CHECKPOINTS = run_files.CONFIG, run_files.CHECKPOINTS
RUN_ENTRIES, VARIANTS_ENTRIES = run_files.RUN_ENTRIES, run_files.VARIANTS_ENTRIES


def check_usable(workdir: str) -> None:
  """Raises ConfigError unless `workdir` is, or can be created as, a writable folder.

  Creates nothing: writability is probed with a temporary file that is removed again.
  """
  check(bool(workdir), "--workdir is empty; give the folder for checkpoints and metrics.")
  if os.path.exists(workdir):
    check(os.path.isdir(workdir),
          f"--workdir {workdir} is a file, not a folder; give a folder path (it is created "
          "if missing).")
    _check_writable(workdir, workdir)
    return
  parent = _nearest_existing(workdir)
  check(os.path.isdir(parent),
        f"--workdir {workdir} cannot be created: {parent} is a file; give a path whose "
        "parents are folders.")
  _check_writable(parent, workdir)


def _nearest_existing(path: str) -> str:
  path = os.path.abspath(path)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  return path


def _check_writable(folder: str, workdir: str) -> None:
  # os.access says yes to root on read-only file systems; only a real write tells.
  try:
    with tempfile.TemporaryFile(dir=folder):
      pass
  except OSError as e:
    raise ConfigError(f"--workdir {workdir} is not writable ({folder}: {e.strerror or e}); "
                      "choose a folder you can write to.") from None


def saved_config(workdir: str) -> dict | None:
  """The config.json of the run in `workdir` (None when there is none).

  Raises ConfigError when the file is not a looped_jax config: the workdir is then not
  known to be a run, and nothing may be resumed into or deleted from it.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      config = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"{path} is unreadable or damaged ({type(e).__name__}: {e}); restore it "
                      "from the config file that made the run, or use another --workdir.") from None
  check(_is_config(config),
        f"{path} is not a looped_jax config (it has no model and train sections); use "
        "another --workdir.")
  return config


def _is_config(value) -> bool:
  return isinstance(value, dict) and isinstance(value.get("model"), dict) and isinstance(
      value.get("train"), dict)


def foreign_entry(workdir: str) -> str | None:
  """The first entry of `workdir` that makes it no run of this project (None: it is one,
  or it is empty / missing)."""
  if not os.path.isdir(workdir):
    return None
  entries = sorted(os.listdir(workdir))
  if CONFIG_FILE in entries:
    try:
      saved_config(workdir)
    except ConfigError:
      return CONFIG_FILE
    return next((e for e in entries if not _matches(e, RUN_ENTRIES)), None)
  for entry in entries:  # a config's variants: run folders and the plots drawn over them
    path = os.path.join(workdir, entry)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, CONFIG_FILE)):
      below = foreign_entry(path)
      if below is not None:
        return os.path.join(entry, below)
    elif not _matches(entry, VARIANTS_ENTRIES):
      return entry
  return None


def _matches(entry: str, patterns: tuple[str, ...]) -> bool:
  return any(fnmatch.fnmatchcase(entry, p) for p in patterns)


def check_replaceable(workdir: str) -> None:
  """Raises ConfigError unless `--overwrite` may delete `workdir` (a run of this project)."""
  entry = foreign_entry(workdir)
  check(entry is None,
        f"--overwrite refused: {os.path.join(workdir, entry or '')} was not written by "
        "looped_jax, and --overwrite deletes only runs it wrote; move it away or use another "
        "--workdir.")


def remove_run(workdir: str) -> None:
  """Deletes a run checked by `check_replaceable`."""
  shutil.rmtree(workdir)


def write_atomically(path: str, text: str) -> None:
  """Writes `text` to `path` so that a crash leaves the old file or the new one, never half."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def check_has_run(workdir: str, mode: str) -> None:
  """Raises ConfigError unless `workdir` holds a trained run (for --mode=eval / hessian)."""
  path = os.path.join(workdir, CHECKPOINTS)
  steps = [n for n in os.listdir(path) if n.isdigit()] if os.path.isdir(path) else []
  check(bool(steps), f"--mode={mode} needs a trained run, and {workdir} holds no checkpoint; "
        "check --workdir, or train first with --mode=train.")
