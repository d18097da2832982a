"""Loads `--config=configs/NAME.py[:ARG]` with one-sentence errors (ConfigError).

ml_collections loads the file too (for the `--config.KEY=VALUE` overrides); its errors are
tracebacks flattened into a flag message, or none at all (a missing file, a None config).
`load` runs first and names the problem and what to do. A config file's `get_config(arg)`
refuses an `arg` it does not know with ConfigError; one without a parameter takes no `:ARG`.
"""

from __future__ import annotations

import glob
import importlib.util
import inspect
import os
import sys

import ml_collections

from looped_jax.errors import ConfigError, check


def split(spec: str) -> tuple[str, str | None]:
  """'configs/x.py:arg' -> ('configs/x.py', 'arg'); no colon -> (path, None)."""
  path, colon, arg = spec.partition(":")
  return path, (arg if colon else None)


def load(spec: str) -> ml_collections.ConfigDict:
  """The config of `spec`, or ConfigError naming what is wrong with the file or its :ARG."""
  path, arg = split(spec)
  _check_exists(path)
  module = _load_module(path)
  get_config = getattr(module, "get_config", None)
  check(callable(get_config), f"config file {path} defines no get_config(); define "
        "get_config() returning looped_jax.config.base_config() with your changes.")
  _check_arg(path, get_config, arg)
  try:
    config = get_config() if arg is None else get_config(arg)
  except ConfigError:
    raise
  except Exception as e:  # noqa: BLE001 - a config file can fail in any way
    raise ConfigError(f"{path}: get_config({'' if arg is None else repr(arg)}) failed "
                      f"({type(e).__name__}: {_first_line(e)}); fix the config file.") from None
  check(isinstance(config, ml_collections.ConfigDict),
        f"{path}: get_config() returned {type(config).__name__}, not an ml_collections "
        "ConfigDict; return looped_jax.config.base_config() with your changes.")
  return config


def _check_exists(path: str) -> None:
  if os.path.isfile(path):
    return
  nearby = sorted(glob.glob(os.path.join(os.path.dirname(path) or ".", "*.py")))
  shown = f"; files there: {', '.join(os.path.basename(p) for p in nearby)}" if nearby else ""
  what = "is a folder" if os.path.isdir(path) else "does not exist"
  raise ConfigError(f"config file {path} {what}; give --config=configs/NAME.py[:ARG]{shown}.")


def _load_module(path: str):
  name = f"looped_jax_config_{abs(hash(os.path.abspath(path)))}"
  try:
    spec = importlib.util.spec_from_file_location(name, path)
    check(spec is not None and spec.loader is not None,
          f"config file {path} is not a Python file; give --config=configs/NAME.py[:ARG].")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  except ConfigError:
    raise
  except SyntaxError as e:
    raise ConfigError(f"config file {path} does not load (SyntaxError at line {e.lineno}: "
                      f"{e.msg}); fix the file.") from None
  except Exception as e:  # noqa: BLE001 - importing runs arbitrary code
    raise ConfigError(f"config file {path} does not load ({type(e).__name__}: "
                      f"{_first_line(e)}); fix the file.") from None
  finally:
    sys.modules.pop(name, None)
  return module


def _check_arg(path: str, get_config, arg: str | None) -> None:
  try:
    params = inspect.signature(get_config).parameters
  except (TypeError, ValueError):
    return
  check(arg is None or len(params) > 0,
        f"config file {path} takes no :ARG (got {arg!r}); use --config={path}.")


def _first_line(error: BaseException) -> str:
  lines = str(error).strip().splitlines()
  return lines[0][:300] if lines else type(error).__name__
