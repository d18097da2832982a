"""The model family. Functional core: `build` returns (graphdef, params) with params a plain
nested dict of arrays; `apply` merges them back for one call, inside or outside jit."""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from looped_jax.models.looped import LoopedTransformer, ModelSpec

Params = dict[str, Any]


def build(model_config: Any, task, seed: int = 0) -> tuple[nnx.GraphDef, Params]:
  """Initialises the model for `task` from the `model` config section.

  Returns (graphdef, params): params is a plain nested dict of arrays, the layers of the
  shared block stacked on a leading axis (e.g. params["layers"]["attn"]["qkv"]["kernel"]
  [num_layers, D, 3D]), initialised by the scheme `model.init` (models/init.py).
  """
  spec = ModelSpec.from_config(model_config, task)
  graphdef, state = nnx.split(LoopedTransformer(spec, rngs=nnx.Rngs(seed)))
  return graphdef, nnx.to_pure_dict(state)


def graphdef(model_config: Any, task, dtype: str | None = None) -> nnx.GraphDef:
  """The model's structure only (no parameters are initialised), with the compute dtype
  `dtype` instead of model.dtype when given: e.g. the float64 twin of a float32 model, whose
  `apply` on float64 params is float64 end to end (exact Hessians). Build it, and apply it,
  under `jax.enable_x64(True)` for float64."""
  config = dict(model_config) | ({"dtype": dtype} if dtype else {})
  spec = ModelSpec.from_config(config, task)
  return nnx.split(nnx.eval_shape(lambda: LoopedTransformer(spec, rngs=nnx.Rngs(0))))[0]


def apply(graphdef: nnx.GraphDef, params: Params, inputs: jax.Array, num_loops: int | None = None,
          **kwargs) -> jax.Array:
  """`LoopedTransformer.__call__` on a pure parameter dict.

  inputs: int32 [B, n] token ids or float32 [B, n, d_in] vectors (the task's input_kind).
  Returns the read-out after `num_loops` loops (default model.num_loops), [B, n, output_dim];
  with per_loop=True the read-out of each of the last grad_loops loops (all when 0),
  [T, B, n, output_dim]. kwargs: grad_loops, per_loop, dropout_key, state_key.
  """
  return nnx.merge(graphdef, params)(inputs, num_loops, **kwargs)


def merge(graphdef: nnx.GraphDef, params: Params) -> LoopedTransformer:
  return nnx.merge(graphdef, params)


def count_params(params: Params) -> int:
  """The number of scalars in `params`."""
  return sum(x.size for x in jax.tree.leaves(params))


__all__ = ["LoopedTransformer", "ModelSpec", "Params", "apply", "build", "count_params",
           "graphdef", "merge"]
