"""Tests for the classical in-context baselines (training-free)."""

import functools

import jax
import numpy as np
import pytest

from looped_jax import tasks
from looped_jax.errors import ConfigError
from looped_jax.tasks import baselines as bl

D = 20


@functools.lru_cache(maxsize=None)
def _lr_batches(name, n_batches, batch_size=4000):
  """float64 (inputs, ys) of n_batches * batch_size isotropic prompts, curriculum off."""
  task = tasks.get({"name": name, "curriculum": False})
  sample = jax.jit(task.sample, static_argnums=1)
  out = [jax.device_get(sample(jax.random.key(100 + i), batch_size)) for i in range(n_batches)]
  return (np.concatenate([o["inputs"] for o in out]).astype(np.float64),
          np.concatenate([o["ys"] for o in out]).astype(np.float64))


def _curve(predictor, inputs, ys, normaliser):
  """Mean normalised squared error per k, [n]."""
  pred = predictor(inputs)[:, 0::2, 0]
  return np.mean((pred - ys)**2, axis=0) / normaliser


def _prompt(xs, ys):
  b, n, d = xs.shape
  inputs = np.zeros((b, 2 * n, d))
  inputs[:, 0::2] = xs
  inputs[:, 1::2, 0] = ys
  return inputs


def _small_cases(seed=0, b=6, n=14, d=5):
  """Prompts that stress rank handling: generic, noisy, zero coordinates (curriculum),
  a low-rank subspace and repeated points."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((b, n, d))
  w = rng.standard_normal((b, d))
  lin = lambda x: np.einsum("bnd,bd->bn", x, w)
  zero_cols = x.copy()
  zero_cols[..., 3:] = 0
  sub = rng.standard_normal((b, n, 2)) @ rng.standard_normal((2, d))
  dups = x.copy()
  dups[:, 6], dups[:, 9] = dups[:, 2], dups[:, 2]
  noise = lambda: 0.3 * rng.standard_normal((b, n))
  return {"generic": (x, lin(x)), "noisy": (x, lin(x) + noise()),
          "zero_cols": (zero_cols, lin(zero_cols) + noise()), "subspace": (sub, lin(sub)),
          "duplicates": (dups, lin(dups) + noise())}


# --- closed forms on isotropic linear regression ---------------------------------------------


@pytest.mark.slow
def test_least_squares_matches_closed_form():
  # One query per prompt puts the standard error at small k near 0.03 for 2000 prompts
  # (Var of (x . r)^2 ~ 2(d - k)^2 / d^2), so 0.03 at every k needs ~16x more: 32k prompts.
  inputs, ys = _lr_batches("linear_regression", 8)
  curve = _curve(bl.least_squares(), inputs, ys, D)
  expected = np.maximum(D - np.arange(41), 0) / D
  np.testing.assert_array_less(np.abs(curve - expected), 0.03)
  assert np.all(curve[D + 1:] < 1e-8)  # exact interpolation past d (float32 prompts)
  first = _curve(bl.least_squares(), inputs[:2000], ys[:2000], D)  # the 2000-prompt curve
  assert first[10] == pytest.approx(0.5, abs=0.05)


@pytest.mark.slow
def test_averaging_matches_closed_form():
  # (d + 1) / k has heavy-tailed per-prompt errors: 32k prompts put every k within 5 %.
  inputs, ys = _lr_batches("linear_regression", 8)
  curve = _curve(bl.averaging(), inputs, ys, D)
  k = np.arange(1, 41)
  np.testing.assert_array_less(np.abs(curve[1:] / ((D + 1) / k) - 1), 0.05)
  assert curve[0] == pytest.approx(1.0, abs=0.03)  # position 0 predicts 0


def test_zero_predictor_scores_one():
  inputs, ys = _lr_batches("linear_regression", 8)
  curve = _curve(bl.zero(), inputs, ys, D)
  np.testing.assert_allclose(curve, 1.0, atol=0.03)


@pytest.mark.slow
def test_sparse_regression_normalised_by_sparsity():
  # Normalised by s = 3, zero scores 1 and min-norm least squares (d - k) / d, as for dense LR.
  inputs, ys = _lr_batches("sparse_linear_regression", 1)
  norm = tasks.get({"name": "sparse_linear_regression"}).normaliser
  for predictor, expected in ((bl.zero(), np.ones(41)),
                              (bl.least_squares(), np.maximum(D - np.arange(41), 0) / D)):
    per_prompt = (predictor(inputs)[:, 0::2, 0] - ys)**2 / norm
    err, se = per_prompt.mean(0), per_prompt.std(0) / np.sqrt(len(ys))
    np.testing.assert_array_less(np.abs(err - expected), 4 * se + 1e-9)  # within 4 s.e.
    np.testing.assert_allclose(err[[0, 10]], expected[[0, 10]], atol=0.08)


# --- each baseline against an independent reference -------------------------------------------


def test_least_squares_equals_pinv_under_rank_deficiency():
  for name, (x, y) in _small_cases().items():
    pred = bl.least_squares()(_prompt(x, y))[:, 0::2, 0]
    for k in range(1, x.shape[1]):
      ref = np.einsum("bd,bd->b", x[:, k], (np.linalg.pinv(x[:, :k]) @ y[:, :k, None])[..., 0])
      np.testing.assert_allclose(pred[:, k], ref, atol=1e-8, err_msg=f"{name} k={k}")


def test_ridge_equals_direct_solve():
  alpha = 0.3
  for name, (x, y) in _small_cases(1).items():
    pred = bl.ridge(alpha)(_prompt(x, y))[:, 0::2, 0]
    d = x.shape[-1]
    for k in range(1, x.shape[1]):
      a = np.einsum("bki,bkj->bij", x[:, :k], x[:, :k]) + alpha * np.eye(d)
      w = np.linalg.solve(a, np.einsum("bki,bk->bi", x[:, :k], y[:, :k])[..., None])[..., 0]
      np.testing.assert_allclose(pred[:, k], np.einsum("bd,bd->b", x[:, k], w), atol=1e-9,
                                 err_msg=f"{name} k={k}")


def test_knn_equals_brute_force():
  rng = np.random.default_rng(2)
  x, y = rng.standard_normal((5, 12, 3)), rng.standard_normal((5, 12))
  pred = bl.knn(3)(_prompt(x, y))[:, 0::2, 0]
  for b in range(5):
    assert pred[b, 0] == 0
    for k in range(1, 12):
      dist = np.linalg.norm(x[b, :k] - x[b, k], axis=1)
      np.testing.assert_allclose(pred[b, k], y[b, np.argsort(dist)[:3]].mean(), atol=1e-12)


def test_averaging_equals_formula():
  rng = np.random.default_rng(3)
  x, y = rng.standard_normal((4, 9, 3)), rng.standard_normal((4, 9))
  pred = bl.averaging()(_prompt(x, y))[:, 0::2, 0]
  for k in range(1, 9):
    w = np.einsum("bk,bkd->bd", y[:, :k], x[:, :k]) / k
    np.testing.assert_allclose(pred[:, k], np.einsum("bd,bd->b", x[:, k], w), atol=1e-12)


def _cart_reference(x, y, q, depth, max_depth):
  """Plain recursive CART (squared error, midpoints, lowest feature then threshold on ties)."""
  if len(y) < 2 or (max_depth is not None and depth >= max_depth) or np.ptp(y) == 0:
    return y.mean()
  best = (np.inf, None, None)
  for j in range(x.shape[1]):
    vals = np.unique(x[:, j])
    for lo, hi in zip(vals[:-1], vals[1:]):
      thr = (lo + hi) / 2
      left = x[:, j] <= thr
      sse = np.sum((y[left] - y[left].mean())**2) + np.sum((y[~left] - y[~left].mean())**2)
      if sse < best[0] - 1e-10:
        best = (sse, j, thr)
  if best[1] is None:
    return y.mean()
  _, j, thr = best
  keep = (x[:, j] <= thr) == (q[j] <= thr)
  return _cart_reference(x[keep], y[keep], q, depth + 1, max_depth)


@pytest.mark.parametrize("max_depth", [1, 4, None])
def test_decision_tree_equals_recursive_cart(max_depth):
  rng = np.random.default_rng(3)
  x = rng.standard_normal((6, 20, 4))
  y = np.where(x[..., 0] > 0, np.where(x[..., 2] > 0, 1.5, -0.3), 0.7) + 0.1 * x[..., 1]
  y[:, 5] = y[:, 3]  # repeated labels: equal-score splits
  pred = bl.decision_tree(max_depth)(_prompt(x, y))[:, 0::2, 0]
  for i in range(6):
    for k in range(1, 20):
      assert pred[i, k] == pytest.approx(_cart_reference(x[i, :k], y[i, :k], x[i, k], 0,
                                                         max_depth), abs=1e-9), (i, k)


# --- Lasso --------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", bl.LASSO_ALPHAS)
def test_lasso_solutions_are_optimal_and_match_homotopy(alpha):
  x, y = _small_cases(4, b=10, n=16, d=8)["noisy"]
  gram, xty = bl._prefix_moments(x, y)
  w = bl.solve_lasso(gram, xty, alpha)
  assert bl.lasso_kkt(gram, xty, w, alpha).all()
  ref = np.stack([bl.lasso_homotopy(g, c, alpha) for g, c in zip(gram, xty)])
  np.testing.assert_allclose(w, ref, atol=1e-9)
  # The KKT check itself rejects a perturbed solution.
  assert not bl.lasso_kkt(gram, xty, w + 1e-3, alpha).any()


def test_lasso_limits_and_sparse_recovery():
  x, y = _small_cases(5, b=8, n=30, d=6)["noisy"]
  inputs = _prompt(x, y)
  np.testing.assert_array_equal(bl.lasso(1e6)(inputs), 0.0)  # alpha above max|X^T y| / k
  # alpha -> 0 with k > d is ordinary least squares.
  np.testing.assert_allclose(bl.lasso(1e-9)(inputs)[:, 14::2], bl.least_squares()(inputs)[:, 14::2],
                             atol=1e-6)
  # Sparse LR (s = 3, d = 20): with 15 examples Lasso recovers w, least squares cannot.
  inputs, ys = _lr_batches("sparse_linear_regression", 1)
  inputs, ys = inputs[:24], ys[:24]
  lasso = _curve(bl.lasso(0.01), inputs, ys, 3.0)
  ls = _curve(bl.least_squares(), inputs, ys, 3.0)
  assert lasso[15] < 0.02 and ls[15] > 0.1


# --- gradient-descent network -------------------------------------------------------------------


GD = {"hidden": 32, "lr": 0.01, "steps": 300}  # one configuration: one compile for all tests


def _contract_prompt(seed=6):
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, (4, 12, 2))
  return x, 2.0 * x[..., 0] - x[..., 1]


@pytest.mark.slow
def test_relu_net_gd_fits_a_line():
  x, y = _contract_prompt()
  pred = bl.relu_net_gd(**GD)(_prompt(x, y))[:, 0::2, 0]
  assert np.abs(pred[:, 8:] - y[:, 8:]).max() < 0.6  # a query may extrapolate a little
  assert np.abs(pred[:, 8:] - y[:, 8:]).mean() < 0.15  # |y| is ~1: zero would score ~1
  # Deterministic in the seed, different across seeds.
  np.testing.assert_array_equal(pred, bl.relu_net_gd(**GD)(_prompt(x, y))[:, 0::2, 0])
  other = bl.relu_net_gd(**GD, seed=1)(_prompt(x, y))[:, 0::2, 0]
  assert not np.allclose(pred[:, 1:], other[:, 1:])


# --- the shared contract ------------------------------------------------------------------------

SMALL = {"zero": {}, "least_squares": {}, "ridge": {}, "lasso": {}, "knn": {}, "averaging": {},
         "decision_tree": {"max_depth": None}, "relu_net_gd": GD}


def test_registry_covers_every_baseline():
  assert set(bl.names()) == set(SMALL)
  with pytest.raises(ConfigError, match="did you mean"):
    bl.get("least_square")
  rel = bl.relevant_baselines("sparse_linear_regression")
  assert {"least_squares", "averaging", "3nn", "zero", "lasso_alpha=0.01"} <= set(rel)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_baselines_are_causal_and_shaped_like_a_model(name):
  rng = np.random.default_rng(7)
  x, y = _contract_prompt()
  predictor = bl.get(name, **SMALL[name])
  out = predictor(_prompt(x, y))
  assert out.shape == (4, 24, 1) and np.isfinite(out).all()
  assert not out[:, 1::2].any() and not out[:, 0].any()  # odd positions and position 0 hold 0
  for k in (1, 4, 9):
    x2, y2 = x.copy(), y.copy()
    x2[:, k + 1:] = rng.standard_normal(x2[:, k + 1:].shape)  # later points
    y2[:, k:] = rng.standard_normal(y2[:, k:].shape)  # the query's own label and later ones
    out2 = predictor(_prompt(x2, y2))
    np.testing.assert_allclose(out2[:, 2 * k], out[:, 2 * k], atol=1e-12, err_msg=f"k={k}")
    assert not np.allclose(out2[:, 2 * (k + 1):], out[:, 2 * (k + 1):]) or name == "zero"


def test_speed_on_2000_prompts():
  import time
  inputs, _ = _lr_batches("linear_regression", 8)
  inputs = inputs[:2000]
  for name in ("least_squares", "averaging", "knn", "ridge"):
    start = time.process_time()
    bl.get(name)(inputs)
    assert time.process_time() - start < 15, name  # seconds, even on a shared 2-core machine
