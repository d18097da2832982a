"""Lanczos, top-k, Hutchinson and SLQ against matrices and a Hessian with known spectra."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from looped_jax.analysis import hessian, lanczos
from looped_jax.errors import ConfigError


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


def ritz_values(res):
  return np.sort(np.asarray(lanczos.tridiagonal_eigh(res.alphas, res.betas)[0]))


def planted(dim, top, seed, dtype=np.float64):
  """Q diag(d) Q^T with the given top eigenvalues and the rest uniform in [-1, 1]."""
  rng = np.random.default_rng(seed)
  q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
  d = np.concatenate([np.asarray(top, float), rng.uniform(-1, 1, dim - len(top))])
  return (q * d) @ q.T, np.sort(d)[::-1]


def test_diagonal_with_repeats_and_zeros_gives_every_eigenvalue(x64):
  diag = np.array([5.0] * 3 + [2.0] * 4 + [0.0] * 6 + [-1.0] * 2 + list(np.linspace(0.1, 1, 9)))
  np.random.default_rng(0).shuffle(diag)
  op = lanczos.MatrixOperator(jnp.diag(jnp.asarray(diag)))
  res = lanczos.lanczos(op, jax.random.key(0), op.dim, return_basis=True)
  # Only 14 distinct eigenvalues: the Krylov space is exhausted and Lanczos must restart.
  assert np.sum(np.asarray(res.betas) == 0) >= 1
  np.testing.assert_allclose(ritz_values(res), np.sort(diag), atol=1e-12)
  basis = np.asarray(res.basis)
  np.testing.assert_allclose(basis @ basis.T, np.eye(op.dim), atol=1e-12)


# The 24 x 24 float64 tests below share one compiled Lanczos (same shapes and num_iters).


def test_zero_matrix_restarts_without_nans(x64):
  op = lanczos.MatrixOperator(jnp.zeros((24, 24)))
  res = lanczos.lanczos(op, jax.random.key(1), 24, return_basis=True)
  np.testing.assert_array_equal(res.alphas, 0.0)
  np.testing.assert_array_equal(res.betas, 0.0)
  np.testing.assert_allclose(res.basis @ res.basis.T, np.eye(24), atol=1e-12)


def test_random_symmetric_full_spectrum(x64):
  rng = np.random.default_rng(2)
  a = rng.standard_normal((24, 24))
  a = (a + a.T) / 2
  res = lanczos.lanczos(lanczos.MatrixOperator(jnp.asarray(a)), jax.random.key(2), 24)
  np.testing.assert_allclose(ritz_values(res), np.linalg.eigvalsh(a), atol=1e-10)


def test_top_k_of_planted_spectrum_with_few_iterations(x64):
  a, d = planted(300, [10.0, 8.0, 6.0, 4.0, 3.0], seed=3)
  op = lanczos.MatrixOperator(jnp.asarray(a))
  vals, vecs = lanczos.top_k_eigenvalues(op, jax.random.key(3), 5, 40, return_vectors=True)
  np.testing.assert_allclose(vals, d[:5], rtol=1e-10)
  vecs = np.asarray(vecs)
  np.testing.assert_allclose(a @ vecs, vecs * np.asarray(vals), atol=1e-8)
  # Residual bounds from the tridiagonal equal the true residuals of every Ritz pair.
  res = lanczos.lanczos(op, jax.random.key(3), 40, return_basis=True)
  ritz, bounds = lanczos.ritz_residuals(res)
  y = np.asarray(res.basis).T @ np.asarray(lanczos.tridiagonal_eigh(res.alphas, res.betas)[1])
  true = np.linalg.norm(a @ y - y * np.asarray(ritz), axis=0)
  np.testing.assert_allclose(bounds, true, atol=1e-9)
  assert np.all(np.asarray(bounds)[-5:] < 1e-8) and np.max(np.asarray(bounds)) > 1e-2


def test_top_k_float32_and_magnitude_order():
  a, d = planted(300, [10.0, 8.0, 6.0, -12.0], seed=4)
  op = lanczos.MatrixOperator(jnp.asarray(a, jnp.float32))
  vals = lanczos.top_k_eigenvalues(op, jax.random.key(4), 3, 40)
  assert vals.dtype == jnp.float32
  np.testing.assert_allclose(vals, [10.0, 8.0, 6.0], rtol=1e-5)
  mags = lanczos.top_k_eigenvalues(op, jax.random.key(4), 2, 40, which="magnitude")
  np.testing.assert_allclose(mags, [-12.0, 10.0], rtol=1e-5)


def test_iterations_are_a_fori_loop_not_unrolled():
  op = lanczos.MatrixOperator(jnp.eye(60))
  v0 = jnp.ones(60)

  def eqns(m):
    jaxpr = jax.make_jaxpr(lambda a: lanczos.lanczos_iterations(
        lanczos.MatrixOperator(a).linear_map(), v0, m, jax.random.key(0), 1e-6))(op.matrix)
    return len(jaxpr.jaxpr.eqns), str(jaxpr)

  (n5, text), (n50, _) = eqns(5), eqns(50)
  # fori_loop with static bounds appears as one `scan` (or `while`) whatever m is.
  assert n5 == n50 and ("scan" in text or "while" in text)


def test_bad_arguments_raise():
  op = lanczos.MatrixOperator(jnp.eye(4))
  with pytest.raises(ConfigError, match="num_iters"):
    lanczos.lanczos(op, jax.random.key(0), 5)
  with pytest.raises(ConfigError, match="k="):
    lanczos.top_k_eigenvalues(op, jax.random.key(0), 4, 3)
  with pytest.raises(ConfigError, match="which"):
    lanczos.top_k_eigenvalues(op, jax.random.key(0), 1, 3, which="smallest")
  with pytest.raises(ConfigError, match="probe"):
    lanczos.hutchinson_trace(op, jax.random.key(0), 3, probe="uniform")


WEIGHT_DECAY = 0.1


def mlp_loss(params, batch):
  """L2-regularised cross-entropy of a 2-layer tanh MLP (mixed-sign Hessian spectrum)."""
  hidden = jnp.tanh(batch["x"] @ params["w1"] + params["b1"])
  logp = jax.nn.log_softmax(hidden @ params["w2"])
  l2 = sum(jnp.sum(p ** 2) for p in jax.tree.leaves(params))
  return -jnp.mean(jnp.sum(logp * batch["y"], axis=-1)) + 0.5 * WEIGHT_DECAY * l2


@pytest.fixture
def mlp64(x64):
  rng = np.random.default_rng(5)
  params = {"w1": rng.standard_normal((4, 6)), "b1": 0.1 * rng.standard_normal(6),
            "w2": rng.standard_normal((6, 3))}
  batch = {"x": rng.standard_normal((64, 4)), "y": np.eye(3)[rng.integers(0, 3, 64)]}
  op = hessian.hessian_operator(mlp_loss, params, batch=batch, dtype=jnp.float64)
  return op, np.asarray(hessian.dense_hessian(op))


@pytest.mark.slow
def test_hutchinson_trace_within_5_percent(mlp64):
  op, h = mlp64
  trace, probes = np.trace(h), 3000
  # Rademacher variance is 2 * sum_{i != j} H_ij^2 / probes: make 5% a > 3-sigma bound.
  std = np.sqrt(2 * (np.sum(h ** 2) - np.sum(np.diag(h) ** 2)) / probes)
  assert 3 * std < 0.05 * abs(trace)
  est = float(lanczos.hutchinson_trace(op, jax.random.key(6), probes))
  assert abs(est - trace) < 0.05 * abs(trace)
  # And it is the mean of v^T H v over exactly the documented probes.
  v = np.asarray(lanczos.probe_vectors(jax.random.key(6), probes, op.dim, jnp.float64))
  np.testing.assert_allclose(est, np.mean(np.sum((v @ h) * v, axis=1)), rtol=1e-10)


@pytest.mark.slow
def test_slq_density(mlp64):
  op, h = mlp64
  evals, evecs = np.linalg.eigh(h)
  assert evals[0] < 0 < evals[-1]
  key, probes, sigma = jax.random.key(7), 500, 0.02
  sd = lanczos.slq_density(op, key, num_probes=probes, num_iters=op.dim, sigma=sigma)
  assert sd.nodes.shape == sd.weights.shape == (probes, op.dim) and sd.sigma == sigma
  np.testing.assert_allclose(np.sum(sd.weights, axis=1), 1.0, atol=1e-12)
  grid, density = np.asarray(sd.grid), np.asarray(sd.density)
  assert np.all(density >= 0)
  np.testing.assert_allclose(np.trapezoid(density, grid), 1.0, atol=1e-6)
  assert evals[0] - 1e-8 <= sd.nodes.min() and sd.nodes.max() <= evals[-1] + 1e-8

  # With a full Krylov space each probe's quadrature is exact: eigenvalues weighted by
  # (u_i . v)^2 / |v|^2, smoothed the same way.
  v = np.asarray(lanczos.probe_vectors(jax.random.split(key)[0], probes, op.dim, jnp.float64))
  weights = (v @ evecs) ** 2 / op.dim
  expected = lanczos.gaussian_density(jnp.asarray(np.tile(evals, (probes, 1))),
                                      jnp.asarray(weights), sd.grid, sigma)
  np.testing.assert_allclose(density, expected, atol=1e-9 * np.max(expected))

  # The density's mean is the Hutchinson estimate over the same probes / dim ...
  mean = np.trapezoid(grid * density, grid)
  hutch = np.mean(np.sum((v @ h) * v, axis=1))
  np.testing.assert_allclose(mean, hutch / op.dim, rtol=1e-6)
  # ... hence close to trace / dim (3-sigma Hutchinson bound below 5%).
  trace = np.trace(h)
  assert 3 * np.sqrt(2 * (np.sum(h ** 2) - np.sum(np.diag(h) ** 2)) / probes) < 0.05 * trace
  assert abs(mean - trace / op.dim) < 0.05 * trace / op.dim
