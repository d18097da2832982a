"""Hessians of any pure loss over a pytree of params: HVPs, a flat operator, dense eigh.

Usable without a trainer: `loss_fn(params) -> scalar`, or `loss_fn(params, batch)` with
`batch=` given. Recipe (docs/papers.md, "Gong et al."): a fixed probe batch in eval mode;
tiny models get the dense Hessian and float64 `eigh` of all eigenvalues; larger ones HVPs,
Lanczos top-k and an SLQ density (re-exported here from `lanczos.py`).

    with jax.enable_x64(True):                       # float64 throughout
      op = hessian_operator(loss_fn, params, subset="attn", dtype=jnp.float64)
      evals, _ = dense_eigh(op)                      # all dim eigenvalues, ascending
      top = top_k_eigenvalues(op, key, 20, 60)       # or via HVPs only

Probe batches on a device mesh: pass them as `batch=` (a traced input that keeps its
`NamedSharding`, so HVPs are data-parallel). A batch that `loss_fn` merely closes over
is baked into the compiled program as a constant: results are the same, but the
program runs unpartitioned on one device and is recompiled for every new closure.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from looped_jax.analysis.lanczos import (  # noqa: F401  (re-exported API)
    LanczosResult, MatrixOperator, SpectralDensity, check_x64, hutchinson_trace, lanczos,
    probe_vectors, ritz_residuals, slq_density, top_k_eigenvalues, tridiagonal,
    tridiagonal_eigh)
from looped_jax.errors import ConfigError, check
from looped_jax.tree_paths import path_string  # noqa: F401  (re-exported API)

Subset = None | str | Callable[[str], bool]


def _predicate(subset: Subset) -> Callable[[str], bool]:
  if subset is None:
    return lambda _: True
  if isinstance(subset, str):
    pattern = re.compile(subset)
    return lambda path: pattern.search(path) is not None
  if callable(subset):
    return subset
  raise ConfigError(f"subset={subset!r} must be None, a regex string or a predicate on paths.")


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=("x0", "fixed", "batch"),
    meta_fields=("loss_fn", "treedef", "selected", "shapes", "leaf_dtypes", "paths"))
@dataclasses.dataclass(frozen=True, eq=False)
class HessianOperator:
  """The Hessian of `loss_fn` w.r.t. a flat vector of selected params, as an operator.

  A pytree: arrays (x0, fixed leaves, batch) are data, the rest static, so jitted solvers
  recompile only when the loss function or the param structure changes.

  Attributes:
    x0: [dim] selected params raveled (ravel_pytree order of the selected leaves).
    fixed: unselected leaves, held at their values.
    batch: the probe batch passed as loss_fn's second argument, or None.
    loss_fn: loss_fn(params) or loss_fn(params, batch) -> scalar.
    treedef: structure of the full params.
    selected: per leaf (flatten order), whether it is in the subset.
    shapes, leaf_dtypes: of the selected leaves.
    paths: '/'-joined paths of the selected leaves; store them with each spectrum.
  """

  x0: jax.Array
  fixed: tuple
  batch: Any
  loss_fn: Callable
  treedef: Any
  selected: tuple
  shapes: tuple
  leaf_dtypes: tuple
  paths: tuple

  @property
  def dim(self) -> int:
    return self.x0.shape[0]

  @property
  def dtype(self):
    return self.x0.dtype

  def _selected_leaves(self, x: jax.Array) -> list[jax.Array]:
    leaves, start = [], 0
    for shape, dtype in zip(self.shapes, self.leaf_dtypes):
      size = math.prod(shape)
      leaves.append(x[start:start + size].reshape(shape).astype(dtype))
      start += size
    return leaves

  def _merge(self, selected_leaves, fixed_leaves) -> Any:
    chosen, others = iter(selected_leaves), iter(fixed_leaves)
    leaves = [next(chosen) if sel else next(others) for sel in self.selected]
    return jax.tree_util.tree_unflatten(self.treedef, leaves)

  def params(self, x: jax.Array | None = None) -> Any:
    """Full params pytree with the selected leaves read from x [dim] (default x0)."""
    return self._merge(self._selected_leaves(self.x0 if x is None else x), self.fixed)

  def ravel(self, tree: Any) -> jax.Array:
    """A params-shaped pytree -> [dim]: its selected leaves, flattened in this operator's
    order (the inverse of `unravel` on the selected leaves), in the operator's dtype."""
    leaves = jax.tree_util.tree_leaves(tree)
    check(len(leaves) == len(self.selected),
          f"ravel got a tree of {len(leaves)} leaves; the operator's params have "
          f"{len(self.selected)}.")
    chosen = [jnp.ravel(leaf) for leaf, sel in zip(leaves, self.selected) if sel]
    return jnp.concatenate(chosen).astype(self.dtype)

  def unravel(self, v: jax.Array) -> Any:
    """A [dim] direction as a full params-shaped pytree, zero on unselected leaves."""
    return self._merge(self._selected_leaves(v), [jnp.zeros_like(f) for f in self.fixed])

  def loss(self, x: jax.Array) -> jax.Array:
    """Scalar loss as a function of the flat selected params x [dim]."""
    params = self.params(x)
    return self.loss_fn(params) if self.batch is None else self.loss_fn(params, self.batch)

  def matvec(self, v: jax.Array) -> jax.Array:
    """H v for v [dim] (jitted forward-over-reverse HVP)."""
    return _matvec_jit(self, v)

  def linear_map(self) -> Callable[[jax.Array], jax.Array]:
    """v -> H v inside a trace, linearized once so repeated calls skip the primal pass."""
    _, hvp_lin = jax.linearize(jax.grad(self.loss), self.x0)
    return hvp_lin


@jax.jit
def _matvec_jit(op: HessianOperator, v: jax.Array) -> jax.Array:
  return jax.jvp(jax.grad(op.loss), (op.x0,), (v.astype(op.dtype),))[1]


def hessian_operator(loss_fn: Callable, params: Any, subset: Subset = None, *,
                     batch: Any = None, dtype=None) -> HessianOperator:
  """Builds the Hessian operator of loss_fn at params, optionally on a parameter subset.

  Args:
    loss_fn: pure loss_fn(params) -> scalar, or loss_fn(params, batch) if `batch` given.
    params: pytree of arrays (e.g. nested dicts).
    subset: None (all floating leaves), a regex searched in each leaf's '/'-joined path,
      or a predicate path -> bool. Unselected leaves are held fixed, so the operator is
      the matching diagonal block of the full Hessian. Integer leaves are never selected.
    batch: optional probe batch pytree; keeps its sharding (see module docstring).
    dtype: cast every floating leaf (selected or fixed) to this dtype first, e.g.
      jnp.float64 inside `with jax.enable_x64(True):`.

  Returns:
    HessianOperator with dim = number of selected scalars.
  """
  if dtype is not None:
    check_x64(dtype)
    params = jax.tree.map(
        lambda p: jnp.asarray(p, dtype) if jnp.issubdtype(jnp.result_type(p), jnp.inexact)
        else jnp.asarray(p), params)
  keep = _predicate(subset)
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  selected, chosen, fixed, paths = [], [], [], []
  for path, leaf in flat:
    leaf = jnp.asarray(leaf)
    name = path_string(path)
    sel = bool(jnp.issubdtype(leaf.dtype, jnp.inexact) and keep(name))
    selected.append(sel)
    (chosen if sel else fixed).append(leaf)
    if sel:
      paths.append(name)
  check(bool(chosen), f"subset={subset!r} selects no floating-point parameter.")
  x0, _ = ravel_pytree(chosen)
  check_x64(x0.dtype)
  return HessianOperator(
      x0=x0, fixed=tuple(fixed), batch=batch, loss_fn=loss_fn, treedef=treedef,
      selected=tuple(selected), shapes=tuple(c.shape for c in chosen),
      leaf_dtypes=tuple(c.dtype for c in chosen), paths=tuple(paths))


@functools.partial(jax.jit, static_argnums=0)
def hvp(loss_fn: Callable, params: Any, tangents: Any, batch: Any = None) -> Any:
  """Hessian-vector product on pytrees: d/dt grad(loss)(params + t * tangents) at t = 0.

  Forward-over-reverse (`jax.jvp` of `jax.grad`), jitted with loss_fn static.

  Args:
    loss_fn: loss_fn(params) -> scalar, or loss_fn(params, batch) when batch is given.
    params, tangents: pytrees of the same structure.
    batch: optional second argument of loss_fn.

  Returns:
    H @ tangents, shaped like params.
  """
  f = loss_fn if batch is None else (lambda p: loss_fn(p, batch))
  return jax.jvp(jax.grad(f), (params,), (tangents,))[1]


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def _dense_jit(op: HessianOperator, chunk_size: int | None) -> jax.Array:
  if chunk_size is None:
    return jax.hessian(op.loss)(op.x0)
  # Column blocks of H: memory of chunk_size HVPs instead of dim of them.
  columns = jax.lax.map(op.linear_map(), jnp.eye(op.dim, dtype=op.dtype),
                        batch_size=chunk_size)
  return columns.T


def dense_hessian(op: HessianOperator, chunk_size: int | None = None) -> jax.Array:
  """Exact [dim, dim] Hessian of op.loss at op.x0.

  Args:
    op: HessianOperator (its subset, dtype and batch apply).
    chunk_size: None uses `jax.hessian` (memory ~ dim HVPs at once); an int builds the
      columns chunk_size HVPs at a time (same result, bounded memory).
  """
  check_x64(op.dtype)
  return _dense_jit(op, chunk_size)


def dense_eigh(op: HessianOperator, chunk_size: int | None = None):
  """All eigenvalues [dim] (ascending) and eigenvectors [dim, dim] (columns) of the Hessian.

  Symmetrises H first; run under `jax.enable_x64(True)` with a float64 op for the float64
  recipe of small models (docs/papers.md, "Gong et al.").
  """
  h = dense_hessian(op, chunk_size)
  return jnp.linalg.eigh(0.5 * (h + h.T))
