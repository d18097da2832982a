"""Deep supervision: each slot trains on its own carried example, halting works as specified,
the configured normaliser is the one trained on, and the weight average is what is evaluated."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from looped_jax import config as config_lib
from looped_jax import models, tasks
from looped_jax.train import build, deep_supervision, stablemax


def _config(**train):
  c = config_lib.base_config()
  c.task = tasks.default_config("parity", n_bits=6)
  # A one-layer attention-only model: deep supervision carries any model's loop state, and
  # this one compiles fast (the recursions' own gradients: models/looped_test.py).
  c.model.update(block="attn_only", d_model=8, num_heads=1, num_loops=1, causal=False)
  c.train.update({"supervision_steps": 3, "batch_size": 8, "learning_rate": 1e-3} | train)
  c.eval.update(batch_size=16, num_batches=1)
  c.mesh.data = 1
  return c


def _batches(exp, count):
  sample = exp.sampler(exp.config.train.batch_size)
  return [sample(jax.random.key(100 + i), i) for i in range(count)]


def _losses_on(exp, params, state_before, data):
  """The loss of one supervision step from the carried state on `data`, recomputed by hand."""
  model = models.merge(exp.graphdef, params)
  e = model.encode(data["inputs"])
  fresh = state_before["carry"]["halted"][:, None, None]
  h = jnp.where(fresh, model.initial_state(e), state_before["carry"]["state"])
  h, _ = model.advance(h, e, exp.config.model.num_loops)
  return exp.loss_task.loss(model.readout(h), data)


def test_a_carried_slot_is_trained_on_its_own_labels_not_the_new_batch():
  exp = build.Experiment.build(_config())
  step = exp.train_step(1)
  b1, b2 = _batches(exp, 2)
  state = exp.initial_state()
  state1, _ = step(state, b1)
  assert not np.asarray(state1["carry"]["halted"]).any()  # no halting head: N = 3 steps each
  params1 = jax.device_get(state1["params"])
  snapshot = jax.device_get(state1)
  _, metrics2 = step(state1, b2)
  # The second step still works on batch 1's examples, from the state they reached.
  np.testing.assert_array_equal(snapshot["carry"]["data"]["targets"], b1["targets"])
  want = _losses_on(exp, params1, snapshot, jax.device_get(b1))
  np.testing.assert_allclose(metrics2["loss"], want, rtol=1e-5)
  # Batch 2's labels with the carried inputs (the bug) would give another loss.
  mixed = dict(jax.device_get(b1)) | {"targets": b2["targets"]}
  assert abs(float(_losses_on(exp, params1, snapshot, mixed)) - float(want)) > 1e-3


def test_slots_refill_after_n_steps_and_the_carry_is_the_reached_state():
  exp = build.Experiment.build(_config())
  step = exp.train_step(1)
  batches = _batches(exp, 4)
  state = exp.initial_state()
  for b in batches[:3]:
    state, metrics = step(state, b)
  carry = jax.device_get(state["carry"])
  assert carry["halted"].all() and (carry["steps"] == 3).all()
  assert float(metrics["halt/ended"]) == 1.0
  state, _ = step(state, batches[3])
  carry = jax.device_get(state["carry"])
  np.testing.assert_array_equal(carry["data"]["inputs"], batches[3]["inputs"])
  assert (carry["steps"] == 1).all() and not carry["halted"].any()


def _with_halt_bias(state, bias):
  params = jax.tree.map(lambda x: x, state["params"])
  params["halt_head"]["bias"] = jnp.full((2,), bias, jnp.float32).at[1].set(0.0)
  params["halt_head"]["kernel"] = jnp.zeros_like(params["halt_head"]["kernel"])
  return state | {"params": params}


@pytest.mark.parametrize("exploration, steps_after_one", [
    (0.0, 1.0), pytest.param(1.0, None, marks=pytest.mark.slow)])
def test_halting_head_ends_examples_and_exploration_delays_them(exploration, steps_after_one):
  config = _config(supervision_steps=6, halt_exploration=exploration, learning_rate=1e-9)
  config.model.halting = True
  exp = build.Experiment.build(config)
  step = exp.train_step(1)
  state = _with_halt_bias(exp.initial_state(), 30.0)  # q_halt >> 0: halt at once if allowed
  ended_at, steps = [], []
  for b in _batches(exp, 7):
    state, metrics = step(state, b)
    ended_at.append(float(metrics["halt/ended"]))
    total, count = map(float, metrics["halt/steps"])
    steps += [total / count] if count else []
  if steps_after_one:  # every example halts after its first step
    assert ended_at == [1.0] * 7 and steps == [1.0] * 7
  else:  # each step draws a minimum of U{2..6} steps (as the reference): none halts at once
    assert ended_at[0] == 0.0 and sum(ended_at) > 0 and min(steps) >= 2.0


def test_halting_evaluation_uses_the_answer_where_the_head_halts():
  config = _config(supervision_steps=4)
  config.model.halting = True
  exp = build.Experiment.build(config)
  params = exp.params
  batch = exp.eval_batches[0]
  for bias, steps in ((30.0, 1.0), (-30.0, 4.0)):
    halted = _with_halt_bias({"params": params}, bias)["params"]
    metrics = jax.device_get(exp.halting_eval_step(4)(halted, batch))
    assert metrics["steps"][0] / metrics["steps"][1] == steps
    plain = jax.device_get(exp.eval_step(int(steps))(halted, batch))
    np.testing.assert_allclose(metrics["accuracy"], plain["accuracy"])


@pytest.mark.parametrize("kind", [pytest.param("softmax", marks=pytest.mark.slow), "stablemax"])
def test_the_configured_normaliser_is_the_trained_loss(kind):
  exp = build.Experiment.build(_config(cross_entropy=kind))
  b1 = _batches(exp, 1)[0]
  state = exp.initial_state()
  snapshot = jax.device_get(state)
  _, metrics = exp.train_step(1)(state, b1)
  model = models.merge(exp.graphdef, snapshot["params"])
  logits = model(jnp.asarray(b1["inputs"]), 1)
  logp = (stablemax.log_stablemax(logits) if kind == "stablemax"
          else jax.nn.log_softmax(logits))
  nll = -jnp.take_along_axis(logp, b1["targets"][..., None], -1)[..., 0]
  want = jnp.sum(nll * b1["weights"]) / jnp.sum(b1["weights"])
  np.testing.assert_allclose(metrics["loss"], want, rtol=1e-5)


def test_ema_is_the_running_average_and_evaluation_reads_it():
  exp = build.Experiment.build(_config(ema=0.9))
  step = exp.train_step(1)
  state = exp.initial_state()
  average = jax.device_get(state["params"])
  for b in _batches(exp, 3):
    state, _ = step(state, b)
    average = jax.tree.map(lambda a, p: 0.9 * a + 0.1 * p, average,
                           jax.device_get(state["params"]))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               average, jax.device_get(state["ema"]))
  assert exp.eval_params(state) is state["ema"]
  assert exp.evaluate(exp.eval_params(state)) == exp.evaluate(state["ema"])
  assert exp.evaluate(state["ema"]) != exp.evaluate(state["params"])


def test_initial_carry_has_every_slot_halted():
  task = tasks.get({"name": "parity", "n_bits": 5})
  carry = deep_supervision.initial_carry(task, 4, 32)
  assert carry["halted"].all() and carry["state"].shape == (4, 6, 32)
  assert set(carry["data"]) == set(task.sample(jax.random.key(0), 1))


@pytest.mark.slow
def test_q_learning_target_is_the_next_steps_sigmoid_max_q():
  """HRM's continue target: at init (head weight 0, bias -5) every q is -5, so the target is
  sigmoid(max(-5, -5)) and the loss is the entropy of sigmoid(-5)."""
  config = _config(halt_target="q_learning", supervision_steps=4)
  config.model.halting = True
  exp = build.Experiment.build(config)
  _, metrics = exp.train_step(1)(exp.initial_state(), _batches(exp, 1)[0])
  p = jax.nn.sigmoid(-5.0)
  entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))
  np.testing.assert_allclose(metrics["halt/continue_loss"], entropy, rtol=1e-5)
