"""The model family. Functional core: `build` returns (graphdef, params) with params a plain
nested dict of arrays; `apply` merges them back for one call, inside or outside jit."""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from looped_jax.models.looped import LoopedTransformer, ModelSpec

Params = dict[str, Any]


def build(model_config: Any, task, seed: int = 0) -> tuple[nnx.GraphDef, Params]:
  """Initialises the model for `task` from the `model` config section."""
  spec = ModelSpec.from_config(model_config, task)
  graphdef, state = nnx.split(LoopedTransformer(spec, rngs=nnx.Rngs(seed)))
  return graphdef, nnx.to_pure_dict(state)


def apply(graphdef: nnx.GraphDef, params: Params, inputs: jax.Array, num_loops: int | None = None,
          **kwargs) -> jax.Array:
  """`LoopedTransformer.__call__` on a pure parameter dict."""
  return nnx.merge(graphdef, params)(inputs, num_loops, **kwargs)


def merge(graphdef: nnx.GraphDef, params: Params) -> LoopedTransformer:
  return nnx.merge(graphdef, params)


def count_params(params: Params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))


__all__ = ["LoopedTransformer", "ModelSpec", "Params", "apply", "build", "count_params", "merge"]
