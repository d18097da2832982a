"""Named initialisation schemes (`model.init`): one initializer per parameter family.

  family     parameters                                   gpt2               reference_yang
  read_in    input Linear d_in -> D (vectors)             N(0, 0.02), b 0    U(±1/√d_in), b too
             or Embed V x D (tokens)                      N(0, 0.02)         N(0, 1)
  positions  learned positions [max_len, D]               N(0, 0.02)         N(0, 0.02)
  hidden     QKV, MLP up, concat adapter, internal        N(0, 0.02), b 0    N(0, 0.02), b 0
             recall, timestep embedding
  residual   attention out, MLP down                      N(0, 0.02/√(2k))   N(0, 0.02/√(2k))
  norm       LayerNorm scale / bias                       1 / 0              1 / 0
  read_out   head: Linear D -> output_dim                 N(0, 0.02), b 0    U(±1/√D), b too
  gates      timestep modulation output                   0                  0

(b: the bias; residual biases are 0.) k = the distinct layers of the looped stack
(`model.num_layers`), as GPT-2's 1/√(2·n_layer) over its depth.

`gpt2` initialises every weight as GPT-2 does. `reference_yang` is Leiay/looped_transformer
(Yang et al., "Looped Transformers are Better at Learning Learning Algorithms",
arXiv 2311.12424): its nanoGPT backbone applies GPT-2's init to the modules inside the
backbone only, so the read-in and read-out keep PyTorch's defaults (`nn.Linear`:
kaiming_uniform(a=√5) = U(±1/√fan_in) for the weight, U(±1/√fan_in) for the bias;
`nn.Embedding`: N(0, 1)). That difference decides whether the in-context models learn at
batch 64: with N(0, 0.02) read-in weights the x and y signal is as small as the position
embedding (docs/reproductions.md).

Every family draws one key per array in the same order under every scheme, so two schemes
that agree on a family give it the same values for the same seed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

Initializer = Callable[..., jax.Array]  # (key, shape, dtype) -> array

GPT2_STD = 0.02
SCHEMES = ("gpt2", "reference_yang")


def torch_uniform(fan_in: int) -> Initializer:
  """U(-1/√fan_in, 1/√fan_in): PyTorch's `nn.Linear` default for its weight and its bias."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


@dataclasses.dataclass(frozen=True)
class LinearInit:
  kernel: Initializer
  bias: Initializer


def _normal(std: float) -> LinearInit:
  return LinearInit(nnx.initializers.normal(std), nnx.initializers.zeros)


def _torch_linear(fan_in: int) -> LinearInit:
  return LinearInit(torch_uniform(fan_in), torch_uniform(fan_in))


@dataclasses.dataclass(frozen=True)
class ParamInit:
  """The initializers of one model: `scheme` (one of SCHEMES) for a stack of k layers."""

  scheme: str = "gpt2"
  num_layers: int = 1

  def __post_init__(self):
    if self.scheme not in SCHEMES:
      raise ValueError(f"model.init={self.scheme!r} is unknown; choose one of "
                       f"{', '.join(SCHEMES)}.")

  @property
  def _torch_io(self) -> bool:
    return self.scheme == "reference_yang"

  def read_in(self, d_in: int) -> LinearInit:
    return _torch_linear(d_in) if self._torch_io else _normal(GPT2_STD)

  def token_embedding(self) -> Initializer:
    return nnx.initializers.normal(1.0 if self._torch_io else GPT2_STD)

  def positions(self) -> Initializer:
    return nnx.initializers.normal(GPT2_STD)

  def hidden(self) -> LinearInit:
    return _normal(GPT2_STD)

  def residual(self) -> LinearInit:
    return _normal(GPT2_STD / math.sqrt(2 * self.num_layers))

  def read_out(self, d_model: int) -> LinearInit:
    return _torch_linear(d_model) if self._torch_io else _normal(GPT2_STD)
