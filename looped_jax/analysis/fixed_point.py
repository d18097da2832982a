"""Fixed-point diagnostics of a loop map: reachability, input-dependence, geometry.

Labovich's three stability axes (docs/papers.md, "Labovich"), measured on any loop map
given as a pure function

  step(h, x) -> h_next

on ONE example: h is that example's state (any shape S, e.g. [n, D]) and x its input or
injection (any shape X). Nothing here knows about model classes.

Every public function takes a batch (leading axis B on h and x) and `jax.vmap`s the
per-example computation; norms are taken over the whole flattened per-example state. All
iterations are `lax.fori_loop`/`lax.scan`, never Python-unrolled. Functions are jitted; a
plain-function `step` is static (pass the same object to reuse a compilation), while a
`jax.tree_util.Partial(fn, *params)` is traced, so new parameters do not recompile (see
`jit_callables`).

Notation: h* = the state after `num_loops` loops from h0 (or a given h_star),
J_h = dG/dh and J_x = dG/dx at (h*, x). The implicit derivative of the fixed point is
dh*/dx = (I - J_h)^{-1} J_x, which exists and is reached by Neumann iteration when
rho(J_h) < 1; with rho >= 1 the iterative estimates below blow up (inf/nan), which is itself
the diagnosis.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from looped_jax import errors
from looped_jax.analysis import lanczos
from looped_jax.analysis.jit_callables import jit_callables

Array = jax.Array
Step = Callable[[Array, Array], Array]

SIGMA_METHODS = ("dense", "lanczos")


def _norm(a: Array) -> Array:
  """Euclidean norm of a whole array (one example's flattened state)."""
  return jnp.sqrt(jnp.sum(jnp.square(a)))


def relative_residual(h: Array, h_next: Array) -> Array:
  """||h_next - h|| / ||h|| for ONE example: states [*S] each -> scalar.

  A zero state that stays zero gives 0 (a fixed point); a zero state that moves gives inf.
  """
  diff, size = _norm(h_next - h), _norm(h)
  safe = jnp.where(size > 0, size, 1.0)
  return jnp.where(size > 0, diff / safe, jnp.where(diff > 0, jnp.inf, 0.0))


def _fmix32(h: Array) -> Array:
  """murmur3's 32-bit finaliser: a cheap bijective mix of uint32 words."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def _start_vectors(key: Array, shape: tuple[int, ...], dtype) -> Array:
  """Uniform(-1, 1) start vectors from a hash of (key, index).

  Power iteration and Lanczos need only a start with a nonzero component along the wanted
  eigenvectors, not statistical quality. Hashing avoids compiling threefry inside every
  solver, which dominated their CPU compile time. Accepts typed and raw uint32 keys; jitted
  on its own, so it compiles once per shape.
  """
  words = jax.random.key_data(key).reshape(-1).astype(jnp.uint32)
  seed = jnp.uint32(0x9E3779B9)
  for i in range(words.shape[0]):  # 2 or 4 words: static
    seed = _fmix32(seed ^ words[i])
  idx = lax.iota(jnp.uint32, math.prod(shape))
  bits = _fmix32(_fmix32(idx ^ seed) + seed)
  unit = (bits >> 8).astype(jnp.float32) * (2.0 / (1 << 24)) - 1.0
  return unit.reshape(shape).astype(dtype)


def _run_loop(step: Step, h0: Array, x: Array, num_loops: int) -> Array:
  """h after `num_loops` applications of step for ONE example."""
  return lax.fori_loop(0, num_loops, lambda _, h: step(h, x), h0)


# ----------------------------------------------------------------------------- reachability


@jit_callables(("step",), ("num_loops",))
def residual_curve(step: Step, h0: Array, x: Array, num_loops: int) -> tuple[Array, Array]:
  """Relative residuals along the loop.

  Args:
    step: the loop map of one example.
    h0: [B, *S] initial states.
    x: [B, *X] inputs.
    num_loops: T, the number of loops to run.

  Returns:
    residuals: [B, T], r_t = ||h_{t+1} - h_t|| / ||h_t|| for t = 0..T-1.
    h_final: [B, *S], h_T.
  """

  def one(h0, x):
    def body(h, _):
      h_next = step(h, x)
      return h_next, relative_residual(h, h_next)

    h_final, res = lax.scan(body, h0, None, length=num_loops)
    return res, h_final

  return jax.vmap(one)(h0, x)


def loops_to_converge(residuals: Array, tol: float = 1e-3) -> Array:
  """First t with r_t < tol, or -1 if none.

  r_t compares h_t with h_{t+1}, so t is the number of loops after which the state already
  moves by less than tol (relative) in the next loop.

  Args:
    residuals: [..., T] from `residual_curve`.
    tol: relative-residual threshold.

  Returns:
    int32 [...].
  """
  below = residuals < tol
  first = jnp.argmax(below, axis=-1).astype(jnp.int32)
  return jnp.where(jnp.any(below, axis=-1), first, -1)


def converged_fraction(residuals: Array, tol: float = 1e-3) -> Array:
  """Fraction of examples whose residual drops below tol within the curve. residuals: [B, T]."""
  return jnp.mean((loops_to_converge(residuals, tol) >= 0).astype(jnp.float32))


def _spectral_radius_one(step, h_star, x, v, num_iters, burn_in):
  _, jvp = jax.linearize(lambda h: step(h, x), h_star)
  v = v / _norm(v)

  def body(i, carry):
    v, log_sum = carry
    w = jvp(v)
    size = _norm(w)
    # rho = lim ||J^m v||^{1/m} = exp(mean log ||J v_k||) over renormalised v_k; dropping the
    # first `burn_in` factors removes the transient of the starting vector's mixture.
    log_sum = log_sum + jnp.where(i >= burn_in, jnp.log(size), 0.0)
    v = jnp.where(size > 0, w / jnp.where(size > 0, size, 1.0), v)
    return v, log_sum

  _, log_sum = lax.fori_loop(0, num_iters, body, (v, jnp.zeros((), h_star.dtype)))
  return jnp.exp(log_sum / (num_iters - burn_in))


@jit_callables(("step",), ("num_iters", "burn_in"))
def _spectral_radius(step, h_star, x, v0, num_iters, burn_in):
  one = functools.partial(_spectral_radius_one, step, num_iters=num_iters, burn_in=burn_in)
  return jax.vmap(one)(h_star, x, v0)


def spectral_radius(step: Step, h_star: Array, x: Array, key: Array, num_iters: int = 300,
                    burn_in: int | None = None) -> Array:
  """rho(J_h) at h* by JVP power iteration, per example.

  J_h is not symmetric, so the estimate is ||J^m v||^{1/m} computed as the mean log-norm of
  renormalised iterates (after `burn_in` of them, default num_iters // 2). It converges for
  complex dominant pairs too, at rate ~ log(const) / (num_iters - burn_in).

  Args:
    step: the loop map of one example.
    h_star: [B, *S] states at which to linearise.
    x: [B, *X] inputs.
    key: PRNG key for the starting vectors (hashed, see `_start_vectors`).
    num_iters: JVPs per example.
    burn_in: leading iterations left out of the average.

  Returns:
    [B] estimates of rho(J_h).
  """
  burn_in = num_iters // 2 if burn_in is None else burn_in
  errors.check(0 <= burn_in < num_iters,
               f"burn_in={burn_in} must be in [0, num_iters={num_iters}).")
  v0 = _start_vectors(key, tuple(h_star.shape), h_star.dtype)
  return _spectral_radius(step, h_star, x, v0, num_iters, burn_in)


def _dense_jacobians(step, h_star, x):
  """Dense J_h [N, N] and J_x [N, M] of ONE example on flattened state / input."""
  n, m = h_star.size, x.size

  def flat(h_flat, x_flat):
    return step(h_flat.reshape(h_star.shape), x_flat.reshape(x.shape)).reshape(n)

  return jax.jacfwd(flat, argnums=(0, 1))(h_star.reshape(n), x.reshape(m))


@jit_callables(("step",))
def dense_jacobians(step: Step, h_star: Array, x: Array) -> tuple[Array, Array]:
  """Dense Jacobians for small states (reference computations).

  Returns:
    J_h: [B, N, N] and J_x: [B, N, M], N = prod(S), M = prod(X), on the flattened state/input.
  """
  return jax.vmap(functools.partial(_dense_jacobians, step))(h_star, x)


@jit_callables(("step",))
def dense_jacobian_eigs(step: Step, h_star: Array, x: Array) -> Array:
  """Eigenvalues of the dense J_h (via `jax.jacfwd`) for tiny states. Returns complex [B, N]."""
  j_h, _ = dense_jacobians(step, h_star, x)
  return jnp.linalg.eigvals(j_h)


# -------------------------------------------------------------------------- input-dependence


def _implicit_ops(step, h_star, x, solve_iters):
  """(S u, S^T w) for ONE example, S = dh*/dx = (I - J_h)^{-1} J_x, by Neumann iteration."""
  _, lin = jax.linearize(step, h_star, x)
  _, vjp = jax.vjp(step, h_star, x)
  zero_h, zero_x = jnp.zeros_like(h_star), jnp.zeros_like(x)

  def s_u(u):
    b = lin(zero_h, u)  # J_x u
    return lax.fori_loop(0, solve_iters, lambda _, v: lin(v, zero_x) + b, b)

  def s_t_w(w):
    z = lax.fori_loop(0, solve_iters, lambda _, z: vjp(z)[0] + w, w)  # (I - J_h^T)^{-1} w
    return vjp(z)[1]  # J_x^T z

  return s_u, s_t_w


@jit_callables(("step",), ("num_iters",))
def input_sensitivity(step: Step, h_star: Array, x: Array, u: Array, num_iters: int = 200) -> Array:
  """dh*/dx . u = (I - J_h)^{-1} J_x u by iterating v <- J_h v + J_x u (needs rho(J_h) < 1).

  Args:
    step: the loop map of one example.
    h_star: [B, *S] fixed points.
    x: [B, *X] inputs.
    u: [B, *X] input directions.
    num_iters: Neumann iterations; the error shrinks like rho^num_iters.

  Returns:
    [B, *S] directional derivatives of the fixed point.
  """

  def one(h_star, x, u):
    s_u, _ = _implicit_ops(step, h_star, x, num_iters)
    return s_u(u)

  return jax.vmap(one)(h_star, x, u)


@jit_callables(("step",), ("num_loops",))
def finite_difference_sensitivity(step: Step, h0: Array, x: Array, u: Array, eps: float,
                                  num_loops: int) -> Array:
  """||h*(x + eps u) - h*(x)|| / eps, h* = state after num_loops loops from the same h0.

  h0 is held fixed: at an attracting fixed point h* does not depend on h0 locally, so this
  cross-checks ||input_sensitivity(...)|| (take ||u|| = 1 for a per-unit-input reading).

  Args:
    h0: [B, *S]; x, u: [B, *X]; eps: step size (float32: ~1e-3 balances rounding/truncation).

  Returns:
    [B].
  """

  def one(h0, x, u):
    base = _run_loop(step, h0, x, num_loops)
    moved = _run_loop(step, h0, x + eps * u, num_loops)
    return _norm(moved - base) / eps

  return jax.vmap(one)(h0, x, u)


# ---------------------------------------------------------------------------------- geometry


def _sigma_min_one(step, h_star, x, key, method, num_iters):
  if method == "dense":
    j_h, _ = _dense_jacobians(step, h_star, x)
    a = jnp.eye(j_h.shape[0], dtype=j_h.dtype) - j_h
    return jnp.linalg.svd(a, compute_uv=False)[-1]

  _, jvp = jax.linearize(lambda h: step(h, x), h_star)
  _, vjp = jax.vjp(lambda h: step(h, x), h_star)

  def normal_op(v_flat):  # (I - J)^T (I - J) v
    v = v_flat.reshape(h_star.shape)
    w = v - jvp(v)
    return (w - vjp(w)[0]).reshape(-1)

  n = h_star.size
  key_v0, key_restart = jax.random.split(key)
  v0 = jax.random.normal(key_v0, (n,), h_star.dtype)
  alphas, betas, _ = lanczos.lanczos_iterations(normal_op, v0, num_iters, key_restart,
                                                lanczos.default_breakdown_tol(n, h_star.dtype))
  ritz = jnp.linalg.eigvalsh(lanczos.tridiagonal(alphas, betas[:-1]))
  return jnp.sqrt(jnp.maximum(ritz[0], 0.0))


@jit_callables(("step",), ("method", "num_iters"))
def _sigma_min(step, h_star, x, keys, method, num_iters):
  one = functools.partial(_sigma_min_one, step, method=method, num_iters=num_iters)
  return jax.vmap(one)(h_star, x, keys)


def sigma_min_i_minus_j(step: Step, h_star: Array, x: Array, key: Array | None = None,
                        method: str = "dense", num_iters: int | None = None) -> Array:
  """Smallest singular value of (I - J_h) at h*, per example.

  method="dense": SVD of the `jax.jacfwd` Jacobian (N = prod(S) small).
  method="lanczos": Lanczos on (I - J_h)^T (I - J_h) with JVP/VJP only; the smallest Ritz
  value is an upper bound on sigma_min^2 that is exact at num_iters = N (default
  min(N, 64)).

  Args:
    h_star: [B, *S]; x: [B, *X]; key: start vectors for Lanczos (default key(0)).

  Returns:
    [B].
  """
  errors.check_choice("method", method, SIGMA_METHODS)
  n = math.prod(h_star.shape[1:])
  num_iters = min(n, 64) if num_iters is None else num_iters
  errors.check(1 <= num_iters <= n, f"num_iters={num_iters} must be in [1, state size {n}].")
  key = jax.random.key(0) if key is None else key
  keys = jax.random.split(key, h_star.shape[0])  # one start and restart stream per example
  return _sigma_min(step, h_star, x, keys, method, num_iters)


@jit_callables(("step",), ("num_iters", "solve_iters"))
def _lipschitz(step, h_star, x, u0, num_iters, solve_iters):

  def one(h_star, x, u):
    s_u, s_t_w = _implicit_ops(step, h_star, x, solve_iters)

    def unit(u):  # S = 0 (no input dependence) must give 0, not 0/0
      size = _norm(u)
      return u / jnp.where(size > 0, size, 1.0)

    u = lax.fori_loop(0, num_iters, lambda _, u: s_t_w(s_u(unit(u))), u)
    return _norm(s_u(unit(u)))

  return jax.vmap(one)(h_star, x, u0)


def lipschitz_constant(step: Step, h_star: Array, x: Array, key: Array, num_iters: int = 30,
                       solve_iters: int = 200) -> Array:
  """Largest singular value of dh*/dx, the local Lipschitz constant of x -> h*.

  Power iteration on S^T S, S = (I - J_h)^{-1} J_x, applied through the implicit map: S u by
  Neumann iteration with JVPs, S^T w by Neumann iteration with VJPs (both need rho < 1).

  Args:
    h_star: [B, *S]; x: [B, *X]; key: start vectors in x-space.
    num_iters: power iterations; solve_iters: Neumann iterations per S or S^T product.

  Returns:
    [B] estimates of ||dh*/dx||_2 (= ||S u|| for the final unit vector u).
  """
  u0 = _start_vectors(key, tuple(x.shape), x.dtype)
  return _lipschitz(step, h_star, x, u0, num_iters, solve_iters)


# ---------------------------------------------------------------------------------- summary


def _summary(values) -> dict[str, float | int | None]:
  """mean/median of the finite values (numpy on host); None where there are none (JSON-safe)."""
  values = np.asarray(values, np.float64).reshape(-1)
  finite = values[np.isfinite(values)]
  out = {"mean": None, "median": None, "num_finite": int(finite.size)}
  if finite.size:
    out["mean"], out["median"] = float(np.mean(finite)), float(np.median(finite))
  return out


def diagnose(step: Step, h0: Array, x: Array, num_loops: int, key: Array, *,
             tol: float = 1e-3, power_iters: int = 300, solve_iters: int = 200,
             fd_eps: float = 1e-3, lipschitz_iters: int = 30, dense_max_dim: int = 256,
             lanczos_iters: int = 64) -> dict[str, Any]:
  """All three stability axes over a batch, as a JSON-serialisable dict.

  h* is the state after num_loops loops from h0. Sensitivities use one random unit input
  direction u per example. sigma_min uses the dense SVD when prod(S) <= dense_max_dim, else
  Lanczos. Each quantity is summarised as {"mean", "median", "num_finite"} over examples
  (non-finite values, e.g. from rho >= 1, are counted out rather than poisoning the mean).

  Args:
    h0: [B, *S]; x: [B, *X]; key: PRNG key.

  Returns:
    dict with num_examples, num_loops, tol, state_size, converged_fraction, loops_to_converge
    (over converged examples), final_residual, spectral_radius, frac_rho_below_1,
    input_sensitivity, fd_sensitivity, sigma_min_i_minus_j, sigma_method, lipschitz.
  """
  k_rho, k_u, k_sig, k_lip = jax.random.split(key, 4)
  residuals, h_star = residual_curve(step, h0, x, num_loops)
  loops = np.asarray(loops_to_converge(residuals, tol))

  rho = np.asarray(spectral_radius(step, h_star, x, k_rho, power_iters))
  u = _start_vectors(k_u, tuple(x.shape), x.dtype)
  u = u / jnp.linalg.norm(u.reshape(u.shape[0], -1), axis=-1).reshape((-1,) + (1,) * (x.ndim - 1))
  v = input_sensitivity(step, h_star, x, u, solve_iters)
  sens = np.asarray(jnp.linalg.norm(v.reshape(v.shape[0], -1), axis=-1))
  fd = finite_difference_sensitivity(step, h0, x, u, fd_eps, num_loops)

  state_size = math.prod(h0.shape[1:])
  method = "dense" if state_size <= dense_max_dim else "lanczos"
  sigma = sigma_min_i_minus_j(step, h_star, x, k_sig, method, min(lanczos_iters, state_size))
  lip = lipschitz_constant(step, h_star, x, k_lip, lipschitz_iters, solve_iters)

  return {
      "num_examples": int(h0.shape[0]),
      "num_loops": int(num_loops),
      "tol": float(tol),
      "state_size": int(state_size),
      "converged_fraction": float(np.mean(loops >= 0)),
      "loops_to_converge": _summary(loops[loops >= 0]),
      "final_residual": _summary(np.asarray(residuals)[:, -1]),
      "spectral_radius": _summary(rho),
      "frac_rho_below_1": float(np.mean(rho < 1)),
      "input_sensitivity": _summary(sens),
      "fd_sensitivity": _summary(fd),
      "sigma_min_i_minus_j": _summary(sigma),
      "sigma_method": method,
      "lipschitz": _summary(lip),
  }
