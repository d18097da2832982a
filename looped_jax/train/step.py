"""The loss and the jitted train / eval steps.

State is a plain dict {"step": int32 [], "params": ..., "opt_state": ...}. Batches are a pure
function of (data key, step), sampled by a jitted function whose output is split over the
mesh's data axis, so 1 device and 8 devices see the same numbers.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from looped_jax import models
from looped_jax.tasks import Batch, Task


def loss_fn(params, batch: Batch, *, graphdef: nnx.GraphDef, task: Task, loops: int,
            grad_loops: int, loss_on: str, dropout_key=None) -> jax.Array:
  """Training loss at `loops` loops.

  loss_on="last": the task loss of the final read-out (gradients through the last
  `grad_loops` loops, all when 0). loss_on="window": the mean task loss over the read-outs
  of the last `grad_loops` loops (Yang et al.'s truncated loop-window loss, PAPERS.md §2.2).
  """
  per_loop = loss_on == "window"
  outputs = models.apply(graphdef, params, batch["inputs"], loops, grad_loops=grad_loops,
                         per_loop=per_loop, dropout_key=dropout_key)
  if per_loop:
    return jnp.mean(jax.vmap(lambda out: task.loss(out, batch))(outputs))
  return task.loss(outputs, batch)


def make_train_step(graphdef, task: Task, optimizer: optax.GradientTransformation, *,
                    grad_loops: int, loss_on: str, dropout: bool, seed: int) -> Callable:
  """(state, batch, loops, shift_stage=None) -> (state, metrics).

  `loops` and `shift_stage` are static: one compile per value. `shift_stage` (SHIFT only) is
  passed to the `shift.multi_stage` optimizer, which then applies that stage's transform.
  """

  def train_step(state, batch, loops: int, shift_stage: int | None = None):
    key = jax.random.fold_in(jax.random.key(seed), state["step"]) if dropout else None
    loss, grads = jax.value_and_grad(loss_fn)(
        state["params"], batch, graphdef=graphdef, task=task, loops=loops,
        grad_loops=grad_loops, loss_on=loss_on, dropout_key=key)
    extra = {} if shift_stage is None else {"shift_stage": shift_stage}
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"], **extra)
    params = optax.apply_updates(state["params"], updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
    return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics

  return train_step


def make_eval_step(graphdef, task: Task) -> Callable:
  """(params, batch, loops) -> metrics as (weighted_sum, weight) pairs."""

  def eval_step(params, batch, loops: int):
    outputs = models.apply(graphdef, params, batch["inputs"], loops)
    return task.metrics(outputs, batch)

  return eval_step


def loops_at(step: int, num_loops: int, curriculum: Any) -> int:
  """Loop-count curriculum as a pure function of the step (Yang: T -> b, +2 every 500)."""
  if not curriculum.every:
    return num_loops
  return int(min(num_loops, max(1, curriculum.start + curriculum.increment * (step // curriculum.every))))


def combine(metric_list: list[dict]) -> dict[str, float]:
  """Sums (weighted_sum, weight) pairs over batches -> means; groups never seen are dropped."""
  totals: dict[str, list[float]] = {}
  for metrics in metric_list:
    for name, (s, w) in metrics.items():
      acc = totals.setdefault(name, [0.0, 0.0])
      acc[0] += float(s)
      acc[1] += float(w)
  return {name: s / w for name, (s, w) in totals.items() if w > 0}
