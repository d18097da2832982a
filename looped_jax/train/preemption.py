"""SIGTERM / SIGINT as a request to stop at the next step boundary with a checkpoint.

Schedulers preempt with SIGTERM (SLURM, TPU pods, Kubernetes) and people with Ctrl-C. The
handler only records the signal; the trainer saves and stops at the end of the step it is
in, so that the resumed run equals an uninterrupted one. A second signal stops at once
(KeyboardInterrupt), for a save that would take too long.
"""

from __future__ import annotations

import signal
import threading

import numpy as np

from looped_jax import distributed

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
  """Records SIGTERM / SIGINT between `install` and `uninstall` (main thread only)."""

  def __init__(self):
    self.signum: int | None = None
    self._previous: dict[int, object] = {}

  def install(self) -> "StopSignals":
    if threading.current_thread() is threading.main_thread():
      for signum in SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def uninstall(self) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

  def _handle(self, signum, frame) -> None:
    del frame
    if self.signum is not None:
      raise KeyboardInterrupt  # the second signal: stop now
    self.signum = signum

  @property
  def name(self) -> str:
    return signal.Signals(self.signum).name if self.signum else ""

  @property
  def exit_status(self) -> int:
    return 128 + (self.signum or 0)  # the shell's status for a process ended by the signal

  def agreed(self, at_log_step: bool) -> bool:
    """Whether to stop now. With several processes a signal may reach only some, so they
    agree at log steps (a collective) and stop together."""
    if distributed.process_count() == 1:
      return self.signum is not None
    if not at_log_step:
      return False
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    received = multihost_utils.process_allgather(np.asarray(self.signum or 0))
    if self.signum is None and np.any(received):
      self.signum = int(np.max(received))
    return bool(np.any(received))
