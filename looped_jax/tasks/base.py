"""The task contract shared by every data generator.

A task is a small frozen dataclass. `sample(key, batch_size, step)` is a pure, jit-able
function of its arguments: the same key gives the same batch on any device count, so a
resumed run needs no replay (curricula are functions of `step`, which may be traced).

Every batch is a dict of arrays with at least

  inputs   int32   [B, n]             token ids            (input_kind == "tokens")
           float32 [B, n, input_dim]  prompt vectors       (input_kind == "vectors")
  targets  int32   [B, n]             class per position   (tokens)
           float32 [B, n]             regression target    (vectors)
  weights  float32 [B, n]             loss weight per position; 0 = not scored

and optionally

  groups   int32   [B]                group id per example, named by `group_names`
                                      (e.g. 0 = "simple", 1 = "complex")

plus task-specific arrays. The model maps `inputs` to `outputs` [B, n, output_dim]
(logits for token tasks, predictions for vector tasks; regression uses channel 0).

`metrics` returns name -> (weighted_sum, weight) pairs so that results over several
batches combine exactly: value = sum(weighted_sum) / sum(weight).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

Batch = dict[str, jax.Array]
Metrics = dict[str, tuple[jax.Array, jax.Array]]


class Task:
  """Base class; subclasses are frozen dataclasses registered with `tasks.register`."""

  name: ClassVar[str] = ""
  input_kind: ClassVar[str] = "tokens"  # "tokens" | "vectors"
  group_names: ClassVar[tuple[str, ...]] = ()

  # Static shape information, read by the model builder.
  @property
  def seq_len(self) -> int:
    raise NotImplementedError

  @property
  def vocab_size(self) -> int:
    """Number of input token ids (tokens) or the input vector width (vectors)."""
    raise NotImplementedError

  @property
  def output_dim(self) -> int:
    """Number of classes per position (tokens) or 1 (scalar regression)."""
    raise NotImplementedError

  def sample(self, key: jax.Array, batch_size: int, step: jax.Array | int = 0) -> Batch:
    raise NotImplementedError

  def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
    """Scalar training loss of `outputs` [B, n, output_dim] on `batch`."""
    raise NotImplementedError

  def metrics(self, outputs: jax.Array, batch: Batch) -> Metrics:
    raise NotImplementedError

  def held_out(self) -> "Task":
    """The task that evaluation samples from.

    A task with a finite training pool returns one with a disjoint pool (e.g. drawn with
    another seed, or a test file); tasks generated on the fly return self.
    """
    return self


def weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1e-9)


def per_group(name: str, values: jax.Array, weights: jax.Array, batch: Batch,
              group_names: tuple[str, ...]) -> Metrics:
  """`name` over all examples plus `name/<group>` for each group. values, weights: [B, n]."""
  out = {name: (jnp.sum(values * weights), jnp.sum(weights))}
  if group_names and "groups" in batch:
    for gid, gname in enumerate(group_names):
      member = (batch["groups"] == gid).astype(weights.dtype)[:, None]
      out[f"{name}/{gname}"] = (jnp.sum(values * weights * member), jnp.sum(weights * member))
  return out


class TokenTask(Task):
  """Next-token style classification per position: cross-entropy loss, accuracy metrics."""

  input_kind: ClassVar[str] = "tokens"

  def loss(self, outputs, batch):
    ce = token_cross_entropy(outputs, batch["targets"])
    return weighted_mean(ce, batch["weights"])

  def metrics(self, outputs, batch):
    ce = token_cross_entropy(outputs, batch["targets"])
    correct = (jnp.argmax(outputs, -1) == batch["targets"]).astype(jnp.float32)
    w = batch["weights"]
    out = per_group("loss", ce, w, batch, self.group_names)
    out |= per_group("accuracy", correct, w, batch, self.group_names)
    # Whole-sequence accuracy: every scored position right (the extrapolation metric).
    wrong = jnp.sum((1.0 - correct) * w, axis=1)
    scored = (jnp.sum(w, axis=1) > 0).astype(jnp.float32)
    seq_ok = (wrong == 0).astype(jnp.float32)[:, None]
    out |= per_group("sequence_accuracy", seq_ok, scored[:, None], batch, self.group_names)
    return out


class RegressionTask(Task):
  """Scalar regression per position read from output channel 0: squared-error loss."""

  input_kind: ClassVar[str] = "vectors"

  @property
  def output_dim(self) -> int:
    return 1

  def loss(self, outputs, batch):
    err = jnp.square(outputs[..., 0] - batch["targets"])
    return weighted_mean(err, batch["weights"])

  def metrics(self, outputs, batch):
    err = jnp.square(outputs[..., 0] - batch["targets"])
    return per_group("loss", err, batch["weights"], batch, self.group_names)


def token_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """[B, n, C] float, [B, n] int -> [B, n] cross-entropy in at least float32.

  bfloat16 logits are upcast; float64 ones (float64 Hessians) keep their precision.
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)
  return -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]


def dataclass_fields(cls) -> tuple[str, ...]:
  return tuple(f.name for f in dataclasses.fields(cls))
