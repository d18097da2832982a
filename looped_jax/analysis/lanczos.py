"""Lanczos, stochastic Lanczos quadrature and Hutchinson traces for symmetric operators.

An *operator* here is any pytree with

  dim: int          size of the vectors it acts on
  dtype             dtype of those vectors (float32, or float64 under `jax.enable_x64(True)`)
  linear_map()      returns a function (dim,) -> (dim,), valid inside the current trace;
                    it may do one-off work first (`HessianOperator` linearizes its HVP once)

`HessianOperator` (hessian.py) and `MatrixOperator` (below) qualify. Operators are passed
to the jitted solvers as pytree arguments, so their arrays (params, a probe batch) stay
traced inputs with their shardings rather than baked-in constants.

Every solver takes (op, key, sizes..., options): `lanczos(op, key, num_iters)`,
`top_k_eigenvalues(op, key, k, num_iters)`, `hutchinson_trace(op, key, num_probes)`,
`slq_density(op, key, num_probes, num_iters)`.

All iterations run inside one jitted `lax.fori_loop` (docs/papers.md, "Pitfalls" 2: an
unrolled Python loop compiles slowly); float64 needs `with jax.enable_x64(True):`
around both building the operator and calling these functions.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from looped_jax.errors import ConfigError, check, check_choice

PROBE_KINDS = ("rademacher", "gaussian")
_X64_DTYPES = ("float64", "int64", "uint64", "complex128")


@functools.partial(jax.tree_util.register_dataclass, data_fields=("matrix",), meta_fields=())
@dataclasses.dataclass(frozen=True, eq=False)
class MatrixOperator:
  """An explicit symmetric matrix as an operator (tests, small problems).

  Attributes:
    matrix: [dim, dim] symmetric array; only `matrix @ v` is used.
  """

  matrix: jax.Array

  @property
  def dim(self) -> int:
    return self.matrix.shape[0]

  @property
  def dtype(self):
    return self.matrix.dtype

  def linear_map(self):
    return lambda v: self.matrix @ v


class LanczosResult(NamedTuple):
  """Output of `lanczos`.

  Attributes:
    alphas: [m] diagonal of the tridiagonal T.
    betas: [m - 1] off-diagonal of T; an exact 0 marks a restart (invariant subspace
      found), so T is block diagonal there and its eigenvalues are still A's.
    basis: [m, dim] orthonormal Lanczos vectors (rows), or None unless requested.
    beta_next: scalar beta_m, the norm of the residual after the last step; it bounds
      the Ritz residuals (see `ritz_residuals`).
  """

  alphas: jax.Array
  betas: jax.Array
  basis: jax.Array | None
  beta_next: jax.Array


class SpectralDensity(NamedTuple):
  """Output of `slq_density`.

  Attributes:
    grid: [G] eigenvalue grid.
    density: [G] smoothed density on `grid`; integrates to 1 (trapezoid rule).
    nodes: [P, m] Ritz values per probe (Gauss quadrature nodes).
    weights: [P, m] squared first components of T's eigenvectors; each row sums to 1.
    sigma: Gaussian smoothing width used.
  """

  grid: jax.Array
  density: jax.Array
  nodes: jax.Array
  weights: jax.Array
  sigma: float


def check_x64(dtype) -> None:
  """Raises ConfigError when a 64-bit dtype is used with x64 disabled (it would truncate)."""
  if jnp.dtype(dtype).name in _X64_DTYPES and not jax.config.jax_enable_x64:
    raise ConfigError(
        f"dtype {jnp.dtype(dtype)} needs 64-bit jax: build and use the operator inside "
        "`with jax.enable_x64(True):`.")


def _check_iters(op, num_iters: int) -> None:
  check_x64(op.dtype)
  check(1 <= num_iters <= op.dim,
        f"num_iters={num_iters} must be in [1, dim={op.dim}] (a Krylov space cannot exceed dim).")


def default_breakdown_tol(dim: int, dtype) -> float:
  # Below ~the rounding noise of one matvec: dropping a beta this small moves eigenvalues
  # by at most tol * ||A||, and the vector it would normalise is mostly noise anyway.
  return float(10.0 * np.sqrt(dim) * jnp.finfo(dtype).eps)


def _orthogonalize(w: jax.Array, basis: jax.Array) -> jax.Array:
  """Removes span(basis rows) from w by classical Gram-Schmidt, twice ("twice is enough").

  Rows of `basis` not yet filled are zero and contribute nothing.
  """
  for _ in range(2):
    w = w - basis.T @ (basis @ w)
  return w


def lanczos_iterations(matvec, v0: jax.Array, num_iters: int, key: jax.Array,
                       breakdown_tol: float):
  """Traceable Lanczos core with full reorthogonalisation and restarts.

  Args:
    matvec: symmetric linear map (dim,) -> (dim,).
    v0: [dim] start vector (any nonzero scale).
    num_iters: m, number of Lanczos vectors, <= dim.
    key: PRNG key for restart vectors.
    breakdown_tol: restart when beta <= breakdown_tol * (running estimate of ||A||).

  Returns:
    (alphas [m], betas [m], basis [m, dim]); betas[m - 1] is beta_m (0 after a restart).
  """
  dim, dtype = v0.shape[0], v0.dtype
  basis = jnp.zeros((num_iters + 1, dim), dtype).at[0].set(v0 / jnp.linalg.norm(v0))
  alphas = jnp.zeros((num_iters,), dtype)
  betas = jnp.zeros((num_iters,), dtype)  # betas[i] couples vectors i and i+1.

  def body(i, carry):
    basis, alphas, betas, anorm = carry
    v = basis[i]
    beta_prev = jnp.where(i > 0, betas[i - 1], 0.0)
    v_prev = basis[jnp.maximum(i - 1, 0)]
    w = matvec(v)
    alpha = jnp.vdot(v, w)
    w = w - alpha * v - beta_prev * v_prev
    w = _orthogonalize(w, basis)
    beta = jnp.linalg.norm(w)
    anorm = jnp.maximum(anorm, jnp.abs(alpha) + beta_prev + beta)

    def proceed():
      return w / beta, beta

    def restart():
      # Krylov space exhausted: continue in a fresh direction orthogonal to all so far;
      # beta = 0 decouples T into blocks whose eigenvalues are all eigenvalues of A.
      r = _orthogonalize(jax.random.normal(jax.random.fold_in(key, i), (dim,), dtype), basis)
      norm = jnp.linalg.norm(r)
      return jnp.where(norm > 0, r / jnp.where(norm > 0, norm, 1.0), 0.0), jnp.zeros((), dtype)

    v_next, beta = jax.lax.cond(beta > breakdown_tol * anorm, proceed, restart)
    return (basis.at[i + 1].set(v_next), alphas.at[i].set(alpha), betas.at[i].set(beta), anorm)

  init = (basis, alphas, betas, jnp.zeros((), dtype))
  basis, alphas, betas, _ = jax.lax.fori_loop(0, num_iters, body, init)
  return alphas, betas, basis[:num_iters]


def tridiagonal(alphas: jax.Array, betas: jax.Array) -> jax.Array:
  """Dense [m, m] symmetric tridiagonal matrix from alphas [m] and betas [m - 1]."""
  return jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)


def tridiagonal_eigh(alphas: jax.Array, betas: jax.Array):
  """Ritz values [m] (ascending) and eigenvectors [m, m] (columns) of the tridiagonal."""
  return jnp.linalg.eigh(tridiagonal(alphas, betas))


def ritz_residuals(res: "LanczosResult"):
  """Ritz values [m] (ascending) and their residual norms [m], ||A y - theta y||.

  With full reorthogonalisation the residual of Ritz pair (theta_j, y_j) is
  beta_m * |last component of T's j-th eigenvector|, so convergence is checked without
  any extra matvec: an eigenvalue of A lies within the residual of each Ritz value.
  """
  ritz, vecs = tridiagonal_eigh(res.alphas, res.betas)
  return ritz, jnp.abs(res.beta_next * vecs[-1])


def _start_vector(key, dim, dtype):
  return jax.random.normal(key, (dim,), dtype)


@functools.partial(jax.jit, static_argnames=("num_iters", "breakdown_tol"))
def _lanczos_jit(op, key, v0, num_iters, breakdown_tol):
  key_v0, key_restart = jax.random.split(key)
  if v0 is None:
    v0 = _start_vector(key_v0, op.dim, op.dtype)
  # The basis is built anyway (full reorthogonalisation), so it is always returned and
  # dropped outside: one compile serves every caller with the same num_iters.
  return lanczos_iterations(op.linear_map(), v0.astype(op.dtype), num_iters, key_restart,
                            breakdown_tol)


def check_key(key) -> None:
  """Refuses a second argument that is not a PRNG key (e.g. a size passed first)."""
  ok = isinstance(key, jax.Array) and (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or (
      key.dtype == jnp.uint32 and key.shape == (2,)))
  check(ok, f"key={key!r} is not a jax PRNG key; the spectral functions take (op, key, ...), "
        "e.g. top_k_eigenvalues(op, jax.random.key(0), k, num_iters).")


def lanczos(op, key: jax.Array, num_iters: int, v0: jax.Array | None = None, *,
            return_basis: bool = False, breakdown_tol: float | None = None) -> LanczosResult:
  """Runs `num_iters` Lanczos steps with full reorthogonalisation (one jitted fori_loop).

  Args:
    op: operator (see module docstring).
    key: PRNG key (start vector unless `v0` is given; restart vectors).
    num_iters: m <= op.dim. With m == dim the Ritz values are all eigenvalues of op.
    v0: optional [dim] start vector.
    return_basis: also return the [m, dim] Lanczos basis.
    breakdown_tol: relative beta below which the iteration restarts; default
      10 * sqrt(dim) * eps(dtype).

  Returns:
    LanczosResult(alphas [m], betas [m - 1], basis [m, dim] or None).
  """
  check_key(key)
  _check_iters(op, num_iters)
  tol = default_breakdown_tol(op.dim, op.dtype) if breakdown_tol is None else float(breakdown_tol)
  alphas, betas, basis = _lanczos_jit(op, key, v0, num_iters, tol)
  return LanczosResult(alphas, betas[:-1], basis if return_basis else None, betas[-1])


@functools.partial(jax.jit, static_argnames=("k", "which"))
def _top_k_from_tridiagonal(alphas, betas, basis, k, which):
  ritz, vecs = tridiagonal_eigh(alphas, betas)
  score = ritz if which == "largest" else jnp.abs(ritz)
  top = jnp.argsort(-score)[:k]
  return ritz[top], basis.T @ vecs[:, top]


def top_k_eigenvalues(op, key: jax.Array, k: int, num_iters: int, return_vectors: bool = False,
                      *, which: str = "largest", breakdown_tol: float | None = None):
  """Top-k Ritz values of `op` from one Lanczos run.

  Args:
    op: operator (see module docstring).
    key: PRNG key.
    k: number of eigenvalues, <= num_iters.
    num_iters: Lanczos steps m. Clustered Hessian spectra need m ~ 4k: on the benchmark
      model m = 50 left ranks 13-20 of the top 20 up to 18% low, m = 80 converged them;
      check with `ritz_residuals(lanczos(...))`.
    return_vectors: also return Ritz vectors.
    which: "largest" (algebraic, e.g. lambda_max of a Hessian) or "magnitude".
    breakdown_tol: see `lanczos`.

  Returns:
    eigenvalues [k] in decreasing `which` order, and with return_vectors also
    eigenvectors [dim, k] (orthonormal columns).
  """
  check(1 <= k <= num_iters, f"k={k} must be in [1, num_iters={num_iters}].")
  check_choice("which", which, ("largest", "magnitude"))
  res = lanczos(op, key, num_iters, return_basis=True, breakdown_tol=breakdown_tol)
  vals, vecs = _top_k_from_tridiagonal(res.alphas, res.betas, res.basis, k, which)
  return (vals, vecs) if return_vectors else vals


def _probe(key, dim, dtype, kind):
  if kind == "rademacher":
    return jax.random.rademacher(key, (dim,), dtype)
  return jax.random.normal(key, (dim,), dtype)


def probe_vectors(key: jax.Array, num_probes: int, dim: int, dtype=jnp.float32,
                  kind: str = "rademacher") -> jax.Array:
  """The [num_probes, dim] probes that `hutchinson_trace` and `slq_density` draw from `key`."""
  check_choice("probe", kind, PROBE_KINDS)
  keys = jax.random.split(key, num_probes)
  return jax.vmap(lambda k: _probe(k, dim, dtype, kind))(keys)


@functools.partial(jax.jit, static_argnames=("num_probes", "kind"))
def _hutchinson_jit(op, key, num_probes, kind):
  matvec = op.linear_map()

  def one(k):
    v = _probe(k, op.dim, op.dtype, kind)
    return jnp.vdot(v, matvec(v))

  # lax.map, not vmap: memory of one HVP, not num_probes of them.
  return jnp.mean(jax.lax.map(one, jax.random.split(key, num_probes)))


def hutchinson_trace(op, key: jax.Array, num_probes: int, probe: str = "rademacher") -> jax.Array:
  """Hutchinson estimate of tr(op): mean over probes v of v^T A v (E[v v^T] = I).

  Rademacher probes have the smaller variance, 2 * sum_{i != j} A_ij^2 / num_probes.

  Returns:
    scalar estimate of the trace.
  """
  check_key(key)
  check_x64(op.dtype)
  check(num_probes >= 1, f"num_probes={num_probes} must be >= 1.")
  check_choice("probe", probe, PROBE_KINDS)
  return _hutchinson_jit(op, key, num_probes, probe)


@functools.partial(jax.jit, static_argnames=("num_probes", "num_iters", "kind", "tol"))
def _slq_jit(op, key, num_probes, num_iters, kind, tol):
  matvec = op.linear_map()
  key_probe, key_restart = jax.random.split(key)

  def one(args):
    k_probe, k_restart = args
    v = _probe(k_probe, op.dim, op.dtype, kind)
    alphas, betas, _ = lanczos_iterations(matvec, v, num_iters, k_restart, tol)
    ritz, vecs = tridiagonal_eigh(alphas, betas[:-1])
    return ritz, vecs[0] ** 2  # Gauss quadrature: nodes and squared first components.

  keys = (jax.random.split(key_probe, num_probes), jax.random.split(key_restart, num_probes))
  return jax.lax.map(one, keys)


@jax.jit
def gaussian_density(nodes: jax.Array, weights: jax.Array, grid: jax.Array,
                     sigma: jax.Array) -> jax.Array:
  """Mean over probes of sum_j w_j N(grid; node_j, sigma^2).

  Args:
    nodes, weights: [P, m].
    grid: [G].
    sigma: scalar smoothing width.

  Returns:
    [G] density.
  """
  z = (grid[:, None, None] - nodes[None]) / sigma
  kernel = jnp.exp(-0.5 * z ** 2) / (sigma * jnp.sqrt(2.0 * jnp.pi))
  return jnp.einsum("gpm,pm->g", kernel, weights) / nodes.shape[0]


def slq_density(op, key: jax.Array, num_probes: int = 8, num_iters: int = 64, *,
                num_grid: int = 1024, sigma: float | None = None, sigma_frac: float = 0.01,
                probe: str = "rademacher", breakdown_tol: float | None = None) -> SpectralDensity:
  """Stochastic Lanczos quadrature estimate of the eigenvalue density (Ghorbani et al. 2019).

  Each probe v gives a Gauss quadrature of the spectral measure sum_i (u_i.v)^2/|v|^2
  delta(lambda_i): nodes = Ritz values, weights = squared first components of T's
  eigenvectors. The nodes are smoothed with a Gaussian of width sigma and averaged.

  Args:
    op: operator (see module docstring).
    key: PRNG key; probe i is `probe_vectors(key_probe, ...)[i]` with
      key_probe = jax.random.split(key)[0].
    num_probes: P, number of random probes.
    num_iters: m <= dim Lanczos steps per probe.
    num_grid: G, grid points.
    sigma: smoothing width; default sigma_frac * (max node - min node).
    sigma_frac: relative width used when sigma is None.
    probe: "rademacher" or "gaussian".
    breakdown_tol: see `lanczos`.

  Returns:
    SpectralDensity; the grid spans [min node - 6 sigma, max node + 6 sigma], so the
    density integrates to 1 up to trapezoid error.
  """
  check_key(key)
  _check_iters(op, num_iters)
  check(num_probes >= 1, f"num_probes={num_probes} must be >= 1.")
  check_choice("probe", probe, PROBE_KINDS)
  tol = default_breakdown_tol(op.dim, op.dtype) if breakdown_tol is None else float(breakdown_tol)
  nodes, weights = _slq_jit(op, key, num_probes, num_iters, probe, tol)
  lo, hi = float(jnp.min(nodes)), float(jnp.max(nodes))
  if sigma is None:
    # Floor keeps a single-eigenvalue spectrum (hi == lo) well defined.
    sigma = sigma_frac * max(hi - lo, 1e-3 * max(abs(hi), abs(lo), 1.0))
  check(sigma > 0, f"sigma={sigma} must be > 0.")
  grid = jnp.linspace(lo - 6 * sigma, hi + 6 * sigma, num_grid, dtype=nodes.dtype)
  density = gaussian_density(nodes, weights, grid, jnp.asarray(sigma, nodes.dtype))
  return SpectralDensity(grid, density, nodes, weights, float(sigma))

