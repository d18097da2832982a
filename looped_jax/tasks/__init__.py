"""Task registry: `tasks.get(config.task)` builds a task from its config section.

A task module registers its dataclass with `@register("name")`. The config section is
`{"name": ..., <dataclass field>: value, ...}`; unknown fields are a ConfigError.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from looped_jax.errors import ConfigError
from looped_jax.registry import Registry
from looped_jax.tasks.base import Batch, Metrics, RegressionTask, Task, TokenTask

_TASKS = Registry("task")


def register(name: str):
  """Class decorator: registers a Task dataclass under `name` (and sets its `name`)."""
  def wrap(cls):
    cls.name = name
    return _TASKS.register(name)(cls)
  return wrap


def names() -> tuple[str, ...]:
  _import_all()
  return _TASKS.names()


def get(task_config: Any) -> Task:
  """Builds the task named by `task_config.name` with the remaining keys as fields."""
  _import_all()
  cfg = dict(task_config)
  name = cfg.pop("name", None)
  cls = _TASKS.lookup(name, "task.name")
  fields = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(cfg) - fields)
  if unknown:
    hint = difflib.get_close_matches(unknown[0], fields, n=1)
    hint = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise ConfigError(f"task.{unknown[0]} is not a field of task {name!r}{hint}; "
                      f"allowed: {', '.join(sorted(fields))}.")
  try:
    return cls(**cfg)
  except (TypeError, ValueError) as e:
    raise ConfigError(f"task {name!r}: {e}") from None


def default_config(name: str, **overrides) -> dict[str, Any]:
  """{"name": name, every field of the task: its default} with `overrides` applied, so that
  configs list all of a task's fields and each can be set with --config.task.FIELD."""
  _import_all()
  out = {"name": name}
  for f in dataclasses.fields(_TASKS.lookup(name, "task.name")):
    out[f.name] = f.default if f.default is not dataclasses.MISSING else f.default_factory()
  unknown = sorted(set(overrides) - set(out))
  if unknown:
    raise ConfigError(f"task.{unknown[0]} is not a field of task {name!r}; "
                      f"allowed: {', '.join(sorted(set(out) - {'name'}))}.")
  return out | overrides


def _import_all() -> None:
  # Imported lazily so that `register` is defined before the task modules use it.
  import importlib
  import pkgutil
  import looped_jax.tasks as pkg
  for mod in pkgutil.iter_modules(pkg.__path__):
    # Task modules only: not tests, not subpackages (tfds/ imports tensorflow_datasets).
    if not mod.ispkg and not mod.name.endswith("_test") and mod.name != "base":
      importlib.import_module(f"looped_jax.tasks.{mod.name}")


__all__ = ["Batch", "Metrics", "RegressionTask", "Task", "TokenTask", "default_config", "get",
           "names", "register"]
