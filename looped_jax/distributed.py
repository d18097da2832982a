"""Multi-process runs: `jax.distributed` start-up, the primary process, barriers, failures.

Every process runs the same command. `initialize` connects them through the coordinator
(process 0) before any JAX computation; after that `jax.devices()` lists the devices of all
processes and one jitted step spans them. Files (metrics, config.json, summary, plots) are
written by process 0 only (`is_primary`); orbax checkpoints are written by all of them.

Where the settings come from, first match wins:
  coordinator address   --coordinator_address, JAX_COORDINATOR_ADDRESS, cluster detection
  number of processes   --num_processes, JAX_NUM_PROCESSES, cluster detection
  process id            --process_id, JAX_PROCESS_ID, cluster detection
Cluster detection is JAX's own: SLURM (srun), Open MPI, Cloud TPU pods.

Failures end the run instead of hanging: a coordinator that cannot be reached within
`init_timeout` seconds is an error; a peer that stops sending heartbeats for
`heartbeat_timeout` seconds makes the coordination service stop every other process, and a
collective whose peer died fails at once (gloo: connection reset). `main.py` turns the
latter into one `error:` line and exits with EXIT_PEER_FAILURE without waiting for the
shutdown barrier of the dead peer.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import threading
import time

EXIT_PEER_FAILURE = 3
RUNTIME_GRACE = 10  # s: the runtime's own start-up deadline, after ours
# Substrings of the runtime errors raised when a peer or the coordinator is gone.
PEER_FAILURE_MARKERS = ("gloo", "connection reset", "unavailable:", "heartbeat",
                        "deadline_exceeded", "coordination service")


class DistributedError(RuntimeError):
  """The processes of a run could not be connected, or one of them failed."""


@dataclasses.dataclass(frozen=True)
class Settings:
  """How to join a multi-process run (None: from the environment / cluster detection)."""

  coordinator_address: str | None = None  # "host:port" of process 0
  num_processes: int | None = None
  process_id: int | None = None
  init_timeout: int = 60  # seconds to wait for every process to connect
  heartbeat_timeout: int = 20  # seconds without heartbeats before a process counts as dead
  shutdown_timeout: int = 20  # seconds to wait for the others at a clean exit

  def resolved(self) -> "Settings":
    """Fills unset fields from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID."""
    env = os.environ.get
    num, pid = env("JAX_NUM_PROCESSES"), env("JAX_PROCESS_ID")
    return dataclasses.replace(
        self,
        coordinator_address=self.coordinator_address or env("JAX_COORDINATOR_ADDRESS"),
        num_processes=self.num_processes if self.num_processes is not None
        else (int(num) if num else None),
        process_id=self.process_id if self.process_id is not None else (int(pid) if pid else None))


def initialize(settings: Settings) -> None:
  """Joins the run; must come before any JAX computation. Raises DistributedError."""
  import jax  # pylint: disable=import-outside-toplevel

  s = settings.resolved()
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU cross-process
  if s.coordinator_address and s.process_id not in (None, 0):
    _wait_for_coordinator(s.coordinator_address, s.init_timeout)
  # The runtime aborts (SIGABRT, a C++ stack trace) when its own deadline passes; this
  # watchdog fires first with one line and EXIT_PEER_FAILURE.
  watchdog = threading.Timer(s.init_timeout, _exit_with, args=(
      f"not all {s.num_processes or 'the'} processes joined the coordinator "
      f"{s.coordinator_address or '(detected)'} within {s.init_timeout} s; start every "
      "process with the same --coordinator_address and --num_processes.",))
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(
        coordinator_address=s.coordinator_address, num_processes=s.num_processes,
        process_id=s.process_id, initialization_timeout=s.init_timeout + RUNTIME_GRACE,
        heartbeat_timeout_seconds=s.heartbeat_timeout,
        shutdown_timeout_seconds=s.shutdown_timeout)
  except (ValueError, RuntimeError) as e:
    raise DistributedError(f"jax.distributed.initialize failed ({first_line(e)}); set "
                           "--coordinator_address, --num_processes and --process_id (or "
                           "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID), or "
                           "run under SLURM / Open MPI / a TPU pod.") from None
  finally:
    watchdog.cancel()


def _exit_with(message: str) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  os._exit(EXIT_PEER_FAILURE)  # pylint: disable=protected-access


def _wait_for_coordinator(address: str, timeout: float) -> None:
  """A clean error instead of the runtime's abort when the coordinator never answers."""
  host, _, port = address.rpartition(":")
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
        return
    except OSError as e:
      if time.monotonic() >= deadline:
        raise DistributedError(f"the coordinator {address} did not answer within {timeout} s "
                               f"({e}); start process 0 there or fix --coordinator_address.") \
            from None
      time.sleep(0.5)


def is_initialized() -> bool:
  import jax  # pylint: disable=import-outside-toplevel
  return jax.distributed.is_initialized()


def process_count() -> int:
  import jax  # pylint: disable=import-outside-toplevel
  return jax.process_count()


def process_index() -> int:
  import jax  # pylint: disable=import-outside-toplevel
  return jax.process_index()


def is_primary() -> bool:
  """True on the process that writes files (process 0; the only one when not distributed)."""
  import jax  # pylint: disable=import-outside-toplevel
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches `name` (no-op with one process)."""
  import jax  # pylint: disable=import-outside-toplevel
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices(name)


def primary_decides(flag: bool) -> bool:
  """Process 0's `flag` on every process: decisions from local clocks must agree, or the
  processes that stop leave the others waiting in a collective."""
  import jax  # pylint: disable=import-outside-toplevel
  if jax.process_count() == 1:
    return flag
  import numpy as np  # pylint: disable=import-outside-toplevel
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


def is_peer_failure(error: BaseException) -> bool:
  """Whether `error` is a runtime failure caused by a dead or unreachable peer."""
  if process_count() <= 1 or isinstance(error, (KeyboardInterrupt, SystemExit)):
    return False
  text = str(error).lower()
  return any(marker in text for marker in PEER_FAILURE_MARKERS)


def first_line(error: BaseException) -> str:
  lines = str(error).strip().splitlines()
  return lines[0][:300] if lines else type(error).__name__
