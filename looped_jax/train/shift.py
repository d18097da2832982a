"""SHIFT: one parameter set trained in stages of growing loop count (docs/papers.md, "Gong et al.").

Stage k trains with loop count `ShiftSchedule.loops[k]` (e.g. 1 then 3). The optimizer
is one optax transform, `multi_stage(stages)`, whose state holds the inner state of every
stage, so its tree (structure, shapes, dtypes) is the same in every stage and a
checkpoint written in any stage restores into a freshly initialised state. The host
moves to the next stage with `switch_stage` when a criterion from `shift_criteria` fires.

Steps. `count` is the global number of updates. Schedules inside the stage transforms
(`optax.scale_by_schedule`, an `adam(learning_rate=schedule)`, `inject_hyperparams`) read
their own step counters; `switch_stage` sets those counters in the new stage to `count`
(lr="keep": the global schedule continues) or to 0 (lr="rewarm": the schedule restarts
from its step 0, i.e. it becomes a function of the step inside the stage).

Memory: the state holds one inner optimizer state per stage (two Adam states for a
two-stage SHIFT run with Adam).

Use from a trainer (one jitted step per stage, as the loop count is static anyway):

  sched = ShiftSchedule.from_dict(config.shift, total_steps=config.steps)
  tx = multi_stage([make_optimizer(config) for _ in sched.loops])
  steps = [jit(partial(train_step, loops=L, shift_stage=k), donate_argnums=(0, 1))
           for k, L in enumerate(sched.loops)]  # train_step: tx.update(..., shift_stage=k)
  stage = int(current_stage(opt_state))       # after init or restore
  crit = restored JSON -> shift_criteria.from_dict, else sched.criteria[stage] (if any)
  for step in range(start + 1, total + 1):    # step == int(opt_state.count) after the update
    params, opt_state, m = steps[stage](params, opt_state, batch(step))
    if stage + 1 < sched.num_stages:
      crit, fire = crit.update(step, {"train_loss": m["loss"], "grad_norm": m["grad_norm"]})
      if fire:
        opt_state = switch_stage(opt_state, stage + 1, moments=sched.moments, lr=sched.lr)
        stage += 1; crit = sched.criteria[stage] if stage + 1 < sched.num_stages else None
  checkpoint: (params, opt_state) with orbax; crit.to_dict() as JSON beside it.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from looped_jax import errors
from looped_jax.shift_criteria import LR_MODES, MOMENTS, ShiftSchedule  # noqa: F401  (re-exported)


class MultiStageState(NamedTuple):
  """State of `multi_stage`; every leaf is always present, whatever the stage."""

  count: jax.Array  # int32 []: updates applied so far, all stages together
  stage: jax.Array  # int32 []: index of the active stage
  stage_start: jax.Array  # int32 []: `count` when the active stage began
  inner: tuple[optax.OptState, ...]  # inner state of stage k at position k


def multi_stage(
    stages: Sequence[optax.GradientTransformation],
) -> optax.GradientTransformationExtraArgs:
  """One transform that applies `stages[state.stage]` and leaves the others' states alone.

  `update(updates, state, params, *, shift_stage=None, **extra_args)`:
    shift_stage=None: the active stage is read from the (possibly traced) state with
      `lax.switch`, so one jitted step serves every stage. XLA copies the inactive
      stages' states through the conditional on every step.
    shift_stage=k (a Python int): the step is compiled for stage k and applies
      `stages[k]` with no conditional, the inactive states passing through untouched.
      If `state.stage != k` at run time every update is NaN, so a stale host-side stage
      cannot go unnoticed.
  Other extra arguments go to the active stage. Keep `multi_stage` outermost (put
  clipping etc. inside each stage) so that the optimizer state is the `MultiStageState`.

  Numerics: the active stage computes exactly what `stages[k].update` computes on the
  same inputs. Fused into one jit with the gradient computation, XLA may fuse across a
  plain transform but not across `lax.switch`, so such steps can differ from a plain
  optimizer by rounding (about one ulp).

  Args:
    stages: one transform per stage, all initialised from the same params.

  Returns:
    A GradientTransformationExtraArgs whose state is a `MultiStageState` in stage 0.
  """
  if not stages:
    raise ValueError("multi_stage needs at least one stage transform.")
  stages = tuple(optax.with_extra_args_support(s) for s in stages)

  def init_fn(params):
    zero = lambda: jnp.zeros([], jnp.int32)  # one buffer each, so the state can be donated
    return MultiStageState(count=zero(), stage=zero(), stage_start=zero(),
                           inner=tuple(s.init(params) for s in stages))

  def apply(k, updates, inner, params, extra_args):
    """Stage k's update; returns the updates and all inner states with k's replaced."""
    new_updates, new_k = stages[k].update(updates, inner[k], params, **extra_args)
    # Keep the init dtypes: lax.switch needs equal branch types, checkpoints a fixed tree.
    new_k = jax.tree.map(lambda new, old: jnp.asarray(new, old.dtype), new_k, inner[k])
    return new_updates, inner[:k] + (new_k,) + inner[k + 1:]

  def update_fn(updates, state, params=None, *, shift_stage=None, **extra_args):
    if shift_stage is None:
      branches = [functools.partial(apply, k, updates, params=params, extra_args=extra_args)
                  for k in range(len(stages))]
      new_updates, inner = jax.lax.switch(state.stage, branches, state.inner)
    else:
      k = operator.index(shift_stage)
      if not 0 <= k < len(stages):
        raise ValueError(f"shift_stage={k} is out of range; there are {len(stages)} stages.")
      new_updates, inner = apply(k, updates, state.inner, params, extra_args)
      new_updates = jax.tree.map(lambda u: jnp.where(state.stage == k, u, jnp.nan), new_updates)
    return new_updates, state._replace(count=optax.safe_increment(state.count), inner=inner)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def current_stage(state: MultiStageState) -> jax.Array:
  """The active stage index (int32 scalar; `int(...)` on the host)."""
  return state.stage


def stage_step(state: MultiStageState) -> jax.Array:
  """Updates applied since the active stage began (int32 scalar)."""
  return state.count - state.stage_start


def switch_stage(state: MultiStageState, new_stage: int | jax.Array, *,
                 moments: str = "keep", lr: str = "keep") -> MultiStageState:
  """Moves `state` forward to stage `new_stage`; pure, usable inside or outside jit.

  moments="keep": the new stage's inner state becomes a copy of the previous stage's
    whole inner state: Adam's mu/nu *and* its bias-correction count, momentum traces and
    any other accumulators. The two inner states must have the same tree structure,
    shapes and dtypes (always true when the stages use the same optimizer on the shared
    params). When the stages share one transform and lr="keep", training continues
    exactly as if a single optimizer had run straight through the switch.
  moments="reset": the new stage starts from its own inner state as `init` made it; a
    stage never runs before it is entered, so this is exactly `stages[new].init(params)`
    (with the initial params, which matters only to wrappers that store params, e.g.
    lookahead).
  lr="keep": the new stage's schedule counters are set to the global `count`.
  lr="rewarm": they are set to 0, so its schedule restarts from its step 0.

  Stages only move forward. With concrete stages a switch to the current or an earlier
  stage raises ValueError; with traced stages it returns `state` unchanged.

  Args:
    state: a `MultiStageState`.
    new_stage: index of the stage to enter (int or int scalar array).
    moments: "keep" | "reset".
    lr: "keep" | "rewarm".

  Returns:
    The state in stage `new_stage`, with `stage_start == count`.
  """
  errors.check_choice("moments", moments, MOMENTS)
  errors.check_choice("lr", lr, LR_MODES)
  n = len(state.inner)
  old, new = _concrete_int(state.stage), _concrete_int(new_stage)
  if new is not None and not 0 <= new < n:
    raise ValueError(f"new_stage={new} is out of range; there are {n} stages.")
  if old is not None and new is not None and new <= old:
    raise ValueError(f"switch_stage moves forward only: stage {old} -> {new}.")
  return _switch(state, new_stage, old=old, new=new, moments=moments, lr=lr)


# Jitted so that no two leaves of the result share a buffer (`count` and `stage_start`, or
# copied moments, would outside jit): donating such a state fails.
@functools.partial(jax.jit, static_argnames=("old", "new", "moments", "lr"))
def _switch(state, new_stage, *, old, new, moments, lr):
  """switch_stage's body; `old` / `new` are the stage indices when known, else None."""
  n = len(state.inner)
  new_arr = jnp.asarray(new_stage, jnp.int32)
  schedule_step = state.count if lr == "keep" else jnp.zeros_like(state.count)

  inner = list(state.inner)
  for j in [new] if new is not None else range(0 if old is None else old + 1, n):
    entered = inner[j]  # "reset": stage j has not run, so this is its init state
    if moments == "keep":
      for i in [old] if old is not None else range(j):
        _check_same_layout(inner[i], inner[j], i, j)
        entered = inner[i] if old is not None else optax.tree.where(
            state.stage == i, inner[i], entered)
    entered = _with_schedule_step(entered, schedule_step)
    inner[j] = entered if new is not None else optax.tree.where(new_arr == j, entered, inner[j])

  switched = MultiStageState(count=state.count, stage=new_arr, stage_start=state.count,
                             inner=tuple(inner))
  if old is not None and new is not None:
    return switched
  # Traced stages: a switch that does not move forward leaves the state unchanged.
  return optax.tree.where(new_arr > state.stage, switched, state)


def _concrete_int(x) -> int | None:
  """`int(x)` when x is known outside tracing, else None."""
  try:
    return int(x)
  except jax.errors.ConcretizationTypeError:
    return None


def _check_same_layout(src, dst, i: int, j: int) -> None:
  """Raises unless `src` and `dst` have equal structure, shapes and dtypes."""
  layout = lambda t: (jax.tree.structure(t),
                      [(jnp.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(t)])
  if layout(src) != layout(dst):
    raise ValueError(
        f"moments='keep' copies stage {i}'s optimizer state into stage {j}, but their state "
        "trees differ (different optimizers?); use moments='reset'.")


def _with_schedule_step(tree, step: jax.Array):
  """Sets every schedule step counter in an optax state tree to `step`."""
  set_count = lambda node: node._replace(count=jnp.asarray(step, jnp.result_type(node.count)))

  def fix(node):
    if isinstance(node, optax.ScaleByScheduleState):
      return set_count(node)
    if isinstance(node, optax.InjectStatefulHyperparamsState):
      # Its hyperparams_states hold one schedule state (with a `count`) per scheduled value.
      hp_states = {k: set_count(v) if hasattr(v, "count") else v
                   for k, v in node.hyperparams_states.items()}
      return set_count(node)._replace(hyperparams_states=hp_states,
                                      inner_state=_with_schedule_step(node.inner_state, step))
    return node

  schedule_types = (optax.ScaleByScheduleState, optax.InjectStatefulHyperparamsState)
  return jax.tree.map(fix, tree, is_leaf=lambda x: isinstance(x, schedule_types))
