"""`jax.jit` for analysis functions that take callables such as `step(h, x)`.

A plain function argument is static: it is hashed by identity and any arrays it closes over
become compile-time constants, so a new closure (e.g. over new model parameters) recompiles
and big parameters bloat the program. A `jax.tree_util.Partial(fn, *params)` is a pytree
whose arrays are traced instead: the compilation is keyed on `fn` and the shapes only, so
pass model parameters that way.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable, Sequence

import jax


def jit_callables(callable_names: Sequence[str], static_argnames: Sequence[str] = ()):
  """Decorator: jit `fn`, with each named callable argument static unless it is a Partial.

  Args:
    callable_names: names of `fn`'s callable parameters.
    static_argnames: other static parameters (ints, strings).
  """

  def decorate(fn: Callable) -> Callable:
    signature = inspect.signature(fn)
    jitted = {}  # the tuple of static callable names -> jitted fn

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
      bound = signature.bind(*args, **kwargs)
      bound.apply_defaults()
      static = tuple(name for name in callable_names
                     if not isinstance(bound.arguments[name], jax.tree_util.Partial))
      if static not in jitted:
        jitted[static] = jax.jit(fn, static_argnames=static + tuple(static_argnames))
      return jitted[static](**bound.arguments)

    return wrapper

  return decorate
