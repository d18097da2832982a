"""Helpers of the model tests (decode_test, plt_test, train/exit_gate_test): a tiny token
task, models with every parameter random, and the op-by-op forward pass they compare with."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from looped_jax import models
from looped_jax.config import base_config


@dataclasses.dataclass(frozen=True)
class TinyTokenTask:
  """The shapes a model needs from a token task."""
  input_kind: str = "tokens"
  vocab_size: int = 17
  output_dim: int = 17
  seq_len: int = 12


def model_config(options=()):
  """base_config().model at D = 16, 2 heads, with `options` ((key, value) pairs) set."""
  cfg = base_config().model
  cfg.d_model, cfg.num_heads = 16, 2
  cfg.update(dict(options))
  return cfg


def random_model(options=(), *, seed: int = 0, scale: float = 0.3,
                 task: TinyTokenTask = TinyTokenTask()):
  """(graphdef, params) of `model_config(options)` with every parameter random: LayerNorm
  scales 1 + N(0, 0.1^2), the rest N(0, scale^2), so zero-initialised parts (timestep gates,
  the exit head) matter too. Shapes from eval_shape: no initialisation to compile."""
  spec = models.ModelSpec.from_config(model_config(options), task)
  graphdef, state = nnx.split(nnx.eval_shape(
      lambda: models.LoopedTransformer(spec, rngs=nnx.Rngs(0))))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    noise = rng.normal(size=leaf.shape).astype(np.float32)
    return jnp.asarray(1.0 + 0.1 * noise if path[-1].key == "scale" else scale * noise)

  return graphdef, jax.tree_util.tree_map_with_path(draw, nnx.to_pure_dict(state))


def tokens(n: int = 8, batch: int = 2, seed: int = 0) -> jax.Array:
  """Random token ids int32 [batch, n] of TinyTokenTask's vocabulary."""
  return jax.random.randint(jax.random.key(seed), (batch, n), 0, TinyTokenTask.vocab_size)


def full(graphdef, params, x, loops):
  """The whole-sequence forward pass, run op by op (no compilation of its own)."""
  with jax.disable_jit():
    return models.apply(graphdef, params, x, loops)
