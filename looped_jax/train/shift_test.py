"""Tests for the multi-stage optimizer, switch_stage and ShiftSchedule parsing."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from looped_jax import errors
from looped_jax.train import shift
from looped_jax import shift_criteria

PARAMS = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.0]]), "b": jnp.array([0.3, -0.7])}
CURVATURE = {"w": jnp.array([[1.0, 4.0], [0.5, 2.0], [3.0, 1.5]]), "b": jnp.array([2.0, 0.25])}


def quadratic(params):
  """A diagonal quadratic with its minimum at 1 and uneven curvature."""
  terms = jax.tree.map(lambda p, c: jnp.sum(c * (p - 1.0) ** 2), params, CURVATURE)
  return sum(jax.tree.leaves(terms))


def linear(params):
  """Gradient 1 everywhere, so an SGD update is minus the learning rate."""
  return sum(jnp.sum(x) for x in jax.tree.leaves(params))


def adam(peak):
  sched = optax.warmup_cosine_decay_schedule(0.0, peak, warmup_steps=3, decay_steps=12,
                                             end_value=0.1 * peak)
  return optax.adam(sched)


# Shared transforms, so that jitted steps are compiled once per file.
ADAM_A, ADAM_B = adam(0.1), adam(0.03)
TWO = shift.multi_stage([ADAM_A, ADAM_B])
THREE = shift.multi_stage([adam(0.1), adam(0.05), adam(0.02)])


@functools.cache
def make_step(tx, loss=quadratic, **update_kw):
  """One training step, with the optimizer update jitted on its own (cached per transform).

  Compared transforms then see bit-identical gradients: fused into one jit with the
  gradient, XLA may fuse across the plain update but not across lax.switch (1-ulp
  differences that say nothing about the transform).
  """
  grad = jax.jit(jax.grad(loss))
  update = jax.jit(functools.partial(tx.update, **update_kw))

  def step(params, state):
    updates, state = update(grad(params), state, params)
    return apply_updates(params, updates), state
  return step


apply_updates = jax.jit(optax.apply_updates)
switch_stage = jax.jit(shift.switch_stage, static_argnames=("moments", "lr"))


def run(tx, steps, state=None, params=PARAMS, switch_at=(), loss=quadratic, static=False,
        **switch_kw):
  """Runs `steps` updates; before update t (0-based) switches to the next stage if t in switch_at.

  static=True compiles the update per stage (shift_stage=k), as the trainer does.
  Returns the params after every update and the final (params, state).
  """
  state = tx.init(params) if state is None else state
  trajectory = []
  for t in range(steps):
    if t in switch_at:
      state = switch_stage(state, int(state.stage) + 1, **switch_kw)
    kw = {"shift_stage": int(state.stage)} if static else {}
    params, state = make_step(tx, loss, **kw)(params, state)
    trajectory.append(params)
  return trajectory, params, state


def assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def layout(tree):
  return jax.tree.structure(tree), [(x.shape, x.dtype) for x in jax.tree.leaves(tree)]


def adam_state(state, stage):
  return state.inner[stage][0]  # adam = chain(scale_by_adam, scale_by_learning_rate)


@pytest.mark.parametrize("moments", shift.MOMENTS)
@pytest.mark.parametrize("lr", shift.LR_MODES)
def test_state_layout_is_the_same_in_every_stage(moments, lr):
  tx = THREE
  init = tx.init(PARAMS)
  _, _, state = run(tx, 6, switch_at=(2, 4), moments=moments, lr=lr)
  assert int(shift.current_stage(state)) == 2
  assert int(state.stage_start) == 4 and int(shift.stage_step(state)) == 2
  assert layout(state) == layout(init)


@pytest.mark.parametrize("moments", shift.MOMENTS)
@pytest.mark.parametrize("lr", shift.LR_MODES)
def test_switch_at_step_zero_equals_plain_stage_one(moments, lr):
  got, _, _ = run(TWO, 8, switch_at=(0,), moments=moments, lr=lr)
  want, _, _ = run(ADAM_B, 8)
  assert_trees_equal(got, want)


def test_never_switching_equals_plain_stage_zero():
  got, _, state = run(TWO, 8)
  want, _, _ = run(ADAM_A, 8)
  assert_trees_equal(got, want)
  assert int(state.count) == 8 and int(state.stage) == 0


@pytest.mark.parametrize("static", [False, True])
def test_keep_with_a_shared_transform_runs_straight_through(static):
  got, _, _ = run(shift.multi_stage([ADAM_A, ADAM_A]), 10, switch_at=(4,), moments="keep",
                  lr="keep", static=static)
  want, _, _ = run(ADAM_A, 10)
  assert_trees_equal(got, want)


@pytest.mark.slow
def test_static_stage_matches_switch_and_poisons_a_stale_stage():
  grads = jax.grad(quadratic)(PARAMS)
  _, state = jax.jit(TWO.update)(grads, TWO.init(PARAMS), PARAMS)
  state = shift.switch_stage(state, 1, moments="reset")
  dynamic = jax.jit(TWO.update)
  static = jax.jit(functools.partial(TWO.update, shift_stage=1))
  assert_trees_equal(static(grads, state, PARAMS), dynamic(grads, state, PARAMS))
  # The static step has no conditional to copy the inactive states through.
  assert "case" in dynamic.lower(grads, state, PARAMS).as_text()
  assert "case" not in static.lower(grads, state, PARAMS).as_text()
  stale, _ = jax.jit(functools.partial(TWO.update, shift_stage=0))(grads, state, PARAMS)
  assert all(np.isnan(x).all() for x in jax.tree.leaves(stale))
  with pytest.raises(ValueError, match="shift_stage=2 is out of range"):
    TWO.update(grads, state, PARAMS, shift_stage=2)


def test_moments_keep_copies_and_reset_reinitialises():
  tx = TWO
  _, _, before = run(tx, 4)
  kept = shift.switch_stage(before, 1, moments="keep")
  reset = shift.switch_stage(before, 1, moments="reset")
  old = adam_state(before, 0)
  assert int(old.count) == 4 and float(jnp.abs(old.mu["w"]).sum()) > 0
  assert_trees_equal(adam_state(kept, 1), old)
  fresh = adam_state(reset, 1)
  assert int(fresh.count) == 0
  assert_trees_equal((fresh.mu, fresh.nu), jax.tree.map(jnp.zeros_like, (old.mu, old.nu)))
  # The stage left behind keeps its state either way.
  assert_trees_equal(adam_state(reset, 0), old)
  assert_trees_equal(adam_state(kept, 0), old)
  # After one more update the reset moments hold only the new gradient.
  grads = jax.grad(quadratic)(PARAMS)
  _, after = jax.jit(tx.update)(grads, reset, PARAMS)
  np.testing.assert_allclose(adam_state(after, 1).mu["w"], 0.1 * grads["w"], rtol=1e-6)
  assert int(adam_state(after, 1).count) == 1


SCHEDULE = optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=4, decay_steps=20)
SCHEDULED_SGD = {
    "scale_by_schedule": shift.multi_stage([optax.sgd(SCHEDULE)] * 2),
    "inject_hyperparams": shift.multi_stage(
        [optax.inject_hyperparams(optax.sgd)(learning_rate=SCHEDULE)] * 2),
    # A schedule inside an inject_hyperparams inner state.
    "nested": shift.multi_stage([optax.inject_hyperparams(
        lambda momentum: optax.sgd(SCHEDULE, momentum=momentum))(momentum=0.0)] * 2),
}


@pytest.mark.parametrize("kind", SCHEDULED_SGD)
@pytest.mark.parametrize("lr", shift.LR_MODES)
def test_lr_keep_continues_and_rewarm_restarts_the_schedule(kind, lr):
  tx = SCHEDULED_SGD[kind]
  trajectory, _, state = run(tx, 9, switch_at=(5,), loss=linear, lr=lr, moments="keep")
  lrs = [float(a["b"][0] - b["b"][0]) for a, b in zip([PARAMS] + trajectory, trajectory)]
  want = [SCHEDULE(t) for t in range(5)]
  want += [SCHEDULE(t if lr == "rewarm" else 5 + t) for t in range(4)]
  np.testing.assert_allclose(lrs, want, rtol=1e-6, atol=1e-7)
  assert float(SCHEDULE(0)) != pytest.approx(float(SCHEDULE(5)))  # the two modes differ
  assert int(state.stage_start) == 5 and int(state.count) == 9


def test_three_stages_apply_only_the_active_transform():
  tx = shift.multi_stage([optax.sgd(1.0, momentum=0.5), optax.sgd(2.0, momentum=0.5),
                          optax.sgd(4.0, momentum=0.5)])
  step = make_step(tx, linear)
  params, state = PARAMS, tx.init(PARAMS)
  deltas, inner0 = [], None
  for t in range(6):
    if t in (2, 4):
      state = shift.switch_stage(state, int(state.stage) + 1, moments="reset")
      inner0 = state.inner[0] if t == 2 else inner0
    new, state = step(params, state)
    deltas.append(float(params["b"][0] - new["b"][0]))
    params = new
    if t >= 2:
      assert_trees_equal(state.inner[0], inner0)  # inactive stages are left alone
  # Momentum 0.5 with fresh traces: lr * (1, 1.5) in each stage.
  np.testing.assert_allclose(deltas, [1.0, 1.5, 2.0, 3.0, 4.0, 6.0], rtol=1e-6)


@pytest.mark.parametrize("moments", shift.MOMENTS)
@pytest.mark.parametrize("lr", shift.LR_MODES)
def test_switch_inside_jit_matches_eager(moments, lr):
  _, _, state = run(THREE, 3)
  jitted = jax.jit(lambda s, k: shift.switch_stage(s, k, moments=moments, lr=lr))
  for k in (1, 2):
    assert_trees_equal(jitted(state, k), shift.switch_stage(state, k, moments=moments, lr=lr))
  stage1 = shift.switch_stage(state, 1, moments=moments, lr=lr)
  assert_trees_equal(jitted(stage1, 2), shift.switch_stage(stage1, 2, moments=moments, lr=lr))
  assert_trees_equal(jitted(stage1, 1), stage1)  # traced: not forward, so unchanged
  with pytest.raises(ValueError, match="forward only"):
    shift.switch_stage(stage1, 1)
  with pytest.raises(ValueError, match="out of range"):
    shift.switch_stage(stage1, 3)


def test_state_can_be_donated_after_init_and_switch():
  # Donation fails on a state whose leaves share a buffer (e.g. count and stage_start).
  update = jax.jit(TWO.update, donate_argnums=1)
  grads = jax.grad(quadratic)(PARAMS)
  _, state = update(grads, TWO.init(PARAMS), PARAMS)
  for moments in shift.MOMENTS:
    for lr in shift.LR_MODES:
      switched = shift.switch_stage(state, 1, moments=moments, lr=lr)
      _, switched = update(grads, switched, PARAMS)
      assert int(switched.count) == 2 and int(switched.stage) == 1


def test_keep_needs_matching_states_and_reset_does_not():
  tx = shift.multi_stage([optax.sgd(0.1), optax.adam(0.1)])
  state = tx.init(PARAMS)
  with pytest.raises(ValueError, match="moments='reset'"):
    shift.switch_stage(state, 1, moments="keep")
  switched = shift.switch_stage(state, 1, moments="reset")
  assert int(switched.stage) == 1
  with pytest.raises(ValueError, match="moments="):
    shift.switch_stage(state, 1, moments="zero")


@pytest.mark.parametrize("stage", [0, 1])
def test_orbax_round_trip_continues_identically(tmp_path, stage):
  tx = TWO
  switch_at = (2,) if stage else ()
  _, params, state = run(tx, 4, switch_at=switch_at, lr="rewarm")
  assert int(state.stage) == stage
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(tmp_path / "ckpt", {"params": params, "opt": state})
  # Restore into the layout of a fresh (stage 0) state: the same in every stage.
  target = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                        {"params": PARAMS, "opt": tx.init(PARAMS)})
  with ocp.StandardCheckpointer() as ckptr:
    restored = ckptr.restore(tmp_path / "ckpt", target)
  assert isinstance(restored["opt"], shift.MultiStageState)
  assert int(restored["opt"].stage) == stage
  want, _, _ = run(tx, 3, state=state, params=params)
  got, _, _ = run(tx, 3, state=restored["opt"], params=restored["params"])
  assert_trees_equal(got, want)


def test_schedule_from_dict():
  sched = shift.ShiftSchedule.from_dict({
      "loops": (1, 3),
      "criterion": {"kind": "scp", "delta1": 0.02, "patience": 2, "every": 50},
      "moments": "reset",
      "lr": "rewarm",
  })
  assert sched.loops == (1, 3) and sched.num_stages == 2
  assert sched.criteria == (shift_criteria.Scp(delta1=0.02, patience=2, every=50),)
  assert (sched.moments, sched.lr) == ("reset", "rewarm")

  sched = shift.ShiftSchedule.from_dict({
      "loops": [1, 2, 4],
      "criterion": [{"kind": "fixed_step", "step": 100}, {"kind": "budget_fraction",
                                                          "fraction": 0.5}],
  }, total_steps=1000)
  assert sched.loops == (1, 2, 4) and (sched.moments, sched.lr) == ("keep", "keep")
  assert sched.criteria == (shift_criteria.FixedStep(step=100),
                            shift_criteria.BudgetFraction(fraction=0.5, total_steps=1000))

  one_for_all = shift.ShiftSchedule.from_dict(
      {"loops": (1, 2, 4), "criterion": {"kind": "simple_acc"}})
  assert one_for_all.criteria == (shift_criteria.SimpleAcc(),) * 2

  config = ml_collections.ConfigDict(
      {"loops": (1, 3), "criterion": {"kind": "scp", "signal": "eval_loss", "delta2": 0.5}})
  assert shift.ShiftSchedule.from_dict(config).criteria == (
      shift_criteria.Scp(signal="eval_loss", delta2=0.5),)


@pytest.mark.parametrize("d, match", [
    ({"loops": (1, 3), "criterion": {"kind": "scp"}, "moments": "zero"},
     r"shift\.moments='zero'.*'keep', 'reset'"),
    ({"loops": (1, 3), "criterion": {"kind": "scp"}, "lr": "warm"},
     r"shift\.lr='warm'.*'keep', 'rewarm'"),
    ({"loops": (1, 3), "criterion": {"kind": "scp"}, "loop": 3}, r"shift key='loop'.*'loops'"),
    ({"loops": (3,), "criterion": {"kind": "scp"}}, r"shift\.loops=.*at least two"),
    ({"loops": (1, 0), "criterion": {"kind": "scp"}}, r"shift\.loops=.*>= 1"),
    ({"criterion": {"kind": "scp"}}, r"shift\.loops is required"),
    ({"loops": (1, 3)}, r"shift\.criterion is required.*scp"),
    ({"loops": (1, 3), "criterion": {"kind": "plateau"}},
     r"shift\.criterion\[0\]\.kind='plateau'.*'fixed_step'"),
    ({"loops": (1, 3), "criterion": {"kind": "scp", "delta": 1}},
     r"shift\.criterion\[0\] key='delta'.*'delta1'"),
    ({"loops": (1, 3), "criterion": {"kind": "scp", "streak": 1}},
     r"shift\.criterion\[0\] key='streak'"),  # running state is not a setting
    ({"loops": (1, 3), "criterion": {"kind": "scp", "signal": "loss"}},
     r"scp\.signal='loss'.*'train_loss'"),
    ({"loops": (1, 3), "criterion": {"kind": "scp", "patience": 0}}, r"scp\.patience=0"),
    ({"loops": (1, 2, 4), "criterion": [{"kind": "scp"}]}, r"list of 2 dicts"),
    ({"loops": (1, 3), "criterion": {"kind": "budget_fraction", "fraction": 0.5}},
     r"total_steps is required"),
    ({"loops": (1, 3), "criterion": {"kind": "budget_fraction", "fraction": 1.5,
                                     "total_steps": 10}}, r"fraction=1\.5"),
])
def test_schedule_from_dict_errors_name_the_key(d, match):
  with pytest.raises(errors.ConfigError, match=match):
    shift.ShiftSchedule.from_dict(d)
  assert issubclass(errors.ConfigError, ValueError)
