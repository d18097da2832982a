"""Name -> builder tables filled by a decorator: tasks (tasks/__init__.py) and ICL baselines
(tasks/baselines.py) are registered and looked up the same way."""

from __future__ import annotations

import difflib
from typing import Any, Callable

from looped_jax.errors import ConfigError


class Registry:
  """`@registry.register("name")` on a class or function; `registry.lookup(name)` returns it,
  or raises one ConfigError naming the allowed names (and the closest one)."""

  def __init__(self, what: str):
    self.what = what  # "task", "baseline": how messages name an entry
    self._entries: dict[str, Any] = {}

  def register(self, name: str) -> Callable[[Any], Any]:
    def wrap(entry):
      if name in self._entries:
        raise ValueError(f"{self.what} {name!r} registered twice")
      self._entries[name] = entry
      return entry
    return wrap

  def names(self) -> tuple[str, ...]:
    return tuple(sorted(self._entries))

  def __contains__(self, name: str) -> bool:
    return name in self._entries

  def lookup(self, name: str, key: str | None = None) -> Any:
    """The entry `name`; `key` is the config key that named it, for the message."""
    if name not in self._entries:
      hint = difflib.get_close_matches(str(name), self._entries, n=1)
      hint = f" (did you mean {hint[0]!r}?)" if hint else ""
      what = f"{key}={name!r}" if key else f"{self.what} {name!r}"
      raise ConfigError(f"{what} is not a known {self.what}{hint}; choose one of "
                        f"{', '.join(self.names())}.")
    return self._entries[name]
