"""Tests for the in-context regression tasks (training-free)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from looped_jax import tasks
from looped_jax.errors import ConfigError
from looped_jax.tasks import icl

NAMES = ("linear_regression", "noisy_linear_regression", "sparse_linear_regression",
         "decision_tree", "relu2nn")


def _np(batch):
  return {k: np.asarray(v) for k, v in batch.items()}


@functools.lru_cache(maxsize=None)
def _jitted(task, batch_size):
  # One compile per (task, batch size); the step is traced, so curricula reuse it.
  return jax.jit(lambda key, step: task.sample(key, batch_size, step))


def _sample(task, seed, batch_size, step=0):
  return _np(_jitted(task, batch_size)(jax.random.key(seed), jnp.int32(step)))


def reference_ys(name, b, task):
  """f(xs) from the sampled parameters, written independently of icl.py (float64 loops)."""
  xs = b["xs"].astype(np.float64)
  if name in ("linear_regression", "noisy_linear_regression", "sparse_linear_regression"):
    return np.einsum("bnd,bd->bn", xs, b["w"].astype(np.float64))
  if name == "relu2nn":
    h = np.maximum(np.einsum("bnd,bdh->bnh", xs, b["w1"].astype(np.float64)), 0.0)
    return np.sqrt(2.0 / task.hidden) * np.einsum("bnh,bh->bn", h, b["w2"].astype(np.float64))
  out = np.zeros(xs.shape[:2])
  for i in range(xs.shape[0]):
    for j in range(xs.shape[1]):
      node = 0
      while node < 2**task.depth - 1:  # internal nodes of a depth-`depth` heap
        go_right = xs[i, j, b["tree_features"][i, node]] > 0
        node = 2 * node + 2 if go_right else 2 * node + 1
      out[i, j] = b["tree_leaves"][i, node]
  return out


B = 64  # one batch size everywhere: each task config compiles once (threefry compiles slowly)
LATE = 10**7  # a step past every curriculum: full d and n, same compiled sampler as step 0


def _full(name="linear_regression"):
  """`name` with its default curriculum, sampled at LATE (the off switch: icl_ood_test.py)."""
  return tasks.get({"name": name})


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.slow
def test_targets_match_reference_and_prompt_layout(name):
  task = _full(name)
  b = _sample(task, 0, B, LATE)
  ref = reference_ys(name, b, task)
  if name == "noisy_linear_regression":
    resid = b["ys"] - ref  # 2.6k draws of N(0, 0.1^2): std error of the std ~0.0014
    assert abs(np.std(resid) - 0.1) < 0.005 and abs(np.mean(resid)) < 0.008
  else:
    np.testing.assert_allclose(b["ys"], ref, rtol=1e-5, atol=1e-5)
  n, d = task.n_points, task.n_dims
  assert b["inputs"].shape == (B, 2 * n, d) and b["inputs"].dtype == np.float32
  np.testing.assert_array_equal(b["inputs"][:, 0::2], b["xs"])
  np.testing.assert_array_equal(b["inputs"][:, 1::2, 0], b["ys"])
  assert not b["inputs"][:, 1::2, 1:].any()
  np.testing.assert_array_equal(b["targets"][:, 0::2], b["ys"])
  assert not b["targets"][:, 1::2].any()
  # Past the curriculum: every coordinate and every point is live.
  assert b["xs"].all()
  np.testing.assert_array_equal(b["weights"][:, 0::2], 1.0)
  assert not b["weights"][:, 1::2].any()
  assert task.seq_len == 2 * n and task.vocab_size == d and task.output_dim == 1
  assert "query_index" not in b


def test_sparse_support_and_normalisers():
  b = _sample(_full("sparse_linear_regression"), 0, B, LATE)
  np.testing.assert_array_equal((b["w"] != 0).sum(-1), 3)
  assert np.all((b["w"] != 0).mean(0) < 0.4)  # spread over coordinates, not a fixed support
  assert _full("sparse_linear_regression").normaliser == 3.0
  assert _full("linear_regression").normaliser == 20.0
  assert _full("relu2nn").normaliser == 20.0
  assert _full("decision_tree").normaliser == 1.0


def test_relu_scale_matches_linear_regression():
  # sqrt(2/h) scaling makes E[y^2 | x] = |x|^2, the linear-regression scale (E[y^2] = d).
  b = _sample(_full("relu2nn"), 0, B, LATE)
  assert 0.8 < np.mean(b["ys"]**2) / 20 < 1.2


@pytest.mark.parametrize("name", ["linear_regression", "sparse_linear_regression", "relu2nn"])
def test_curriculum_zeroes_unused_dims_and_points(name):
  task = tasks.get({"name": name})
  start_pts, inc = (26, 5) if name == "relu2nn" else (11, 2)
  weight = "w1" if name == "relu2nn" else "w"
  for step, dims, points in ((0, 5, start_pts), (4999, 5, start_pts),
                             (15000, 8, start_pts + 3 * inc), (10**7, 20, task.n_points)):
    b = _sample(task, 4, B, step)  # traced step
    assert int(task.active_dims(step)) == dims and int(task.active_points(step)) == points
    assert not b["xs"][..., dims:].any() and b["xs"][..., :dims].all()
    assert not b[weight][:, dims:].any() and b[weight][:, :dims].any()
    np.testing.assert_array_equal(b["weights"][:, 0::2].sum(1), points)
    np.testing.assert_array_equal(b["weights"][:, 0:2 * points:2], 1.0)
    np.testing.assert_allclose(b["ys"], reference_ys(name, b, task), rtol=1e-5, atol=1e-5)
    if name == "sparse_linear_regression":
      np.testing.assert_array_equal((b["w"] != 0).sum(-1), 3)  # support inside the active dims


def test_tree_has_no_dims_curriculum_but_points_curriculum():
  task = tasks.get({"name": "decision_tree"})
  b = _sample(task, 6, B, 0)
  assert b["xs"].all()  # every coordinate used from step 0
  np.testing.assert_array_equal(b["weights"][:, 0::2].sum(1), 26)
  b = _sample(task, 6, B, 5000)
  np.testing.assert_array_equal(b["weights"][:, 0::2].sum(1), 31)
  assert int(task.active_dims(0)) == 20


def test_curriculum_value_traced_equals_concrete():
  args = (5, 1, 5000, 20)
  traced = jax.jit(lambda s: icl.curriculum_value(s, *args))
  for step in (0, 4999, 5000, 12345, 74999, 75000, 10**6):
    assert int(traced(jnp.int32(step))) == int(icl.curriculum_value(step, *args)) \
        == min(5 + step // 5000, 20)


def test_sampling_is_deterministic_in_the_key():
  task = tasks.get({"name": "relu2nn"})
  a, b, c = _sample(task, 8, B, 12345), _sample(task, 8, B, 12345), _sample(task, 9, B, 12345)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.allclose(a["xs"], c["xs"]) and not np.allclose(a["w1"], c["w1"])
  # Prompts within a batch differ too.
  assert not np.allclose(a["w2"][0], a["w2"][1])


def test_pointwise_error_and_loss():
  task = _full()
  b = _sample(task, 16, B, LATE)
  out = jnp.zeros((B, 82, 1)).at[:, 0::2, 0].set(b["ys"] + 2.0).at[:, 1::2, 0].set(7.0)
  err = np.asarray(task.pointwise_error(out, b))
  assert err.shape == (B, 41)
  np.testing.assert_allclose(err, 4.0, rtol=1e-5)
  np.testing.assert_allclose(task.loss(out, b), 4.0, rtol=1e-5)  # odd positions unweighted


def test_config_errors():
  with pytest.raises(ConfigError, match="prompting"):
    tasks.get({"name": "linear_regression", "prompting": "sideways"})
  with pytest.raises(ConfigError, match="x_covariance"):
    tasks.get({"name": "linear_regression", "x_covariance": "round"})
  with pytest.raises(ConfigError, match="sparsity"):
    tasks.get({"name": "sparse_linear_regression", "sparsity": 30})
  with pytest.raises(ConfigError, match="did you mean"):
    tasks.get({"name": "relu2nn", "hiden": 3})
  with pytest.raises(ConfigError, match="noise_std"):
    tasks.get({"name": "linear_regression", "noise_std": -1.0})
  assert set(NAMES) <= set(tasks.names())
