"""Yang et al. on in-context linear regression: `configs/yang_icl.py:linear_regression[:full]`.

Kept for its name; everything (sizes, variants, commands, times, expected numbers) is in
configs/yang_icl.py (init: `reference_yang`, the reference code's).
  python -m looped_jax.main --config=configs/yang_linear_regression.py[:full] --workdir=runs/yang_lr
"""

import importlib.util
import os

from looped_jax.errors import ConfigError


SIZES = ("cpu", "full")


def get_config(arg: str = "cpu"):
  if arg not in SIZES:
    raise ConfigError(f"configs/yang_linear_regression.py:{arg} is not a size; choose one of "
                      f"{', '.join(SIZES)}.")
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "yang_icl.py")
  spec = importlib.util.spec_from_file_location("yang_icl", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config("linear_regression" + (":full" if arg == "full" else ""))
