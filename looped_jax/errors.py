"""User-facing errors: one sentence naming the problem and the allowed values.

`main.py` prints these as a single line (no traceback) and exits non-zero. Raise them
*before* any file in the workdir is touched.
"""


class ConfigError(ValueError):
  """A config key, flag value, mesh shape, data or checkpoint problem a person must fix."""


class RunStopped(RuntimeError):
  """A run stopped for a reason outside its config (a failed save, a signal): the message
  says what happened and how to go on; `status` is the exit status."""

  def __init__(self, message: str, status: int = 1):
    super().__init__(message)
    self.status = status


def check(condition: bool, message: str) -> None:
  """Raises ConfigError(message) unless `condition` holds."""
  if not condition:
    raise ConfigError(message)


def check_choice(key: str, value, allowed) -> None:
  """Raises ConfigError unless `value` is one of `allowed`, naming `key` and the options."""
  allowed = tuple(allowed)
  if value not in allowed:
    raise ConfigError(f"{key}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}.")
