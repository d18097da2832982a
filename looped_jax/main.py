"""Command line: `python -m looped_jax.main --config=configs/NAME.py[:ARG] --workdir=DIR`.

Flags and dispatch only. Errors a person must fix print one line and exit with status 2.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from looped_jax.errors import ConfigError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/NAME.py[:ARG]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "hessian"],
                          "train; eval: eval.json of the latest checkpoint; hessian: its "
                          "Hessian spectrum (config.hessian) in hessian.json.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a workdir that holds another config's run.")


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  from looped_jax.train import experiment, trainer  # after flag parsing: keeps --help fast

  if _CONFIG.value is None or not _WORKDIR.value:
    _fail("both --config=configs/NAME.py and --workdir=DIR are required.")
  try:
    experiment.run(_CONFIG.value, _WORKDIR.value, _MODE.value, overwrite=_OVERWRITE.value)
  except (ConfigError, trainer.TrainingDiverged) as e:
    _fail(str(e))


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with a one-line message instead of a traceback for a bad override."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # noqa: BLE001 - config_flags raises several types
    from looped_jax import config as config_lib

    overrides = [a.split("=")[0][len("--config."):] for a in argv if a.startswith("--config.")]
    known = config_lib.flatten(config_lib.base_config())
    unknown = [o for o in overrides if o not in known
               and not any(o.startswith(f + ".") for f in config_lib.FREE_FORM)]
    detail = " ".join(str(e).encode().decode("unicode_escape").replace("'", "").split())
    if unknown:
      what = f"--config.{unknown[0]} names no config key (see looped_jax/config.py)"
    elif isinstance(e, flags.Error):  # e.g. --mode=bogus: absl names the flag and the choices
      what = detail
    else:
      what = f"an override names no key of the loaded config ({detail})"
    _fail(f"bad command-line flags: {what}.")


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
