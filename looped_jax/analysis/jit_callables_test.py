"""Tests for jit_callables: Partial arguments are traced, plain callables are static."""

import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from looped_jax.analysis.jit_callables import jit_callables

TRACES = []


@jit_callables(("fn",), ("times",))
def apply_n(fn, h, times):
  TRACES.append(times)  # runs once per trace, i.e. per compilation
  for _ in range(times):
    h = fn(h)
  return h


def scale(a, h):
  return a * h


def test_partial_params_are_traced_and_reuse_the_compilation():
  TRACES.clear()
  h = jnp.ones(3)
  np.testing.assert_allclose(apply_n(Partial(scale, jnp.float32(2.0)), h, 2), 4.0)
  np.testing.assert_allclose(apply_n(Partial(scale, jnp.float32(3.0)), h, 2), 9.0)
  assert TRACES == [2]  # new parameter values, same compilation
  np.testing.assert_allclose(apply_n(Partial(scale, jnp.float32(3.0)), h, times=1), 3.0)
  assert TRACES == [2, 1]  # a static argument changed


def test_plain_callables_are_static():
  TRACES.clear()
  h = jnp.ones(3)
  double = lambda h: 2 * h
  np.testing.assert_allclose(apply_n(double, h, 1), 2.0)
  np.testing.assert_allclose(apply_n(double, h, 1), 2.0)
  np.testing.assert_allclose(apply_n(lambda h: 5 * h, h, 1), 5.0)
  assert TRACES == [1, 1]  # same object cached, new object recompiled
