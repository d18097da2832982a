"""Command line: `python -m looped_jax.main --config=configs/NAME.py[:ARG] --workdir=DIR`.

Flags and dispatch only. Every error prints one line, `error: ...`, and no traceback
(docs/reliability.md). Exit statuses: 2 for bad input a person must fix; 1 for a run stopped
by a failed write (a full disk); 128 + the signal's number for a run stopped by SIGTERM or
SIGINT after saving a checkpoint; 3 for a multi-process run (--distributed) whose
coordinator or a peer is gone (docs/scale.md).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from absl import app, flags, logging
from ml_collections import config_flags

from looped_jax import config_file, distributed
from looped_jax.errors import ConfigError, RunStopped

EXIT_INTERRUPTED = 130  # the shell's status for a process ended by SIGINT
EXIT_TERMINATED = 143  # and by SIGTERM

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/NAME.py[:ARG]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "hessian", "generate"],
                          "train; eval: eval.json of the latest checkpoint; hessian: its "
                          "Hessian spectrum (config.hessian) in hessian.json; generate: "
                          "continue config.generate.prompt, in generate.json.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a workdir that holds another config's run.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join a multi-process run with jax.distributed.initialize; the "
    "settings below, else JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, else "
    "SLURM / Open MPI / TPU-pod detection.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's id, 0..num_processes-1.")
_INIT_TIMEOUT = flags.DEFINE_integer(
    "init_timeout", distributed.Settings.init_timeout,
    "Seconds to wait for the coordinator and every process to connect.")
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    "heartbeat_timeout", distributed.Settings.heartbeat_timeout,
    "Seconds without heartbeats after which a process counts as dead and the run stops.")


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  if _CONFIG.value is None or not _WORKDIR.value:
    _fail("both --config=configs/NAME.py and --workdir=DIR are required.")
  if _DISTRIBUTED.value:  # before any JAX computation
    try:
      distributed.initialize(distributed.Settings(
          _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
          init_timeout=_INIT_TIMEOUT.value, heartbeat_timeout=_HEARTBEAT_TIMEOUT.value))
    except distributed.DistributedError as e:
      _fail(str(e), distributed.EXIT_PEER_FAILURE)
  try:
    from looped_jax.train import experiment  # after flag parsing: keeps --help fast

    experiment.run(_CONFIG.value, _WORKDIR.value, _MODE.value, overwrite=_OVERWRITE.value,
                   overrides=_override_keys(sys.argv))
  except ConfigError as e:
    _fail(str(e))
  except RunStopped as e:
    _stop(str(e), e.status)
  except Exception as e:  # noqa: BLE001 - runtime errors of a dead peer have several types
    from looped_jax.train import trainer

    if isinstance(e, trainer.TrainingDiverged):
      _fail(str(e))
    if not distributed.is_peer_failure(e):
      raise
    _fail(f"process {distributed.process_index()} stopped: a peer process died or the "
          f"coordinator is unreachable ({distributed.first_line(e)}).",
          distributed.EXIT_PEER_FAILURE)


NOTHING_LOST = ("nothing was lost: rerun the same command to start again or resume from the "
                "last checkpoint.")


class _Terminated(BaseException):
  """SIGTERM outside the train loop (a BaseException, as KeyboardInterrupt: no `except
  Exception` on the way may take it for an error of its own)."""


def _raise_terminated(signum, frame):
  del signum, frame
  raise _Terminated


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, after loading the config file with one-line errors (config_file.load),
  and with a one-line message instead of a traceback for a bad override."""
  spec = _config_spec(argv)
  if spec is not None:
    try:
      config_file.load(spec)
    except ConfigError as e:
      _fail(str(e))
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # noqa: BLE001 - config_flags raises several types
    from looped_jax import config as config_lib

    known = config_lib.flatten(config_lib.base_config())
    unknown = [o for o in _override_keys(argv) if o not in known
               and not any(o.startswith(f + ".") for f in config_lib.FREE_FORM)]
    detail = " ".join(distributed.first_line(e).replace("'", "").split())
    if unknown:
      what = f"--config.{unknown[0]} names no config key (see looped_jax/config.py)"
    elif isinstance(e, flags.Error):  # absl names the flag and the value or the choices
      what = detail
    else:
      what = f"an override names no key of the loaded config ({detail})"
    _fail(f"bad command-line flags: {what}.")


def _config_spec(argv: list[str]) -> str | None:
  """The value of --config (either --config=X or --config X), if given."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg[len("--config="):]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _override_keys(argv: list[str]) -> list[str]:
  """The config keys set on the command line (--config.KEY=VALUE or --config.KEY VALUE)."""
  return [a[len("--config."):].split("=")[0] for a in argv if a.startswith("--config.")]


def _stop(message: str, status: int) -> None:
  """Ends a run that stopped midway: background writers (orbax, TensorBoard) may fail on
  the same cause as the run, and their tracebacks and exit handlers would bury the line."""
  threading.excepthook = lambda args: None
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(status)  # pylint: disable=protected-access


def _fail(message: str, status: int = 2) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  if distributed.is_initialized():
    # Skip jax.distributed's shutdown barrier: a failed peer would never reach it.
    sys.stdout.flush()
    os._exit(status)  # pylint: disable=protected-access
  sys.exit(status)


def run() -> None:
  """The entry point. Ctrl-C or SIGTERM outside the train loop (which saves a checkpoint and
  stops on its own: train/preemption.py), e.g. while the config loads or --mode=eval runs,
  ends with one line and its signal's exit status, not a traceback or silence; eval.json and
  hessian.json are written atomically, so nothing is half-written."""
  signal.signal(signal.SIGTERM, _raise_terminated)
  try:
    app.run(main, flags_parser=_parse_flags)
  except KeyboardInterrupt:
    _fail(f"interrupted; {NOTHING_LOST}", EXIT_INTERRUPTED)
  except _Terminated:
    _fail(f"stopped by SIGTERM; {NOTHING_LOST}", EXIT_TERMINATED)


if __name__ == "__main__":
  run()
