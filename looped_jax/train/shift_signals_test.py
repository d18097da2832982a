"""Tests for the SHIFT gradient cosine: which parameters it reads and its value."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from looped_jax import errors, models, tasks
from looped_jax.config import base_config
from looped_jax.train import shift_signals
from looped_jax.train import step as step_lib


@functools.cache
def _setup():
  """Two attention-only layers (stacked leaves), built once per file."""
  c = base_config()
  c.task = tasks.default_config("markov", vocab=8, length=12)
  c.model.block, c.model.d_model, c.model.num_heads, c.model.num_layers = "attn_only", 12, 2, 2
  task = tasks.get(c.task)
  graphdef, params = models.build(c.model, task, 0)
  batch = jax.jit(lambda key: task.sample(key, 8))(jax.random.key(1))
  return task, graphdef, params, batch


def _np_grads(task, graphdef, params, batch, loops):
  g = jax.jit(jax.grad(functools.partial(step_lib.loss_fn, graphdef=graphdef, task=task,
                                         loops=loops, grad_loops=0, loss_on="last")))(
                                             params, batch)
  return {path: np.asarray(x, np.float64) for path, x in
          ((jax.tree_util.keystr(p), x) for p, x in jax.tree_util.tree_flatten_with_path(g)[0])}


def _np_cos(a, b):
  return float(a @ b / np.sqrt((a @ a) * (b @ b)))


@pytest.mark.slow
def test_qk_part_is_the_q_and_k_columns_of_every_qkv():
  _, _, params, _ = _setup()
  d = 12
  picked = shift_signals.select(params, "qk")
  attn = params["layers"]["attn"]["qkv"]
  want = [attn["bias"][..., :2 * d], attn["kernel"][..., :2 * d]]  # tree order: bias, kernel
  assert len(picked) == 2
  for got, ref in zip(picked, want):
    np.testing.assert_array_equal(got, ref)
  assert picked[1].shape == (2, d, 2 * d)  # [layers, D, 2D]
  assert len(shift_signals.select(params, "all")) == len(jax.tree.leaves(params))


@pytest.mark.slow
def test_grad_cosine_matches_numpy_and_is_one_at_equal_loops():
  task, graphdef, params, batch = _setup()
  g1, g3 = (_np_grads(task, graphdef, params, batch, n) for n in (1, 3))
  d = 12
  qk = lambda g: np.concatenate([g[k][..., :2 * d].ravel() for k in sorted(g) if "'qkv'" in k])
  every = lambda g: np.concatenate([g[k].ravel() for k in sorted(g)])
  for part, flat in (("qk", qk), ("all", every)):
    fn = jax.jit(shift_signals.make_grad_cosine(graphdef, task, loops=1, other_loops=3,
                                                part=part, grad_loops=0, loss_on="last"))
    got = float(fn(params, batch))
    np.testing.assert_allclose(got, _np_cos(flat(g1), flat(g3)), rtol=1e-5)
    assert -1.0 <= got < 0.9999  # one and three loops do differ
  same = shift_signals.make_grad_cosine(graphdef, task, loops=2, other_loops=2, part="qk",
                                        grad_loops=0, loss_on="last")
  np.testing.assert_allclose(float(jax.jit(same)(params, batch)), 1.0, rtol=1e-6)


def test_cosine_of_a_zero_vector_is_zero_and_bad_part_is_a_config_error():
  assert float(shift_signals.cosine([jnp.zeros(3)], [jnp.ones(3)])) == 0.0
  with pytest.raises(errors.ConfigError, match="grad_alignment.params"):
    shift_signals.select({"w": jnp.ones(2)}, "q")
  with pytest.raises(errors.ConfigError, match="params='all'"):
    shift_signals.select({"w": jnp.ones(2)}, "qk")
