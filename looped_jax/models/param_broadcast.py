"""Parameters broadcast over batch and positions, with a gradient that XLA:CPU runs fast.

The gradient of a bias, of a LayerNorm scale or of a position table is a column sum: the
cotangent [..., *p.shape] summed over its leading axes. XLA's CPU backend (with YNNPACK's
fusions off, the library's default there: train/compiler.py) rewrites a large column sum into
reduce-window loops that are ~15x slower than a matrix-vector product with a ones vector
(14 ms vs 0.8 ms for [64, 82, 1024] -> [1024] on the session-6 machine), and in the reference
train step of issue 7 those loops took 18% of the op time (docs/performance.md). So on CPU
`broadcast_param`'s gradient is that product, in float32 at HIGHEST precision; on every other
backend it is the plain sum.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp


def broadcast_param(p: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """jnp.broadcast_to(p, shape), p.shape a suffix of shape; see the module docstring."""
  return _broadcast(p, tuple(shape), p.ndim)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _broadcast(p, shape, ndim):
  del ndim
  return jnp.broadcast_to(p, shape)


def _broadcast_fwd(p, shape, ndim):
  return _broadcast(p, shape, ndim), None


def _broadcast_bwd(shape, ndim, _, g):
  return (column_sum(g, ndim),)


_broadcast.defvjp(_broadcast_fwd, _broadcast_bwd)


def column_sum(x: jax.Array, ndim: int) -> jax.Array:
  """x [..., *trailing] summed over all but its last `ndim` axes -> [*trailing], x.dtype."""
  trailing = x.shape[x.ndim - ndim:]
  rows = x.reshape(-1, math.prod(trailing))  # [R, F]

  def as_dot(rows):
    ones = jnp.ones((rows.shape[0],), rows.dtype)
    return jnp.dot(ones, rows, precision=jax.lax.Precision.HIGHEST,
                   preferred_element_type=jnp.float32).astype(rows.dtype)

  def as_sum(rows):
    return jnp.sum(rows, axis=0)

  return jax.lax.platform_dependent(rows, cpu=as_dot, default=as_sum).reshape(trailing)
