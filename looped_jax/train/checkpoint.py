"""One thin module over orbax: async, atomic, keep-N, verified checkpoints of the train state.

A checkpoint holds the state pytree plus a small JSON `meta` dict (step, loop count, stage
information) and a crc32 digest of every array's bytes, computed on the host at save time.
Orbax writes each step into a temporary folder and renames it when complete, so a run killed
mid-save leaves the previous checkpoint intact; the digests catch what a rename cannot (a
file truncated or changed afterwards). `restore_newest_intact` skips a damaged checkpoint
for the newest one that restores and matches its digests.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import zlib
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from looped_jax import distributed
from looped_jax.errors import ConfigError, RunStopped

DIGESTS = "digests"  # meta key: tree path -> crc32 of the array's bytes
DAMAGED_PREFIX = "damaged-"  # a damaged step folder set aside: orbax ignores the name


class CheckpointDamaged(Exception):
  """A checkpoint that cannot be restored, or whose arrays differ from their digests."""


class Checkpointer:
  def __init__(self, directory: str, *, keep: int = 2, async_save: bool = True,
               create: bool = True):
    _quiet_closed_loop_errors()
    self.directory = os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        # Not orbax's read_only for a reader (eval, hessian): it logs three warnings per open.
        # A manager that never saves changes nothing: no tmp cleanup, no deletions.
        options=ocp.CheckpointManagerOptions(max_to_keep=keep if create else None,
                                             create=create,
                                             cleanup_tmp_directories=create,
                                             enable_async_checkpointing=async_save))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Starts saving `step`; raises RunStopped if this or an earlier save failed."""
    self.check()
    meta = meta | {DIGESTS: digests(state)}
    try:
      self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                      meta=ocp.args.JsonSave(meta)))
    except Exception as e:  # noqa: BLE001 - file systems fail in many types
      raise self._save_failed(e) from None

  def check(self) -> None:
    """Raises RunStopped if a save running in the background has failed."""
    try:
      self.manager.check_for_errors()
    except Exception as e:  # noqa: BLE001
      raise self._save_failed(e) from None

  def _save_failed(self, error: Exception) -> RunStopped:
    kept = self.manager.latest_step()
    keeping = (f"the checkpoint at step {kept} is kept" if kept is not None
               else "no checkpoint was saved yet")
    return RunStopped(f"saving a checkpoint in {self.directory} failed ({_reason(error)}); "
                      f"the run stopped and {keeping}: free disk space or fix the folder, then "
                      "rerun the same command to resume.")

  def restore(self, step: int, like: Any) -> tuple[Any, dict]:
    """Restores `step` into the structure, shapes and shardings of `like` and checks its
    digests; raises CheckpointDamaged naming what failed."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001 - orbax and tensorstore fail in many types
      raise CheckpointDamaged(_reason(e)) from None
    state, meta = restored["state"], dict(restored["meta"] or {})
    saved = meta.pop(DIGESTS, None)  # None: written before digests were kept
    if saved is not None:
      wrong = _first_mismatch(saved, digests(state))
      if wrong:
        raise CheckpointDamaged(f"the bytes of {wrong} differ from the digest saved with them")
    return state, meta

  def restore_newest_intact(self, like: Any, *, set_aside: bool,
                            warn: Callable[[str], None] | None = None
                            ) -> tuple[int, Any, dict] | None:
    """(step, state, meta) of the newest checkpoint that restores intact; None when there
    is none at all. Each damaged one newer than it is reported in one line, and with
    `set_aside` renamed to damaged-STEP so that the run can save that step again.
    Raises ConfigError when no checkpoint restores."""
    warn = warn or _warn
    damaged: list[tuple[int, str]] = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        state, meta = self.restore(step, like)
        intact = True
      except CheckpointDamaged as e:
        damaged.append((step, str(e)))
        intact = False
      if not _everywhere(intact):
        if intact:
          damaged.append((step, "on another process"))
        continue
      for bad, reason in damaged:  # set aside only once an intact one is found
        kept = self._set_aside(bad) if set_aside else ""
        warn(f"warning: the checkpoint at step {bad} in {self.directory} cannot be restored "
             f"({reason}); using the one at step {step}{kept}.")
      return step, state, meta
    if not damaged:
      return None
    bad, reason = damaged[0]
    raise ConfigError(
        f"no checkpoint in {self.directory} can be restored (step {bad}: {reason}); they are "
        "damaged or were written by another version of looped_jax: use that version, or move "
        "the workdir aside to train from step 0.")

  def _set_aside(self, step: int) -> str:
    name, copy = f"{DAMAGED_PREFIX}{step}", 1
    while os.path.exists(os.path.join(self.directory, name)):  # damaged there before, too
      name, copy = f"{DAMAGED_PREFIX}{step}.{copy}", copy + 1
    distributed.barrier(f"checkpoint:set_aside:{step}")
    if distributed.is_primary():
      os.replace(os.path.join(self.directory, str(step)), os.path.join(self.directory, name))
    distributed.barrier(f"checkpoint:set_aside:{step}:done")
    self.manager.reload()
    return f", keeping the damaged one as checkpoints/{name}"

  def wait(self) -> None:
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001
      raise self._save_failed(e) from None

  def close(self) -> None:
    try:
      self.wait()
    finally:
      self.manager.close()


def digests(state: Any) -> dict[str, str]:
  """Tree path -> crc32 (hex) of each array's bytes, computed on the host."""
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    host = np.ascontiguousarray(_host_value(leaf))
    out[jax.tree_util.keystr(path)] = f"{zlib.crc32(host.tobytes()):08x}"
  return out


def _host_value(leaf: Any) -> np.ndarray:
  if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
  return np.asarray(jax.device_get(leaf))


def _reason(error: BaseException) -> str:
  """A short account of an orbax / tensorstore / OS error (theirs run to kilobytes)."""
  text = distributed.first_line(error)
  if "No space left on device" in text or "RESOURCE_EXHAUSTED" in text:
    return "no space left on device"
  text = re.sub(r"\s*\[[a-z_]+(\[\d+\])?=.*", "", text)  # tensorstore's spec dumps
  return f"{type(error).__name__}: {text[:240]}"


def _first_mismatch(saved: dict[str, str], restored: dict[str, str]) -> str:
  for path in sorted(set(saved) | set(restored)):
    if saved.get(path) != restored.get(path):
      return path
  return ""


def _everywhere(flag: bool) -> bool:
  """Whether `flag` holds on every process (all must pick the same checkpoint)."""
  if distributed.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return bool(np.all(multihost_utils.process_allgather(np.asarray(flag))))


def _warn(message: str) -> None:
  if distributed.is_primary():
    print(message, file=sys.stderr, flush=True)


_QUIETED = False


def _quiet_orbax_errors() -> None:
  """Orbax logs each failed save or read with its traceback; this module reports every one
  in one line (RunStopped, CheckpointDamaged), so those logs are dropped."""
  logging.getLogger("absl").addFilter(
      lambda r: not (r.levelno >= logging.ERROR and f"{os.sep}orbax{os.sep}" in r.pathname))


def _quiet_closed_loop_errors() -> None:
  """After a failed restore, orbax's other pending reads fail too: asyncio logs each
  ("Task exception was never retrieved") and tensorstore's callbacks into the closed event
  loop print tracebacks. The error raised says all of it once; these are dropped."""
  global _QUIETED
  if _QUIETED:
    return
  _QUIETED = True
  _quiet_orbax_errors()
  logging.getLogger("asyncio").addFilter(
      lambda record: "exception was never retrieved" not in record.getMessage())
  previous = sys.unraisablehook

  def hook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError)
            and str(unraisable.exc_value) == "Event loop is closed"):
      previous(unraisable)

  sys.unraisablehook = hook
