"""Stablemax cross-entropy (Prieto et al., "Grokking at the Edge of Numerical Stability",
arXiv 2501.04697), the output normaliser of the TRM and HRM code.

stablemax(x)_i = s(x_i) / sum_j s(x_j) with s(x) = x + 1 for x >= 0 and 1 / (1 - x) for
x < 0: it grows linearly instead of exponentially, so logits cannot run away to make the
softmax saturate. Since log stablemax(x) = log_softmax(log s(x)), a token task trains on
stablemax by feeding log s(logits) to its ordinary softmax cross-entropy (`StablemaxLoss`);
argmax, and so accuracy, are unchanged (log s is increasing). In float32 (the reference
computes it in float64).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from looped_jax.tasks import Task


def log_s(logits: jax.Array) -> jax.Array:
  """log s(x), elementwise, in at least float32: log1p(x) for x >= 0, -log1p(-x) for x < 0."""
  x = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  positive = x >= 0
  # Each branch sees only its own side (where, not maximum: a gradient of 1, not 1/2, at 0).
  return jnp.where(positive, jnp.log1p(jnp.where(positive, x, 0.0)),
                   -jnp.log1p(-jnp.where(positive, 0.0, x)))


def log_stablemax(logits: jax.Array, axis: int = -1) -> jax.Array:
  """log stablemax over `axis`."""
  return jax.nn.log_softmax(log_s(logits), axis=axis)


@dataclasses.dataclass(frozen=True)
class StablemaxLoss:
  """`task` with its loss and metrics computed on stablemax instead of softmax probabilities.

  Everything else (shapes, sampling, names) is the task's own.
  """

  task: Task

  def __getattr__(self, name: str) -> Any:
    return getattr(self.task, name)

  def loss(self, outputs, batch):
    return self.task.loss(log_s(outputs), batch)

  def metrics(self, outputs, batch):
    return self.task.metrics(log_s(outputs), batch)


def loss_task(task: Task, cross_entropy: str) -> Task:
  """The task whose loss a run trains on (`train.cross_entropy`)."""
  return task if cross_entropy == "softmax" else StablemaxLoss(task)
