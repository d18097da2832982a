"""Stablemax: the formula of the reference, and the task wrapper that trains on it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from looped_jax import tasks
from looped_jax.train import stablemax


def _reference_log_stablemax(x):
  """The TRM / HRM code's formula, in float64 numpy."""
  x = np.asarray(x, np.float64)
  s = np.where(x < 0, 1 / (1 - x + 1e-30), x + 1)
  return np.log(s / s.sum(-1, keepdims=True))


def test_log_stablemax_matches_the_reference_formula():
  x = jax.random.normal(jax.random.key(0), (5, 7, 9)) * 4
  np.testing.assert_allclose(stablemax.log_stablemax(x), _reference_log_stablemax(x),
                             rtol=1e-5, atol=1e-6)
  # and it is not the softmax
  assert not np.allclose(stablemax.log_stablemax(x), jax.nn.log_softmax(x), atol=1e-2)


def test_gradient_is_finite_and_continuous_at_zero():
  g = jax.grad(lambda x: jnp.sum(stablemax.log_s(x)))(jnp.array([-1e-7, 0.0, 1e-7]))
  np.testing.assert_allclose(g, [1.0, 1.0, 1.0], rtol=1e-5)


@pytest.mark.parametrize("kind", ["softmax", "stablemax"])
def test_loss_task_uses_the_configured_normaliser(kind):
  task = tasks.get({"name": "parity", "n_bits": 4})
  batch = task.sample(jax.random.key(1), 8)
  logits = jax.random.normal(jax.random.key(2), (*batch["inputs"].shape, task.output_dim)) * 3
  wrapped = stablemax.loss_task(task, kind)
  logp = (stablemax.log_stablemax(logits) if kind == "stablemax"
          else jax.nn.log_softmax(logits))
  nll = -jnp.take_along_axis(logp, batch["targets"][..., None], -1)[..., 0]
  want = jnp.sum(nll * batch["weights"]) / jnp.sum(batch["weights"])
  np.testing.assert_allclose(wrapped.loss(logits, batch), want, rtol=1e-5)
  assert wrapped.seq_len == task.seq_len and wrapped.output_dim == task.output_dim
  metrics = wrapped.metrics(logits, batch)
  np.testing.assert_allclose(metrics["accuracy"], task.metrics(logits, batch)["accuracy"])
