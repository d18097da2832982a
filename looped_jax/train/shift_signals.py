"""Switch signals that need their own device computation: the gradient cosine (Gong et al.'s
Theorem 3; docs/papers.md, "Gong et al.").

grad_cosine = cos(∇ L(θ; L_now), ∇ L(θ; L_next)) at the same parameters θ and batch, where
L_now is the loop count of the active SHIFT stage and L_next that of the next stage (1 and 3
in the paper's two-stage setting: Theorem 3's "shared river upstream" says the Single-Attn
and Looped-Attn gradients of W_Q, W_K align early in training, which is why training the
cheap model first is sound; once they stop aligning, the single model leads elsewhere).

The gradients are restricted to a part of the parameters:
  "qk":  W_Q and W_K (with their biases) of every attention layer, as in Theorem 3: the
         first two thirds of the fused `attn/qkv` kernel's output axis (q, k, v in order);
  "all": every parameter.
The trainer calls the jitted function only at the criterion's check steps, so plain steps
pay nothing for it.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp

from looped_jax import errors
from looped_jax.tasks import Batch, Task
from looped_jax import shift_criteria
from looped_jax.train import step as step_lib
from looped_jax.tree_paths import path_string

PARTS = shift_criteria.GRAD_COSINE_PARTS  # ("qk", "all")
_QKV = re.compile(r"(^|/)attn/qkv/(kernel|bias)$")  # fused [.., D, 3D] kernel, [.., 3D] bias


def select(grads: Any, part: str) -> list[jax.Array]:
  """The gradient leaves of `part` ("qk" | "all"), flattened in tree order."""
  errors.check_choice("grad_alignment.params", part, PARTS)
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  if part == "all":
    return [g for _, g in flat]
  out = []
  for path, g in flat:
    if _QKV.search(path_string(path)):
      out.append(g[..., : 2 * g.shape[-1] // 3])  # q and k columns; v is the last third
  errors.check(bool(out), "grad_alignment.params='qk' found no 'attn/qkv' parameter in the "
               "model; use params='all'.")
  return out


def cosine(a: list[jax.Array], b: list[jax.Array]) -> jax.Array:
  """Cosine of two leaf lists read as one flat vector each (float32 scalar; 0 for a zero vector)."""
  dot = sum(jnp.vdot(x, y) for x, y in zip(a, b, strict=True))
  norm = lambda v: jnp.sqrt(sum(jnp.vdot(x, x) for x in v))
  return (dot / jnp.maximum(norm(a) * norm(b), jnp.finfo(jnp.float32).tiny)).astype(jnp.float32)


def make_grad_cosine(graphdef, task: Task, *, loops: int, other_loops: int, part: str,
                     grad_loops: int, loss_on: str):
  """(params, batch) -> grad_cosine between `loops` and `other_loops`, not yet jitted.

  The losses are the training loss (`step.loss_fn`, same grad_loops / loss_on) without
  dropout, so the signal is a deterministic function of (params, batch).
  """
  errors.check_choice("grad_alignment.params", part, PARTS)

  def grad(params, batch: Batch, n: int):
    return jax.grad(step_lib.loss_fn)(params, batch, graphdef=graphdef, task=task, loops=n,
                                      grad_loops=grad_loops, loss_on=loss_on)

  def grad_cosine(params, batch: Batch) -> jax.Array:
    return cosine(select(grad(params, batch, loops), part),
                  select(grad(params, batch, other_loops), part))

  return grad_cosine

