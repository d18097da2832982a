"""Training losses: progressive loss, random depth with truncated backprop, per-loop supervision."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from looped_jax import models, tasks
from looped_jax.config import base_config, validate
from looped_jax.errors import ConfigError
from looped_jax.train import step as step_lib

TASK = tasks.get({"name": "prefix_sums", "n_bits": 8})


def build(**model):
  cfg = base_config().model
  cfg.d_model, cfg.num_heads, cfg.injection = 16, 2, "concat"
  cfg.update(model)
  graphdef, params = models.build(cfg, TASK, seed=3)
  batch = TASK.sample(jax.random.key(0), 8)
  return graphdef, params, batch


def options(**kw):
  return step_lib.LossOptions(**kw)


@pytest.mark.slow
def test_progressive_alpha_zero_is_the_plain_loss_exactly():
  graphdef, params, batch = build()

  @jax.jit
  def both(params, step):
    prog, extra = step_lib.training_loss(
        params, batch, graphdef=graphdef, task=TASK, loops=4, seed=0, step=step,
        options=options(progressive=True, progressive_alpha=0.0))
    plain = step_lib.loss_fn(params, batch, graphdef=graphdef, task=TASK, loops=4,
                             grad_loops=0, loss_on="last")
    return prog, plain, extra["loops_drawn"]

  for step in range(3):
    prog, plain, drawn = both(params, step)
    assert float(prog) == float(plain)
    assert 1 <= float(drawn) <= 4


@pytest.mark.slow
def test_progressive_loss_is_the_loss_after_detached_warm_start():
  graphdef, params, batch = build()
  common = dict(graphdef=graphdef, task=TASK)

  @functools.partial(jax.jit, static_argnums=(1, 2, 3))
  def by_hand(params, n, k, detach):
    model = models.merge(graphdef, params)
    e = model.embed(batch["inputs"])
    h = e
    for t in range(n):
      h = model.loop(h, e, None, t)
    h = jax.lax.stop_gradient(h) if detach and n else h  # Bansal: no detach when n = 0
    for t in range(n, n + k):
      h = model.loop(h, e, None, t)
    return TASK.loss(model.readout(h), batch)

  prog = jax.jit(jax.value_and_grad(functools.partial(step_lib.progressive_loss, max_loops=4,
                                                      **common)))
  for n, k in ((0, 4), (3, 1)):
    value, grads = prog(params, batch, warm_loops=n, active_loops=k)
    want_value, want = jax.value_and_grad(by_hand)(params, n, k, True)
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6), grads, want)
  # With the warm start not detached the gradients differ: the check above can fail.
  through = jax.grad(by_hand)(params, 3, 1, False)
  assert not np.allclose(through["layers"]["attn"]["qkv"]["kernel"],
                         grads["layers"]["attn"]["qkv"]["kernel"])


@pytest.mark.parametrize("loss_on", ["last", "window"])
@pytest.mark.slow
def test_random_depth_equals_static_truncated_backprop(loss_on):
  graphdef, params, batch = build()
  depth = 3
  dynamic = jax.jit(jax.value_and_grad(functools.partial(
      step_lib.random_depth_loss, graphdef=graphdef, task=TASK, depth=depth, loss_on=loss_on,
      loop_weight_power=1.0)))
  static = jax.jit(jax.value_and_grad(functools.partial(
      step_lib.loss_fn, graphdef=graphdef, task=TASK, loss_on=loss_on, loop_weight_power=1.0)),
      static_argnames=("loops", "grad_loops"))
  for count in (2, 5):  # shorter and longer than the backprop depth
    value, grads = dynamic(params, batch, count=count)
    want_value, want = static(params, batch, loops=count, grad_loops=min(depth, count))
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6), grads, want)


@pytest.mark.slow
def test_all_loops_supervision_is_the_weighted_mean_of_each_loops_loss():
  graphdef, params, batch = build()
  per_loop = [float(step_lib.loss_fn(params, batch, graphdef=graphdef, task=TASK, loops=l,
                                     grad_loops=0, loss_on="last")) for l in (1, 2, 3)]
  for power, weights in ((0.0, [1, 1, 1]), (1.0, [1, 2, 3])):
    got = step_lib.loss_fn(params, batch, graphdef=graphdef, task=TASK, loops=3, grad_loops=0,
                           loss_on="all", loop_weight_power=power)
    np.testing.assert_allclose(got, np.average(per_loop, weights=weights), rtol=1e-5)


@pytest.mark.slow
def test_train_step_logs_drawn_counts_deterministically():
  import optax
  graphdef, params, batch = build()
  opts = options(random_loops="poisson_lognormal", random_loops_mean=3.0, grad_loops=2)
  fn = step_lib.make_train_step(graphdef, TASK, optax.sgd(0.1), options=opts, dropout=False,
                                seed=0)
  run = jax.jit(functools.partial(fn, loops=3))
  state = {"step": jnp.array(7, jnp.int32), "params": params,
           "opt_state": optax.sgd(0.1).init(params)}
  _, m1 = run(state, batch)
  _, m2 = run(state, batch)
  assert float(m1["loops_drawn"]) == float(m2["loops_drawn"]) >= 1
  assert np.isfinite(float(m1["loss"]))


@pytest.mark.parametrize("train,message", [
    ({"random_loops": "poisson_lognormal"}, "grad_loops > 0"),
    ({"random_loops": "uniform", "grad_loops": 2, "progressive": True}, "use one of them"),
    ({"random_loops": "bogus"}, "train.random_loops"),
    ({"loss_on": "all", "grad_loops": 2}, "grad_loops=0"),
    ({"progressive_alpha": 1.5}, "[0, 1]"),
    ({"random_loops": "uniform", "grad_loops": 2, "random_loops_low": 5,
      "random_loops_high": 3}, "low <= high"),
])
def test_bad_loop_options_are_config_errors(train, message):
  c = base_config()
  c.train.update(train)
  with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
    validate(c)


def test_loop_aligned_supervision_gives_loop_t_step_t_and_the_last_loop_the_answer():
  graphdef, params, batch = build()
  b, n = batch["inputs"].shape
  keys = jax.random.split(jax.random.key(1), 2)
  for loops, steps in ((4, 2), (2, 3)):  # more loops than steps, and fewer
    aligned = dict(batch, step_targets=jax.random.bernoulli(keys[0], 0.5, (b, steps, n)).astype(
        jnp.int32), step_weights=jax.random.uniform(keys[1], (b, steps, n)))
    outs = np.asarray(models.apply(graphdef, params, batch["inputs"], loops, per_loop=True))
    logp = jax.nn.log_softmax(outs, axis=-1)
    expected = []
    for t in range(1, loops):  # loop t (1-based) learns step min(t, S)
      s = min(t, steps) - 1
      tgt, w = np.asarray(aligned["step_targets"][:, s]), np.asarray(aligned["step_weights"][:, s])
      ce = -np.take_along_axis(logp[t - 1], tgt[..., None], -1)[..., 0]
      expected.append(np.sum(ce * w) / np.sum(w))
    expected.append(float(TASK.loss(jnp.asarray(outs[-1]), batch)))
    got = step_lib.loss_fn(params, aligned, graphdef=graphdef, task=TASK, loops=loops,
                           grad_loops=0, loss_on="steps")
    np.testing.assert_allclose(got, np.mean(expected), rtol=1e-5)
