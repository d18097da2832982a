"""Named initialisation schemes (`model.init`): one initializer per parameter family.

  family     parameters                                gpt2              reference_yang    reference_trm
  read_in    input Linear d_in -> D (vectors)          N(0, 0.02), b 0   U(±1/√d_in), b too  T(1/√d_in), b 0
             or Embed V x D (tokens)                   N(0, 0.02)        N(0, 1)           T(1/√D), x √D
  positions  learned positions [max_len, D]            N(0, 0.02)        N(0, 0.02)        T(1/√D)
  hidden     QKV, MLP up, concat adapter, internal     N(0, 0.02), b 0   N(0, 0.02), b 0   T(1/√fan_in), b 0
             recall, timestep embedding
  residual   attention out, MLP down                   N(0, 0.02/√(2k))  N(0, 0.02/√(2k))  T(1/√fan_in), b 0
  norm       LayerNorm scale / bias                    1 / 0             1 / 0             1 / 0
  read_out   head: Linear D -> output_dim              N(0, 0.02), b 0   U(±1/√D), b too   T(1/√D), b 0
  gates      timestep modulation output                0                 0                 0
  halt       halting head: Linear D -> 2               0, b -5           0, b -5           0, b -5

(b: the bias; residual biases are 0.) k = the distinct layers of the looped stack
(`model.num_layers`), as GPT-2's 1/√(2·n_layer) over its depth. T(s): a normal truncated at
±2 standard deviations and rescaled so that its standard deviation is s (JAX's truncated
LeCun normal; the reference's `trunc_normal_init_`). "x √D": the token embedding is multiplied
by √D in the forward pass (the reference's `embed_scale`). The halting head starts at
"never halt" (sigmoid(-5) = 0.7%) under every scheme, as in the TRM and HRM code.

`reference_trm` is SamsungSAILMontreal/TinyRecursiveModels (Jolicoeur-Martineau, "Less is
More: Recursive Reasoning with Tiny Networks", arXiv 2510.04871), which HRM
(sapientinc/HRM, arXiv 2506.21734) shares: every Linear is truncated LeCun normal with zero
biases. Its learned positions are added as 0.707 * (token + position) before the √D scale;
here they are added unscaled (a documented difference: the TRM configs use RoPE).

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
SCHEMES = ("gpt2", "reference_yang", "reference_trm")
HALT_BIAS = -5.0  # TRM / HRM: the halting head starts far from halting


def torch_uniform(fan_in: int) -> Initializer:
  """U(-1/√fan_in, 1/√fan_in): PyTorch's `nn.Linear` default for its weight and its bias."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def truncated_normal(std: float) -> Initializer:
  """N(0, std^2) truncated at ±2 of its standard deviations, rescaled to standard deviation std."""
  # 0.8796...: the standard deviation of a unit normal truncated to [-2, 2] (as in JAX's
  # variance_scaling "truncated_normal").
  scale = std / 0.87962566103423978

  def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return scale * jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)

  return init


@dataclasses.dataclass(frozen=True)
class LinearInit:
  kernel: Initializer
  bias: Initializer


def _normal(std: float) -> LinearInit:
  return LinearInit(nnx.initializers.normal(std), nnx.initializers.zeros)


def _torch_linear(fan_in: int) -> LinearInit:
  return LinearInit(torch_uniform(fan_in), torch_uniform(fan_in))


def _lecun_truncated() -> LinearInit:
  """T(1/√fan_in) kernel (fan_in: the kernel's first axis), zero bias."""
  return LinearInit(jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal"),
                    nnx.initializers.zeros)


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

  @property
  def _trm(self) -> bool:
    return self.scheme == "reference_trm"

  def read_in(self, d_in: int) -> LinearInit:
    if self._trm:
      return _lecun_truncated()
    return _torch_linear(d_in) if self._torch_io else _normal(GPT2_STD)

  def token_embedding(self, d_model: int) -> Initializer:
    if self._trm:
      return truncated_normal(1.0 / math.sqrt(d_model))
    return nnx.initializers.normal(1.0 if self._torch_io else GPT2_STD)

  def embedding_multiplier(self, d_model: int) -> float:
    """The token embedding's factor in the forward pass (1 = none)."""
    return math.sqrt(d_model) if self._trm else 1.0

  def positions(self, d_model: int) -> Initializer:
    return truncated_normal(1.0 / math.sqrt(d_model)) if self._trm else nnx.initializers.normal(
        GPT2_STD)

  def hidden(self) -> LinearInit:
    return _lecun_truncated() if self._trm else _normal(GPT2_STD)

  def residual(self) -> LinearInit:
    if self._trm:
      return _lecun_truncated()
    return _normal(GPT2_STD / math.sqrt(2 * self.num_layers))

  def read_out(self, d_model: int) -> LinearInit:
    if self._trm:
      return _lecun_truncated()
    return _torch_linear(d_model) if self._torch_io else _normal(GPT2_STD)

  def halt(self) -> LinearInit:
    return LinearInit(nnx.initializers.zeros, nnx.initializers.constant(HALT_BIAS))
