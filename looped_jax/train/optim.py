"""Optimizer and learning-rate schedule from the `train` config section."""

from __future__ import annotations

from typing import Any

import optax


def learning_rate_schedule(t: Any) -> optax.Schedule:
  """The `train.schedule` of the config: constant, warmup_constant, warmup_cosine (to 0 at
  num_steps) or warmup_stable_decay (warm-up, constant, then linear to 0 over the last
  decay_steps; the "WSD" schedule)."""
  if t.schedule == "constant":
    return optax.constant_schedule(t.learning_rate)
  if t.schedule == "warmup_constant":
    return optax.join_schedules(
        [optax.linear_schedule(0.0, t.learning_rate, max(t.warmup_steps, 1)),
         optax.constant_schedule(t.learning_rate)], [t.warmup_steps])
  if t.schedule == "warmup_stable_decay":
    warmup, decay_start = t.warmup_steps, t.num_steps - t.decay_steps
    return optax.join_schedules(
        [optax.linear_schedule(0.0, t.learning_rate, max(warmup, 1)),
         optax.constant_schedule(t.learning_rate),
         optax.linear_schedule(t.learning_rate, 0.0, t.decay_steps)], [warmup, decay_start])
  return optax.warmup_cosine_decay_schedule(
      0.0, t.learning_rate, t.warmup_steps, max(t.num_steps, t.warmup_steps + 1))


def make_optimizer(t: Any) -> optax.GradientTransformation:
  """Global-norm clipping (if set) followed by Adam / AdamW / SGD on the schedule."""
  lr = learning_rate_schedule(t)
  if t.optimizer == "adam":
    opt = optax.adam(lr, b1=t.b1, b2=t.b2)
  elif t.optimizer == "adamw":
    opt = optax.adamw(lr, b1=t.b1, b2=t.b2, weight_decay=t.weight_decay)
  else:
    opt = optax.sgd(lr, momentum=t.b1 or None)
  if t.grad_clip > 0:
    opt = optax.chain(optax.clip_by_global_norm(t.grad_clip), opt)
  return opt
