"""What a workdir may be: which run it holds, when a new config may resume or extend it, and
which folders `--overwrite` may delete.

A folder is a run of this project when its config.json is a looped_jax config and every
other entry is a file or folder the project writes (run_files.RUN_ENTRIES); a folder whose entries are
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

import ml_collections

from looped_jax import config as config_lib
from looped_jax import distributed, run_files
from looped_jax.errors import ConfigError, check

# Config keys that say where and how a run executes, not what it computes: a run may resume
# under another mesh (orbax reshards the checkpoint) or other XLA options.
PLACEMENT_KEYS = ("mesh", "xla_options")
# train keys that may differ on resume too: they bound how long a run trains, not what it computes
BUDGET_KEYS = ("max_train_seconds",)


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
  path = os.path.join(workdir, run_files.CONFIG)
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
  if run_files.CONFIG in entries:
    try:
      saved_config(workdir)
    except ConfigError:
      return run_files.CONFIG
    return next((e for e in entries if not _matches(e, run_files.RUN_ENTRIES)), None)
  for entry in entries:  # a config's variants: run folders and the plots drawn over them
    path = os.path.join(workdir, entry)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, run_files.CONFIG)):
      below = foreign_entry(path)
      if below is not None:
        return os.path.join(entry, below)
    elif not _matches(entry, run_files.VARIANTS_ENTRIES):
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


def check_has_run(workdir: str, mode: str) -> None:
  """Raises ConfigError unless `workdir` holds a trained run (for --mode=eval / hessian)."""
  path = os.path.join(workdir, run_files.CHECKPOINTS)
  steps = [n for n in os.listdir(path) if n.isdigit()] if os.path.isdir(path) else []
  check(bool(steps), f"--mode={mode} needs a trained run, and {workdir} holds no checkpoint; "
        "check --workdir, or train first with --mode=train.")


def prepare(workdir: str, config: ml_collections.ConfigDict, overwrite: bool) -> None:
  """Refuses a workdir that holds a run of another config, unless `overwrite`.

  `overwrite` deletes only a run this project wrote (workdir.check_replaceable); a workdir
  that is a file, cannot be written or holds a damaged config.json is refused.

  The mesh and XLA options (PLACEMENT_KEYS) and the time budget (BUDGET_KEYS) may differ: the
  run resumes under the new ones.
  A larger `train.num_steps` alone extends the run where nothing before the old end depends
  on it (`_extension_problem`); a constant-LR run may continue as a warmup_stable_decay run
  from a checkpoint before the decay start (`_decay_problem`); keys added since the run was
  saved count only away from their defaults (`_with_added_keys`). Every process checks;
  process 0 writes, between barriers, so none reads a half-replaced workdir.
  """
  check_usable(workdir)
  text = config_lib.to_json(config)
  saved = saved_config(workdir)
  replace = False
  if saved is not None:
    old = _without_placement(saved)
    new = _without_placement(json.loads(text))
    old = _with_added_keys(old, new, json.loads(config_lib.to_json(config_lib.base_config())))
    extends = old != new and _equal_except(old, new, ("num_steps",))
    decays = (old != new and not extends and new["train"]["schedule"] == "warmup_stable_decay"
              and _equal_except(old, new, ("schedule", "decay_steps", "num_steps")))
    if old != new and not overwrite:
      problem = (_extension_problem(old, new) if extends else
                 _decay_problem(old, new, workdir) if decays else "")
      if not (extends or decays) or problem:
        reason = problem or f"a different config ({_first_difference(old, new)})"
        raise ConfigError(f"workdir {workdir} holds a run of {reason}; use another --workdir "
                          "or pass --overwrite to replace it.")
    replace = old != new and overwrite
  elif overwrite and os.path.isdir(workdir) and os.listdir(workdir):
    replace = True  # e.g. the variant folders of another config
  if replace:
    check_replaceable(workdir)
  distributed.barrier("prepare_workdir:checked")
  if distributed.is_primary():
    if replace:
      remove_run(workdir)
    os.makedirs(workdir, exist_ok=True)
    run_files.write_atomically(os.path.join(workdir, run_files.CONFIG), text)
  distributed.barrier("prepare_workdir:written")


def _with_added_keys(old: dict, new: dict, defaults: dict) -> dict:
  """`old` with the keys it lacks that `new` and the base config's defaults have, at their
  defaults: a key added to looped_jax since the run was saved, left at its default (which
  keeps the old behaviour), is no difference."""
  out = dict(old)
  for key, value in new.items():
    if key not in old and key in defaults:
      out[key] = defaults[key]
    elif isinstance(value, dict) and isinstance(old.get(key), dict):
      below = defaults.get(key)
      out[key] = _with_added_keys(old[key], value, below if isinstance(below, dict) else {})
  return out


def _equal_except(old: dict, new: dict, train_keys: tuple[str, ...]) -> bool:
  """Whether the configs agree on everything but these keys of their `train` sections."""
  strip = lambda c: {**c, "train": {k: v for k, v in c["train"].items() if k not in train_keys}}
  return strip(old) == strip(new)


def _extension_problem(old: dict, new: dict) -> str:
  """Why a run cannot be extended from old to new train.num_steps ("" when it can).

  Extending resumes the checkpoint and trains on: that equals one longer run only if no step
  before the old end depends on num_steps. The cosine schedule decays over num_steps, and a
  SHIFT budget_fraction switch is a fraction of it, so those runs are refused.
  """
  before, after = old["train"]["num_steps"], new["train"]["num_steps"]
  if after < before:
    return (f"{before} steps (train.num_steps={after} now); a run can be extended, not "
            "shortened")
  if new["train"]["schedule"] not in ("constant", "warmup_constant"):
    return (f"{before} steps whose train.schedule={new['train']['schedule']!r} depends on "
            "train.num_steps; only 'constant' and 'warmup_constant' runs can be extended")
  if new["shift"]["loops"]:
    return (f"{before} steps with SHIFT stages (shift.loops), whose switches may depend on "
            "train.num_steps; SHIFT runs cannot be extended")
  return ""


def _decay_problem(old: dict, new: dict, workdir: str) -> str:
  """Why a run cannot continue as a warmup_stable_decay run ("" when it can).

  A constant-LR run's checkpoint is a WSD run's state at any step up to the decay start
  (the two schedules agree there), so the decay can start from it: the WSD practice of
  decaying a checkpoint of one long constant run. Refused past the decay start.
  """
  t_old, t_new = old["train"], new["train"]
  if t_old["schedule"] not in ("constant", "warmup_constant"):
    return (f"train.schedule={t_old['schedule']!r}; only 'constant' and 'warmup_constant' "
            "runs can continue as 'warmup_stable_decay' runs")
  warmup_old = t_old["warmup_steps"] if t_old["schedule"] == "warmup_constant" else 0
  if warmup_old != t_new["warmup_steps"]:
    return (f"{warmup_old} warm-up steps (train.warmup_steps={t_new['warmup_steps']} now); "
            "the decayed run must keep the warm-up it had")
  latest = max(_checkpoint_steps(workdir), default=0)
  start = t_new["num_steps"] - t_new["decay_steps"]
  if latest > start:
    return (f"a checkpoint at step {latest}, past the decay start num_steps - decay_steps = "
            f"{start}; use train.num_steps >= {latest + t_new['decay_steps']}")
  return ""


def _checkpoint_steps(workdir: str) -> list[int]:
  # Finished orbax steps are folders named by the step (unfinished ones carry a suffix);
  # listing them avoids opening a CheckpointManager, which would create and lock the folder.
  path = os.path.join(workdir, run_files.CHECKPOINTS)
  return [int(n) for n in os.listdir(path) if n.isdigit()] if os.path.isdir(path) else []


def _without_placement(config: dict) -> dict:
  out = {k: v for k, v in config.items() if k not in PLACEMENT_KEYS}
  out["train"] = {k: v for k, v in out["train"].items() if k not in BUDGET_KEYS}
  return out


def _first_difference(old: dict, new: dict, prefix: str = "") -> str:
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key), new.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      found = _first_difference(a, b, f"{prefix}{key}.")
      if found:
        return found
    elif a != b:
      return f"{prefix}{key}: {a!r} there, {b!r} now"
  return ""
