"""Deep supervision with a carried state, learned halting and the halting evaluation.

The outer refinement loop of the Tiny Recursive Model (Jolicoeur-Martineau, arXiv 2510.04871)
and the Hierarchical Reasoning Model (Wang et al., arXiv 2506.21734). Each of the B batch
slots holds one example for up to N = `train.supervision_steps` optimizer steps:

  step s:  slots that halted take the new batch's example and restart from h_0;
           h <- model.num_loops loops from h (the model's own gradient window);
           loss = task loss of readout(h) on the slot's own targets
                  + w * BCE(q_halt(h), "every scored position is right")
                  [+ w * BCE(q_continue(h), HRM's bootstrapped target)];
           h is carried to step s + 1 detached; the slot halts after N steps, or when its
           halting head says so (q_halt > 0; q_halt > q_continue with the Q-learning target),
           except that with probability `halt_exploration` it must first run U{2..N} steps.

The carry {"data", "state", "steps", "halted"} is part of the train state, so a run restored
from a checkpoint continues exactly. The new batch is still sampled at every step as a pure
function of (data_seed, step); rows of slots that did not halt are simply not used (as in the
reference, which draws a batch per step and keeps only the halted slots' rows).

Losses: the task's own loss (a token-weighted mean over the batch; the reference averages
per sequence first, which is the same for puzzles of one size). The halting losses are means
over the batch (the reference sums them and divides by the batch size: the same).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from looped_jax import models
from looped_jax.tasks import Batch, Task
from looped_jax.train import loop_sampling
from looped_jax.train.step import ema_update

HALT_TAG = 0x4A17  # loop_sampling.step_key tag of the exploration draws


def initial_carry(task: Task, batch_size: int, state_width: int) -> dict[str, Any]:
  """Every slot halted (so the first step fills them all), zero data and states."""
  shapes = jax.eval_shape(lambda k: task.sample(k, batch_size), jax.random.key(0))
  seq_len = shapes["inputs"].shape[1]
  return {"data": {k: jnp.zeros(s.shape, s.dtype) for k, s in shapes.items()},
          "state": jnp.zeros((batch_size, seq_len, state_width), jnp.float32),
          "steps": jnp.zeros((batch_size,), jnp.int32),
          "halted": jnp.ones((batch_size,), bool)}


def _rows(mask: jax.Array, new: jax.Array, old: jax.Array) -> jax.Array:
  """Per batch row: new where mask [B] else old ([B, ...] each)."""
  return jnp.where(mask.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)


def sequence_correct(outputs: jax.Array, batch: Batch) -> jax.Array:
  """[B] bool: every scored position's argmax equals its target (token tasks)."""
  wrong = (jnp.argmax(outputs, -1) != batch["targets"]) & (batch["weights"] > 0)
  return ~jnp.any(wrong, axis=-1)


def halts(q: jax.Array, halt_target: str) -> jax.Array:
  """[B, 2] (q_halt, q_continue) logits -> [B] bool: the head says stop."""
  return q[:, 0] > (0.0 if halt_target == "correct" else q[:, 1])


def make_train_step(graphdef, task: Task, optimizer: optax.GradientTransformation, *,
                    supervision_steps: int, grad_loops: int, halting: bool, halt_target: str,
                    halt_loss_weight: float, halt_exploration: float, ema: float,
                    seed: int) -> Callable:
  """(state, batch, loops) -> (state, metrics); state holds "carry" (and "ema" if ema > 0)."""
  n_max = supervision_steps

  def loss_fn(params, data, fresh, carried, loops, new_steps):
    model = models.merge(graphdef, params)
    e = model.encode(data["inputs"])
    h = _rows(fresh, model.initial_state(e), carried.astype(e.dtype))
    h, _ = model.advance(h, e, loops, grad_loops=grad_loops)
    outputs = model.readout(h)
    task_loss = task.loss(outputs, data)
    aux = {"state": jax.lax.stop_gradient(h), "task_loss": task_loss}
    if task.input_kind == "tokens":  # halting target and train metric, computed once
      aux["correct"] = sequence_correct(jax.lax.stop_gradient(outputs), data)
    if not halting:
      return task_loss, aux
    q = model.halt_logits(h)
    halt_loss = jnp.mean(optax.sigmoid_binary_cross_entropy(q[:, 0],
                                                            aux["correct"].astype(jnp.float32)))
    aux |= {"q": jax.lax.stop_gradient(q), "halt_loss": halt_loss}
    if halt_target == "q_learning":
      # HRM: q_continue learns sigmoid(max Q) of the next step (its q_halt at the last step),
      # computed at the current parameters without gradient.
      h_next, _ = model.advance(jax.lax.stop_gradient(h), jax.lax.stop_gradient(e), loops)
      q_next = jax.lax.stop_gradient(model.halt_logits(h_next))
      last = new_steps >= n_max
      target = jax.nn.sigmoid(jnp.where(last, q_next[:, 0], jnp.max(q_next, axis=-1)))
      continue_loss = jnp.mean(optax.sigmoid_binary_cross_entropy(q[:, 1], target))
      aux["continue_loss"] = continue_loss
      halt_loss = halt_loss + continue_loss
    return task_loss + halt_loss_weight * halt_loss, aux

  def train_step(state, batch, loops: int):
    step, carry = state["step"], state["carry"]
    fresh = carry["halted"]
    data = {k: _rows(fresh, batch[k], carry["data"][k]) for k in carry["data"]}
    new_steps = jnp.where(fresh, 0, carry["steps"]) + 1
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"], data, fresh, carry["state"], loops, new_steps)
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)

    halted = new_steps >= n_max
    if halting:
      k_explore, k_min = jax.random.split(loop_sampling.step_key(seed, step, HALT_TAG))
      b = new_steps.shape[0]
      explore = jax.random.uniform(k_explore, (b,)) < halt_exploration
      min_steps = jnp.where(explore, jax.random.randint(k_min, (b,), 2, n_max + 1), 0)
      halted = halted | (halts(aux["q"], halt_target) & (new_steps >= min_steps))
    correct = aux.get("correct")
    new_state = {"step": step + 1, "params": params, "opt_state": opt_state,
                 "carry": {"data": data, "state": aux["state"].astype(jnp.float32),
                           "steps": new_steps, "halted": halted}}
    if "ema" in state:
      new_state["ema"] = ema_update(state["ema"], params, ema)
    ended = halted.astype(jnp.float32)
    count = jnp.sum(ended)
    # The examples that leave their slot at this step: what fraction, after how many steps,
    # how many fully right; (sum, weight) pairs, averaged over the examples of a log window.
    metrics = {"loss": loss, "task_loss": aux["task_loss"], "grad_norm": optax.tree.norm(grads),
               "halt/ended": jnp.mean(ended),
               "halt/steps": (jnp.sum(ended * new_steps), count)}
    if correct is not None:
      metrics["halt/sequence_accuracy"] = (jnp.sum(ended * correct), count)
    for name in ("halt_loss", "continue_loss"):
      if name in aux:
        metrics[f"halt/{name}"] = aux[name]
    return new_state, metrics

  return train_step


def make_halting_eval_step(graphdef, task: Task, *, loops_per_step: int, halt_target: str
                           ) -> Callable:
  """(params, batch, max_steps) -> metrics of the answers taken where the head halts.

  Each example runs supervision steps of `loops_per_step` loops from h_0 and keeps the
  read-out of the first step whose head says halt (or of step `max_steps`): task metrics of
  those answers plus "steps", the mean number of steps used.
  """

  def eval_step(params, batch, max_steps: int):
    model = models.merge(graphdef, params)
    e = model.encode(batch["inputs"])

    def supervision_step(carry, _):
      h, done, answer, steps = carry
      h = model.run_loops(h, e, loops_per_step)
      answer = _rows(done, answer, model.readout(h))
      steps = jnp.where(done, steps, steps + 1)
      return (h, done | halts(model.halt_logits(h), halt_target), answer, steps), None

    h0 = model.initial_state(e)
    b = h0.shape[0]
    answer = jnp.zeros((*h0.shape[:2], task.output_dim), jnp.float32)
    start = (h0, jnp.zeros((b,), bool), answer, jnp.zeros((b,), jnp.int32))
    (_, _, answer, steps), _ = jax.lax.scan(supervision_step, start, None, length=max_steps)
    metrics = task.metrics(answer, batch)
    return metrics | {"steps": (jnp.sum(steps.astype(jnp.float32)), jnp.float32(b))}

  return eval_step
