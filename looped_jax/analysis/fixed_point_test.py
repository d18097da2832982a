"""Tests for fixed_point: every estimate against an independent dense / analytic reference."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from looped_jax import errors
from looped_jax.analysis import fixed_point as fp

B = 4
D = 12
LOOPS = 300


def _scaled(rng, n, rho):
  """Random [n, n] matrix with spectral radius `rho`."""
  w = rng.normal(size=(n, n))
  return w * rho / np.max(np.abs(np.linalg.eigvals(w)))


def tanh_step(w, u, b, h, x):
  """h -> tanh(W h + U x + b); h, x: [D]."""
  return jnp.tanh(w @ h + u @ x + b)


def linear_step(a, h, x):
  """h -> A h + x; h, x: [D]."""
  return a @ h + x


class TanhMap:
  """tanh_step with random W of spectral radius rho; J_h = diag(1 - h'^2) W, J_x = diag(1 - h'^2) U.

  The step is a Partial, so every TanhMap shares one compilation per analysis function.
  """

  def __init__(self, rho, seed, recall=True):
    rng = np.random.default_rng(seed)
    self.w = _scaled(rng, D, rho).astype(np.float32)
    self.u = (rng.normal(size=(D, D)) / math.sqrt(D)).astype(np.float32) * float(recall)
    b = jnp.asarray(rng.normal(size=D) * 0.5, jnp.float32)
    self.x = jnp.asarray(rng.normal(size=(B, D)), jnp.float32)
    self.h0 = jnp.zeros((B, D), jnp.float32)
    self.step = Partial(tanh_step, jnp.asarray(self.w), jnp.asarray(self.u), b)

  def analytic_jacobians(self, h_star):
    """[B, D, D] J_h and J_x from the closed form, in float64."""
    h_star = np.asarray(h_star, np.float64)
    s = 1.0 - h_star**2
    return s[:, :, None] * self.w[None], s[:, :, None] * self.u[None]


class AttentionMap:
  """Tiny attention-like map on [n, d] states: softmax attention plus injection, damped."""

  def __init__(self, seed, n=4, d=6):
    rng = np.random.default_rng(seed)
    wq, wk, wv, wx = (jnp.asarray(rng.normal(size=(d, d)) / math.sqrt(d), jnp.float32)
                      for _ in range(4))
    self.x = jnp.asarray(rng.normal(size=(B, n, d)), jnp.float32)
    self.h0 = jnp.zeros((B, n, d), jnp.float32)

    def step(h, x):
      scores = (h @ wq) @ (h @ wk).T / math.sqrt(d)
      attn = jax.nn.softmax(scores, axis=-1) @ (h @ wv)
      return 0.3 * h + 0.6 * jnp.tanh(attn + x @ wx)

    self.step = step  # a plain closure: exercises the static-callable path


@pytest.fixture(scope="module", params=["tanh_rho0.5", "tanh_rho0.9", "attention"])
def case(request):
  """A map, its converged fixed points h* [B, *S] and dense Jacobians [B, N, N], [B, N, M]."""
  if request.param.startswith("tanh"):
    m = TanhMap(rho=float(request.param[-3:]), seed=0)
  else:
    m = AttentionMap(seed=1)
  residuals, h_star = fp.residual_curve(m.step, m.h0, m.x, LOOPS)
  assert np.all(np.asarray(residuals[:, -1]) < 1e-5), "test map must reach its fixed point"
  j_h, j_x = (np.asarray(a, np.float64) for a in fp.dense_jacobians(m.step, h_star, m.x))
  return m, h_star, j_h, j_x


def test_dense_jacobians_match_closed_form():
  m = TanhMap(rho=0.8, seed=3)
  _, h_star = fp.residual_curve(m.step, m.h0, m.x, LOOPS)
  j_h, j_x = fp.dense_jacobians(m.step, h_star, m.x)
  want_h, want_x = m.analytic_jacobians(h_star)
  np.testing.assert_allclose(j_h, want_h, atol=1e-5)
  np.testing.assert_allclose(j_x, want_x, atol=1e-5)
  eigs = fp.dense_jacobian_eigs(m.step, h_star, m.x)
  np.testing.assert_allclose(np.max(np.abs(eigs), -1),
                             np.max(np.abs(np.linalg.eigvals(want_h)), -1), rtol=1e-4)


def test_spectral_radius_matches_dense_eigs(case):
  m, h_star, j_h, _ = case
  rho = np.asarray(fp.spectral_radius(m.step, h_star, m.x, jax.random.key(0)))
  want = np.max(np.abs(np.linalg.eigvals(j_h)), axis=-1)
  assert np.all(want > 0.1) and np.all(want < 1.0)
  np.testing.assert_allclose(rho, want, rtol=0.03)


def test_spectral_radius_complex_dominant_pair():
  # A = P diag(rotation block of modulus 0.9, smaller reals) P^{-1}: a dominant complex pair,
  # where the ratio of successive norms oscillates and only the log-average converges.
  rng = np.random.default_rng(5)
  core = np.diag(np.linspace(-0.6, 0.6, D))
  c, s = 0.9 * math.cos(1.0), 0.9 * math.sin(1.0)
  core[:2, :2] = [[c, -s], [s, c]]
  p = rng.normal(size=(D, D)) + 3 * np.eye(D)
  a = jnp.asarray(p @ core @ np.linalg.inv(p), jnp.float32)
  h = jnp.zeros((B, D), jnp.float32)
  rho = fp.spectral_radius(Partial(linear_step, a), h, h, jax.random.key(1))
  np.testing.assert_allclose(rho, 0.9, rtol=0.01)


def test_residual_curve_linear_contraction_matches_analytic_count():
  # h_{t+1} = a h_t + (1 - a) x from h_0 = 0: h_t = (1 - a^t) x, so for t >= 1
  # r_t = (1 - a) a^t / (1 - a^t), and r_t < tol iff t > log(tol / (1 - a + tol)) / log(a).
  rates = np.array([0.3, 0.55, 0.72, 0.8], np.float32)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3, 5)), jnp.float32)
  xin = jnp.concatenate([jnp.broadcast_to(rates[:, None, None], (4, 3, 1)), x], axis=-1)
  step = lambda h, x: x[:, :1] * h + (1 - x[:, :1]) * x[:, 1:]
  tol = 1e-3
  residuals, h_final = fp.residual_curve(step, jnp.zeros_like(x), xin, 60)

  a = rates.astype(np.float64)
  t = np.arange(1, 60)
  want_r = (1 - a[:, None]) * a[:, None]**t / (1 - a[:, None]**t)
  assert np.all(np.isinf(residuals[:, 0]))  # h_0 = 0 moves
  np.testing.assert_allclose(residuals[:, 1:], want_r, rtol=2e-3, atol=1e-7)
  cont = np.log(tol / (1 - a + tol)) / np.log(a)
  assert np.all(np.abs(cont - np.round(cont)) > 0.05), "test rates too close to a boundary"
  want_loops = np.floor(cont).astype(int) + 1
  np.testing.assert_array_equal(fp.loops_to_converge(residuals, tol), want_loops)
  np.testing.assert_allclose(h_final, x, atol=1e-5)

  # Only the two fastest rates get there within 15 loops.
  short = residuals[:, :15]
  np.testing.assert_array_equal(fp.loops_to_converge(short, tol) >= 0, want_loops < 15)
  assert float(fp.converged_fraction(short, tol)) == np.mean(want_loops < 15) == 0.5


def test_input_sensitivity_matches_exact_and_finite_differences(case):
  m, h_star, j_h, j_x = case
  u = np.random.default_rng(2).normal(size=m.x.shape)
  u = jnp.asarray(u / np.linalg.norm(u.reshape(B, -1), axis=-1).reshape((B,) + (1,) * (u.ndim - 1)),
                  jnp.float32)
  v = np.asarray(fp.input_sensitivity(m.step, h_star, m.x, u)).reshape(B, -1)
  n = j_h.shape[-1]
  u_flat = np.asarray(u, np.float64).reshape(B, -1)
  exact = np.stack([np.linalg.solve(np.eye(n) - j_h[i], j_x[i] @ u_flat[i]) for i in range(B)])
  np.testing.assert_allclose(v, exact, atol=2e-4 * np.abs(exact).max())
  assert np.all(np.linalg.norm(exact, axis=-1) > 0.05)
  fd = fp.finite_difference_sensitivity(m.step, m.h0, m.x, u, 1e-3, LOOPS)
  np.testing.assert_allclose(fd, np.linalg.norm(exact, axis=-1), rtol=0.02)


def test_sensitivity_vanishes_without_input_dependence():
  key = jax.random.key(0)
  for recall in (False, True):
    m = TanhMap(rho=0.8, seed=4, recall=recall)  # recall=False: U = 0, x never enters
    u = jnp.ones_like(m.x) / math.sqrt(D)
    _, h_star = fp.residual_curve(m.step, m.h0, m.x, LOOPS)
    sens = jnp.linalg.norm(fp.input_sensitivity(m.step, h_star, m.x, u), axis=-1)
    fd = fp.finite_difference_sensitivity(m.step, m.h0, m.x, u, 1e-3, LOOPS)
    lip = fp.lipschitz_constant(m.step, h_star, m.x, key)
    if recall:
      assert np.all(sens > 0.05) and np.all(fd > 0.05) and np.all(lip > 0.05)
    else:
      assert np.all(sens < 1e-6) and np.all(fd < 1e-6) and np.all(lip < 1e-6)


@pytest.mark.slow
def test_sigma_min_matches_svd(case):
  m, h_star, j_h, _ = case
  n = j_h.shape[-1]
  want = np.linalg.svd(np.eye(n) - j_h, compute_uv=False)[:, -1]
  dense = fp.sigma_min_i_minus_j(m.step, h_star, m.x, method="dense")
  np.testing.assert_allclose(dense, want, rtol=1e-4)
  key = jax.random.key(3)
  full = fp.sigma_min_i_minus_j(m.step, h_star, m.x, key, method="lanczos", num_iters=n)
  np.testing.assert_allclose(full, want, rtol=2e-3)
  if isinstance(m, TanhMap):  # (one extra compilation, so only for the shared tanh step)
    # Fewer Lanczos steps: the smallest Ritz value bounds sigma_min^2 from above.
    part = fp.sigma_min_i_minus_j(m.step, h_star, m.x, key, method="lanczos", num_iters=n // 2)
    assert np.all(np.asarray(part) >= want * (1 - 2e-3))


def test_lipschitz_matches_dense_implicit_jacobian(case):
  m, h_star, j_h, j_x = case
  n = j_h.shape[-1]
  want = [np.linalg.norm(np.linalg.solve(np.eye(n) - j_h[i], j_x[i]), 2) for i in range(B)]
  got = fp.lipschitz_constant(m.step, h_star, m.x, jax.random.key(4))
  np.testing.assert_allclose(got, want, rtol=0.02)


@pytest.mark.slow
def test_diagnose_summary_is_json_and_consistent():
  m = TanhMap(rho=0.7, seed=6)
  out = fp.diagnose(m.step, m.h0, m.x, LOOPS, jax.random.key(0))
  text = json.dumps(out, allow_nan=False)
  assert json.loads(text) == out
  assert out["converged_fraction"] == 1.0 and out["frac_rho_below_1"] == 1.0
  assert out["sigma_method"] == "dense" and out["state_size"] == D
  assert out["spectral_radius"]["num_finite"] == B
  s = out["input_sensitivity"]["mean"]
  assert abs(out["fd_sensitivity"]["mean"] - s) < 0.02 * s
  assert out["lipschitz"]["mean"] >= s * (1 - 1e-3)  # ||S u|| <= ||S|| for unit u
  # Past dense_max_dim, sigma_min switches to Lanczos (here with num_iters = N: exact).
  big = fp.diagnose(m.step, m.h0, m.x, LOOPS, jax.random.key(0), dense_max_dim=4)
  assert big["sigma_method"] == "lanczos"
  np.testing.assert_allclose(big["sigma_min_i_minus_j"]["mean"], out["sigma_min_i_minus_j"]["mean"],
                             rtol=2e-3)

  # An expanding map: never converges, rho > 1; the summary stays valid JSON.
  grow = Partial(linear_step, 1.5 * jnp.eye(D))
  bad = fp.diagnose(grow, m.h0, m.x, 50, jax.random.key(0))
  json.dumps(bad, allow_nan=False)
  assert bad["converged_fraction"] == 0.0 and bad["loops_to_converge"]["mean"] is None
  np.testing.assert_allclose(bad["spectral_radius"]["mean"], 1.5, rtol=1e-3)
  assert bad["frac_rho_below_1"] == 0.0


def test_bad_arguments_raise_config_error():
  m = TanhMap(rho=0.5, seed=0)
  with pytest.raises(errors.ConfigError):
    fp.sigma_min_i_minus_j(m.step, m.h0, m.x, method="svd")
  with pytest.raises(errors.ConfigError):
    fp.sigma_min_i_minus_j(m.step, m.h0, m.x, method="lanczos", num_iters=D + 1)
