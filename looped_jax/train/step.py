"""The loss and the jitted train / eval steps.

State is a plain dict {"step": int32 [], "params": ..., "opt_state": ...}. Batches are a pure
function of (data key, step), sampled by a jitted function whose output is split over the
mesh's data axis, so 1 device and 8 devices see the same numbers.

Losses (`training_loss` picks one from `LossOptions`): the plain loss at a static loop count
(last loop, loop window or all loops, with loop weights); Bansal's progressive loss; and
Geiping's random depth with truncated backprop. The last two draw their loop counts inside the
step from (seed, step) (`loop_sampling`) and run them as traced counts (`forward_dynamic`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from looped_jax import models
from looped_jax.tasks import Batch, Task
from looped_jax.tasks.base import token_cross_entropy, weighted_mean
from looped_jax.train import loop_sampling


@dataclasses.dataclass(frozen=True)
class LossOptions:
  """The `train` settings that shape the training loss (see looped_jax/config.py).

  loss_on: last | window (last grad_loops loops) | all (every loop's read-out) | steps
    (loop-aligned: loop t learns reasoning step t, `loop_aligned_losses`).
  loop_weight_power p: window/all weight the read-out of loop l (1-based) by l^p (0 = mean).
  progressive: Bansal's loss (1 - alpha) * plain + alpha * L_prog.
  random_loops: none | poisson_lognormal (mean r̄, sigma) | uniform (low..high), with
    grad_loops as the backprop depth k.
  """

  grad_loops: int = 0
  loss_on: str = "last"
  loop_weight_power: float = 0.0
  progressive: bool = False
  progressive_alpha: float = 1.0
  random_loops: str = "none"
  random_loops_mean: float = 1.0
  random_loops_sigma: float = 0.5
  random_loops_low: int = 1
  random_loops_high: int = 1
  exit_gate: bool = False  # Ouro's objective over every loop (model.exit_gate)
  exit_gate_entropy: float = 0.0

  @classmethod
  def from_config(cls, config: Any) -> "LossOptions":
    t, loops = config.train, config.model.num_loops
    return cls(grad_loops=t.grad_loops, loss_on=t.loss_on,
               loop_weight_power=float(t.loop_weight_power), progressive=bool(t.progressive),
               progressive_alpha=float(t.progressive_alpha), random_loops=t.random_loops,
               random_loops_mean=float(t.random_loops_mean or loops),
               random_loops_sigma=float(t.random_loops_sigma),
               random_loops_low=int(t.random_loops_low),
               random_loops_high=int(t.random_loops_high or loops),
               exit_gate=bool(config.model.exit_gate),
               exit_gate_entropy=float(t.exit_gate_entropy))


def _loop_weighted_mean(losses: jax.Array, index: jax.Array, power: float,
                        mask: jax.Array | None = None) -> jax.Array:
  """Mean of per-loop losses [T] weighted by index^power (index: 1-based loop numbers [T])."""
  if power == 0.0 and mask is None:
    return jnp.mean(losses)
  w = jnp.power(index.astype(jnp.float32), power)
  w = w if mask is None else w * mask
  return jnp.sum(w * losses) / jnp.sum(w)


def loss_fn(params, batch: Batch, *, graphdef: nnx.GraphDef, task: Task, loops: int,
            grad_loops: int, loss_on: str, dropout_key=None, state_key=None,
            loop_weight_power: float = 0.0) -> jax.Array:
  """Training loss at `loops` loops (static).

  loss_on="last": the task loss of the final read-out (gradients through the last
  `grad_loops` loops, all when 0). loss_on="window": the mean task loss over the read-outs
  of the last `grad_loops` loops (Yang et al.'s truncated loop-window loss; docs/papers.md,
  "Yang et al.").
  loss_on="all": the mean over every loop's read-out (intermediate supervision; all loops
  get gradients). loss_on="steps": loop-aligned supervision, `loop_aligned_losses`, every
  loop with gradients. window/all/steps weight loop l by l^loop_weight_power.
  """
  per_loop = loss_on in ("window", "all", "steps")
  window = 0 if loss_on in ("all", "steps") else grad_loops  # last / window: truncated
  outputs = models.apply(graphdef, params, batch["inputs"], loops, grad_loops=window,
                         per_loop=per_loop, dropout_key=dropout_key, state_key=state_key)
  if per_loop:
    if loss_on == "steps":
      losses = loop_aligned_losses(outputs, batch, task)
    else:
      losses = jax.vmap(lambda out: task.loss(out, batch))(outputs)  # [T]
    index = jnp.arange(loops - losses.shape[0] + 1, loops + 1)
    return _loop_weighted_mean(losses, index, loop_weight_power)
  return task.loss(outputs, batch)


def loop_aligned_losses(outputs: jax.Array, batch: Batch, task: Task) -> jax.Array:
  """Per-loop losses [L] of loop-aligned supervision (RELAY, Yu et al., arXiv 2502.08482).

  outputs: the read-out of every loop [L, B, n, C]. Loop t (1-based) t < L learns the task's
  reasoning step min(t, S) (batch["step_targets"] / ["step_weights"], [B, S, n]: what an
  iterative algorithm knows after that many steps); the last loop learns the answer
  (task.loss). With L < S the steps past L - 1 are not supervised; with L > S the loops
  past S learn the last step, which agrees with the answer on the positions it scores.
  """
  num_loops, num_steps = outputs.shape[0], batch["step_targets"].shape[1]
  step_of_loop = jnp.minimum(jnp.arange(num_loops - 1), num_steps - 1)  # [L - 1]
  targets = jnp.take(batch["step_targets"], step_of_loop, axis=1)  # [B, L - 1, n]
  weights = jnp.take(batch["step_weights"], step_of_loop, axis=1)
  ce = token_cross_entropy(jnp.moveaxis(outputs[:-1], 0, 1), targets)  # [B, L - 1, n]
  steps = jnp.sum(ce * weights, axis=(0, 2)) / jnp.maximum(jnp.sum(weights, axis=(0, 2)), 1e-9)
  return jnp.concatenate([steps, task.loss(outputs[-1], batch)[None]])


def progressive_loss(params, batch: Batch, *, graphdef: nnx.GraphDef, task: Task,
                     warm_loops: jax.Array, active_loops: jax.Array, max_loops: int,
                     dropout_key=None, state_key=None) -> jax.Array:
  """Bansal's L_prog: loss after n detached warm-start loops then k loops with gradient.

  warm_loops n, active_loops k: traced, n + k <= max_loops (the masked window is m slots).
  """
  model = models.merge(graphdef, params)
  outputs = model.forward_dynamic(batch["inputs"], warm_loops=warm_loops,
                                  active_loops=active_loops, window=max_loops,
                                  dropout_key=dropout_key, state_key=state_key)
  return task.loss(outputs, batch)


def random_depth_loss(params, batch: Batch, *, graphdef: nnx.GraphDef, task: Task,
                      count: jax.Array, depth: int, loss_on: str, loop_weight_power: float = 0.0,
                      dropout_key=None, state_key=None) -> jax.Array:
  """Loss at a traced loop count r with truncated backprop depth k (Geiping).

  max(r - k, 0) loops run detached, min(k, r) with gradient. loss_on="window" averages the
  read-outs of the loops with gradient (weighted by loop number^power), "last" takes the final.
  """
  warm, active = loop_sampling.truncated_split(count, depth)
  model = models.merge(graphdef, params)
  per_loop = loss_on == "window"
  outputs = model.forward_dynamic(batch["inputs"], warm_loops=warm, active_loops=active,
                                  window=depth, per_loop=per_loop, dropout_key=dropout_key,
                                  state_key=state_key)
  if not per_loop:
    return task.loss(outputs, batch)
  outs, mask = outputs
  losses = jax.vmap(lambda out: task.loss(out, batch))(outs)
  index = warm + jnp.arange(1, depth + 1)
  return _loop_weighted_mean(losses, index, loop_weight_power, mask)


def exit_gate_loss(params, batch: Batch, *, graphdef: nnx.GraphDef, loops: int, beta: float,
                   dropout_key=None, state_key=None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Ouro's entropy-regularised objective (arXiv 2510.25741) for a token task, per position:

    sum_t p(t) * CE_t  -  beta * H(p),   p(t) = lambda_t * prod_{j<t} (1 - lambda_j)  (t < L),
                                         p(L) = prod_{j<L} (1 - lambda_j)

  lambda_t = sigmoid(exit logit after loop t), CE_t the cross-entropy of loop t's read-out;
  weighted mean over positions. Extra metrics: the expected exit loop sum_t t * p(t) and
  the last loop's cross-entropy."""
  model = models.merge(graphdef, params)
  states = model.loop_states(batch["inputs"], loops, dropout_key=dropout_key,
                             state_key=state_key)  # [L, B, n, D]
  ce = jax.vmap(lambda h: token_cross_entropy(model.readout(h), batch["targets"]))(states)
  z = jax.vmap(model.exit_logits)(states)  # [L, B, n]
  log_stay = jnp.cumsum(jax.nn.log_sigmoid(-z), axis=0)  # log prod_{j<=t} (1 - lambda_j)
  before = jnp.concatenate([jnp.zeros_like(z[:1]), log_stay[:-1]])  # log prod_{j<t}
  log_p = jnp.concatenate([jax.nn.log_sigmoid(z[:-1]) + before[:-1], before[-1:]])
  p = jnp.exp(log_p)
  entropy = -jnp.sum(p * log_p, axis=0)
  w = batch["weights"]
  loss = weighted_mean(jnp.sum(p * ce, axis=0) - beta * entropy, w)
  depth = jnp.sum(p * jnp.arange(1, loops + 1, dtype=p.dtype)[:, None, None], axis=0)
  return loss, {"expected_exit_loop": weighted_mean(depth, w),
                "last_loop_loss": weighted_mean(ce[-1], w)}


def training_loss(params, batch: Batch, *, graphdef: nnx.GraphDef, task: Task, loops: int,
                  options: LossOptions, seed: int, step: jax.Array, dropout_key=None,
                  state_key=None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The configured training loss at `step` -> (loss, extra metrics).

  Random counts come from `loop_sampling.step_key(seed, step, tag)`: pure in (seed, step).
  """
  o = options
  if o.exit_gate:
    return exit_gate_loss(params, batch, graphdef=graphdef, loops=loops,
                          beta=o.exit_gate_entropy, dropout_key=dropout_key, state_key=state_key)
  common = dict(graphdef=graphdef, task=task, dropout_key=dropout_key, state_key=state_key)
  if o.random_loops != "none":
    count = loop_sampling.sample_count(
        loop_sampling.step_key(seed, step, loop_sampling.COUNT_TAG), o.random_loops,
        mean=o.random_loops_mean, sigma=o.random_loops_sigma, low=o.random_loops_low,
        high=o.random_loops_high)
    loss = random_depth_loss(params, batch, count=count, depth=o.grad_loops, loss_on=o.loss_on,
                             loop_weight_power=o.loop_weight_power, **common)
    return loss, {"loops_drawn": count.astype(jnp.float32)}
  plain = functools.partial(loss_fn, params, batch, loops=loops, grad_loops=o.grad_loops,
                            loss_on=o.loss_on, loop_weight_power=o.loop_weight_power, **common)
  if not o.progressive:
    return plain(), {}
  n, k = loop_sampling.progressive_counts(
      loop_sampling.step_key(seed, step, loop_sampling.PROGRESSIVE_TAG), loops)
  prog = progressive_loss(params, batch, warm_loops=n, active_loops=k, max_loops=loops, **common)
  alpha = o.progressive_alpha
  # alpha = 1 (Bansal's prefix sums) skips the plain term's compute; alpha = 0 gives the plain
  # loss exactly (1 * plain + 0 * prog).
  loss = prog if alpha == 1.0 else (1.0 - alpha) * plain() + alpha * prog
  return loss, {"loops_drawn": (n + k).astype(jnp.float32)}


def make_train_step(graphdef, task: Task, optimizer: optax.GradientTransformation, *,
                    options: LossOptions, dropout: bool, seed: int, ema: float = 0.0) -> Callable:
  """(state, batch, loops, shift_stage=None) -> (state, metrics).

  A state with "ema" gets its weight average updated with decay `ema` after each update.
  `loops` and `shift_stage` are static: one compile per value. `shift_stage` (SHIFT only) is
  passed to the `shift.multi_stage` optimizer, which then applies that stage's transform.
  Random loop counts (progressive loss, random depth) are traced: no extra compiles.
  """

  def train_step(state, batch, loops: int, shift_stage: int | None = None):
    step = state["step"]
    key = loop_sampling.step_key(seed, step) if dropout else None
    state_key = loop_sampling.step_key(seed, step, loop_sampling.STATE_TAG)
    (loss, extra), grads = jax.value_and_grad(training_loss, has_aux=True)(
        state["params"], batch, graphdef=graphdef, task=task, loops=loops, options=options,
        seed=seed, step=step, dropout_key=key, state_key=state_key)
    opt_extra = {} if shift_stage is None else {"shift_stage": shift_stage}
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"], **opt_extra)
    params = optax.apply_updates(state["params"], updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)} | extra
    new_state = {"step": step + 1, "params": params, "opt_state": opt_state}
    if "ema" in state:
      new_state["ema"] = ema_update(state["ema"], params, ema)
    return new_state, metrics

  return train_step


def ema_update(average, params, decay: float):
  """average <- decay * average + (1 - decay) * params, leaf by leaf (train.ema)."""
  return jax.tree.map(lambda a, p: decay * a + (1.0 - decay) * p, average, params)


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
