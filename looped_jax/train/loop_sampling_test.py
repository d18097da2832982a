"""Random loop counts: the configured distribution, and a pure function of (seed, step)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from looped_jax.train import loop_sampling


def _draws(fn, seed, steps):
  keys = jax.vmap(lambda s: loop_sampling.step_key(seed, s, loop_sampling.COUNT_TAG))(steps)
  return np.asarray(jax.jit(jax.vmap(fn))(keys))


@pytest.mark.slow
def test_poisson_lognormal_mean_is_rbar_plus_one():
  steps = jnp.arange(100_000)
  r = _draws(lambda k: loop_sampling.poisson_lognormal(k, 8.0, 0.5), 0, steps)
  assert r.dtype == np.int32 and r.min() >= 1
  assert abs(r.mean() - 9.0) < 0.1  # E[r] = r̄ + 1 (Geiping); standard error ~0.016
  # LogNormal spread: much wider than Poisson(8) + 1 alone (variance 8).
  assert r.var() > 8 + 0.5 * 64 * (np.exp(0.25) - 1)


@pytest.mark.slow
def test_uniform_range_and_mean():
  r = _draws(lambda k: loop_sampling.uniform(k, 3, 7), 0, jnp.arange(20_000))
  assert set(np.unique(r)) == {3, 4, 5, 6, 7}
  assert abs(r.mean() - 5.0) < 0.05


@pytest.mark.slow
def test_counts_are_a_pure_function_of_seed_and_step():
  fn = lambda k: loop_sampling.sample_count(k, "poisson_lognormal", mean=8.0, sigma=0.5,
                                            low=1, high=1)
  steps = jnp.arange(200)
  a, b = _draws(fn, 5, steps), _draws(fn, 5, steps)
  np.testing.assert_array_equal(a, b)  # a resumed run draws the same counts
  # One step alone (as after a restore) gives the value it had in the sequence.
  assert int(fn(loop_sampling.step_key(5, 123, loop_sampling.COUNT_TAG))) == a[123]
  assert not np.array_equal(a, _draws(fn, 6, steps))  # the seed matters
  assert len(np.unique(a)) > 5  # and the step does


@pytest.mark.slow
def test_progressive_counts_stay_in_bansals_ranges():
  m = 6
  keys = jax.vmap(lambda s: loop_sampling.step_key(0, s, loop_sampling.PROGRESSIVE_TAG))(
      jnp.arange(5000))
  n, k = jax.jit(jax.vmap(lambda key: loop_sampling.progressive_counts(key, m)))(keys)
  n, k = np.asarray(n), np.asarray(k)
  assert n.min() == 0 and n.max() == m - 1
  assert k.min() == 1 and np.all(n + k <= m) and np.any(n + k == m)


def test_truncated_split():
  warm, grad = loop_sampling.truncated_split(jnp.array([1, 4, 9]), 4)
  np.testing.assert_array_equal(warm, [0, 0, 5])
  np.testing.assert_array_equal(grad, [1, 4, 4])
