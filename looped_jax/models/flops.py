"""Model FLOPs of a train step, counted analytically, and a jaxpr matmul counter to check them.

Only matrix products count (2 FLOPs per multiply-add); elementwise work, norms and softmax do
not, as in the usual model-FLOP-utilisation convention. Attention scores are counted over the
full n x n square (what the kernels compute), not the causal half.

Per token and per block: QKV 6D^2, attention output 2D^2, MLP 4rD^2 (r = mlp_ratio), plus
4nD for Q K^T and weights V. A train step runs all L loops forward; the backward pass costs 2x
the forward of what it differentiates (input and weight gradients), i.e. only the last T loops
under truncated backprop, and only the weight gradient of the input embedding (the inputs
themselves get none), when a gradient reaches it at all.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax


def block_forward(spec: Any, batch: int, seq_len: int) -> int:
  """Forward matmul FLOPs of one block application on [batch, seq_len, D]."""
  d, n = spec.d_model, seq_len
  tokens = batch * n
  attn = 4 * batch * n * n * d  # Q K^T and weights V, all heads together
  if spec.block == "attn_only":
    return tokens * 8 * d * d + attn
  return tokens * (8 + 4 * spec.mlp_ratio) * d * d + attn


def train_step(spec: Any, batch: int, seq_len: int, loops: int, grad_loops: int = 0,
               loss_on: str = "last") -> int:
  """Matmul FLOPs of one train step (forward + backward) of a `ModelSpec` model.

  Covers the GPT-2 / attention-only blocks with injection none or add, a vector or token input
  and the linear head (the configurations the benchmarks time); other injections raise.
  """
  if spec.injection not in ("none", "add") or spec.timestep or spec.state_norm != "none":
    raise ValueError(f"no analytic count for injection={spec.injection!r}, "
                     f"timestep={spec.timestep}, state_norm={spec.state_norm!r}.")
  tokens = batch * seq_len
  window = loops if grad_loops <= 0 else min(grad_loops, loops)
  loop = sum(spec.layer_loops or (1,) * spec.num_layers) * block_forward(spec, batch, seq_len)
  embed = 2 * tokens * spec.vocab_size * spec.d_model if spec.input_kind == "vectors" else 0
  # The embedding gets a gradient when the window reaches it: through injection into every
  # loop, or through the initial state when no loop runs under stop_gradient.
  embed_grad = embed if spec.injection == "add" or window == loops else 0
  readouts = window if loss_on == "window" else 1
  head = 2 * tokens * spec.d_model * spec.output_dim
  return (loops * loop + 2 * window * loop  # forward of every loop, backward of the window
          + embed + embed_grad  # forward, and the weight gradient (inputs get none)
          + 3 * readouts * head)


def count_matmul_flops(fn: Callable, *args, **kwargs) -> int:
  """2 x multiply-adds of every dot_general in fn's jaxpr, scan bodies times their length."""
  return _count(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr)


def _count(jaxpr) -> int:
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      (lhs_contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      out = eqn.outvars[0].aval.shape
      total += 2 * math.prod(out) * math.prod(lhs[i] for i in lhs_contract)
      continue
    if eqn.primitive.name in ("cond", "while"):
      raise ValueError(f"cannot count FLOPs through {eqn.primitive.name}.")
    times = eqn.params["length"] if eqn.primitive.name == "scan" else 1
    for sub in _sub_jaxprs(eqn.params):
      total += times * _count(sub)
  return total


def _sub_jaxprs(params: dict):
  for value in params.values():
    for v in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(v, jax.extend.core.ClosedJaxpr):
        yield v.jaxpr
      elif isinstance(v, jax.extend.core.Jaxpr):
        yield v
