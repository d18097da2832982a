"""Tests for the out-of-distribution settings of the in-context tasks (training-free)."""

import numpy as np
import pytest

from looped_jax import tasks
from looped_jax.tasks import icl
from looped_jax.tasks.icl_test import B, _sample, reference_ys


def _off(name="linear_regression", **fields):
  return tasks.get({"name": name, "curriculum": False, **fields})


def test_curriculum_off_samples_full_prompts():
  b = _sample(_off(), 0, B, 0)  # step 0 would mean 5 dims and 11 points with the curriculum
  assert b["xs"].all()
  np.testing.assert_array_equal(b["weights"][:, 0::2], 1.0)
  assert int(_off().active_dims(0)) == 20 and int(_off().active_points(0)) == 41


def test_orthogonal_query_is_orthogonal_and_keeps_its_norm():
  task = _off(prompting="orthogonal_train_test")
  assert task.rows_per_prompt == 20
  b = _sample(task, 10, B)
  k = b["query_index"]
  np.testing.assert_array_equal(k, np.arange(B) % 20)
  np.testing.assert_array_equal(b["weights"][:, 0::2], np.eye(41)[k])
  plain = _sample(_off(), 10, B)  # same key: the same Gaussian draws before the projection
  for i in range(B):
    q, ctx = b["xs"][i, k[i]].astype(np.float64), b["xs"][i, :k[i]].astype(np.float64)
    if k[i]:
      cos = ctx @ q / (np.linalg.norm(ctx, axis=1) * np.linalg.norm(q))
      assert np.abs(cos).max() < 1e-5
    assert np.abs(plain["xs"][i, k[i]] @ q) > 0 or k[i] == 0
    np.testing.assert_allclose(np.linalg.norm(q), np.linalg.norm(plain["xs"][i, k[i]]), rtol=1e-5)
    np.testing.assert_array_equal(b["xs"][i, :k[i]], plain["xs"][i, :k[i]])
  np.testing.assert_allclose(b["ys"], reference_ys("linear_regression", b, task), atol=1e-4)


def test_overlapping_query_is_an_earlier_point():
  task = _off(prompting="overlapping_train_test")
  assert task.rows_per_prompt == 41
  b = _sample(task, 11, B)
  k = b["query_index"]
  np.testing.assert_array_equal(k, np.arange(B) % 41)
  for i in range(B):
    q = b["xs"][i, k[i]]
    match = np.flatnonzero(np.all(b["xs"][i, :k[i] + 1] == q, axis=1))
    # k = 0 keeps its own point; otherwise exactly one earlier point is the query.
    np.testing.assert_array_equal(match, [0] if k[i] == 0 else [match[0], k[i]])
    assert k[i] == 0 or match[0] < k[i]
  np.testing.assert_allclose(b["ys"], reference_ys("linear_regression", b, task), atol=1e-5)


def test_random_quadrants_context_in_one_orthant():
  task = _off(prompting="random_quadrants")
  b = _sample(task, 12, B)
  k = b["query_index"]
  off_orthant = []
  for i in range(B):
    ctx = b["xs"][i, :k[i]]
    if k[i] >= 2:
      assert np.all(np.sign(ctx) == np.sign(ctx[0]))  # one sign pattern for the whole context
    if k[i] >= 1:
      off_orthant.append(np.any(np.sign(b["xs"][i, k[i]]) != np.sign(ctx[0])))
  assert np.mean(off_orthant) > 0.95  # the query is a plain Gaussian
  np.testing.assert_allclose(b["ys"], reference_ys("linear_regression", b, task), atol=1e-5)


def _expected_spectrum(kind, d=20):
  eig = (1.0 / np.arange(1, d + 1)**2 if kind == "skewed"
         else (np.arange(d) < d // 2).astype(float))
  return eig * d / eig.sum()  # trace d


@pytest.mark.parametrize("kind", ["skewed", "half_subspace"])
def test_covariance_factor_has_intended_spectrum(kind):
  t = icl.covariance_factor(kind, 20, 0)
  cov = t.T @ t  # Cov(z @ T) for z ~ N(0, I)
  np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(cov))[::-1], _expected_spectrum(kind),
                             atol=1e-12)
  np.testing.assert_allclose(t, t.T, atol=1e-12)
  # A random rotation, not the coordinate axes; fixed by the seed.
  assert np.abs(np.diag(cov) - _expected_spectrum(kind)).max() > 0.1
  np.testing.assert_array_equal(t, icl.covariance_factor(kind, 20, 0))
  assert not np.allclose(t, icl.covariance_factor(kind, 20, 1))


def test_sampled_xs_follow_the_covariance():
  d = 20
  x = _sample(_off(x_covariance="skewed"), 13, 512)["xs"].astype(np.float64).reshape(-1, d)
  t = icl.covariance_factor("skewed", d, 0)
  np.testing.assert_allclose(np.cov(x.T), t.T @ t, atol=0.05 * (t.T @ t).max())


def test_scaled_settings():
  base = _sample(_off(), 14, B)
  scaled = _sample(_off(x_scale=3.0, y_scale=0.5), 14, B)
  np.testing.assert_allclose(scaled["xs"], 3.0 * base["xs"], rtol=1e-6)
  np.testing.assert_array_equal(scaled["w"], base["w"])
  np.testing.assert_allclose(scaled["ys"], 1.5 * base["ys"], rtol=1e-5, atol=1e-5)


def test_noisy_renormalised_setting():
  task = _off(noise_std=1.0, renormalize_ys=True)
  b = _sample(task, 15, B)
  np.testing.assert_allclose(np.std(b["ys"]), np.sqrt(20), rtol=1e-3)
  resid = b["ys"] - reference_ys("linear_regression", b, task) * np.sqrt(20 / 21)
  assert 0.9 < np.std(resid) < 1.1  # unit noise, rescaled by ~sqrt(20/21)
