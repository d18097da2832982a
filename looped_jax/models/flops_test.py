"""The analytic train-step FLOP count equals the matmuls JAX really traces."""

import jax
import jax.numpy as jnp
import pytest

from looped_jax import models, tasks
from looped_jax.config import base_config
from looped_jax.models import flops
from looped_jax.train import optim
from looped_jax.train import step as step_lib


def traced_and_analytic(task_name, task_fields, model, grad_loops, loss_on):
  c = base_config()
  c.task = tasks.default_config(task_name, **task_fields)
  c.model.update(d_model=16, num_heads=2, **model)
  task = tasks.get(c.task)
  graphdef, params = models.build(c.model, task)
  opt = optim.make_optimizer(c.train)
  options = step_lib.LossOptions(grad_loops=grad_loops, loss_on=loss_on)
  fn = step_lib.make_train_step(graphdef, task, opt, options=options, dropout=False, seed=0)
  state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": opt.init(params)}
  batch = task.sample(jax.random.key(0), 3, 0)
  traced = flops.count_matmul_flops(lambda s, b: fn(s, b, c.model.num_loops), state, batch)
  spec = models.ModelSpec.from_config(c.model, task)
  return traced, flops.train_step(spec, 3, task.seq_len, c.model.num_loops, grad_loops, loss_on)


@pytest.mark.parametrize("model,grad_loops,loss_on", [
    # Yang's looped block: window loss over the last 3 of 7 loops.
    (dict(num_loops=7, injection="add", init_state="zeros", position_in_loop=True,
          norm_in_loop=True), 3, "window"),
    # Full backprop through every loop, loss on the last read-out.
    (dict(num_loops=4, injection="add"), 0, "last"),
    # A standard 3-layer transformer.
    (dict(num_layers=3, num_loops=1), 0, "last"),
    (dict(block="attn_only", num_loops=5, mlp_ratio=2), 2, "last"),
])
@pytest.mark.slow
def test_analytic_count_matches_traced_matmuls(model, grad_loops, loss_on):
  traced, analytic = traced_and_analytic(
      "linear_regression", dict(n_dims=5, n_points=6), model, grad_loops, loss_on)
  assert traced == analytic


@pytest.mark.slow
def test_token_inputs_have_no_embedding_matmul():
  traced, analytic = traced_and_analytic(
      "markov", dict(vocab=8, length=10), dict(num_loops=3), 0, "last")
  assert traced == analytic


def test_unsupported_variant_is_refused():
  spec = models.ModelSpec(input_kind="vectors", vocab_size=4, output_dim=1, max_len=8,
                          injection="concat")
  with pytest.raises(ValueError, match="injection='concat'"):
    flops.train_step(spec, 2, 8, 3)
