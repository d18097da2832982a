"""Transformer blocks: causal multi-head attention (softmax or linear), GELU and SwiGLU MLPs,
and the three block types of the model family.

Shapes: B batch, n positions, D width, H heads, Dh = D / H.

Dropout takes an explicit key (None = off) so that the modules hold no RNG state and the
functional core stays a pure function of (params, inputs, key).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from looped_jax.models.init import LinearInit, ParamInit


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
  if key is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def linear(d_in: int, d_out: int, init: LinearInit, *, use_bias: bool, rngs: nnx.Rngs,
           dtype=None) -> nnx.Linear:
  """Linear layer [d_in] -> [d_out]; float32 parameters, `dtype` compute."""
  return nnx.Linear(d_in, d_out, use_bias=use_bias, rngs=rngs, dtype=dtype,
                    kernel_init=init.kernel, bias_init=init.bias)


def layer_norm(d: int, rngs: nnx.Rngs, dtype=None, eps: float = 1e-6) -> nnx.LayerNorm:
  """LayerNorm, scale 1 and bias 0. eps: flax's 1e-6 by default; PyTorch's is 1e-5."""
  return nnx.LayerNorm(d, epsilon=eps, rngs=rngs, dtype=dtype)


ROPE_BASE = 10_000.0  # RoFormer / LLaMA; the papers we implement use learned or no positions


def rotary(x: jax.Array, base: float = ROPE_BASE, offset: jax.Array | int = 0) -> jax.Array:
  """Rotary position embedding (Su et al.) of [B, n, H, Dh] queries or keys, Dh even, at
  positions offset, ..., offset + n - 1 (offset > 0: a decoding step's new tokens).

  Channel pairs (i, i + Dh/2) of position p are rotated by the angle p * base^(-2i/Dh), so
  <rotary(q)_p, rotary(k)_r> depends on p - r only: attention sees relative positions, and
  nothing is tied to a maximum length.
  """
  n, half = x.shape[1], x.shape[-1] // 2
  dt = jnp.promote_types(x.dtype, jnp.float32)  # angles in float64 for a float64 model
  freqs = base ** (-jnp.arange(half, dtype=dt) / half)  # [Dh/2]
  angles = (offset + jnp.arange(n, dtype=dt))[:, None] * freqs  # [n, Dh/2]
  cos = jnp.cos(angles)[None, :, None, :].astype(x.dtype)
  sin = jnp.sin(angles)[None, :, None, :].astype(x.dtype)
  x1, x2 = x[..., :half], x[..., half:]
  return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, kind: str) -> jax.Array:
  """Masked attention of queries [B, n, H, Dh] over keys and values [B, m, H, Dh] -> [B, n, H,
  Dh]. mask: bool, broadcastable to [B, H, n, m]. softmax: softmax(mask(QK^T / sqrt(Dh))) V;
  linear: mask(QK^T / sqrt(Dh)) V."""
  scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(q.shape[-1]).astype(q.dtype)
  if kind == "softmax":
    # Softmax in at least float32 (bfloat16 scores are too coarse); float64 stays float64.
    scores = jnp.where(mask, scores.astype(jnp.promote_types(q.dtype, jnp.float32)), -1e30)
    weights = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
  else:
    weights = jnp.where(mask, scores, 0.0)
  return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


def causal_mask(n: int, m: int | None = None, window: int = 0) -> jax.Array:
  """bool [n, m]: query i (at position m - n + i) sees keys at positions <= its own, and with
  window w > 0 only the last w of them (sliding-window attention)."""
  m = n if m is None else m
  query = jnp.arange(n)[:, None] + (m - n)
  key = jnp.arange(m)[None, :]
  mask = key <= query
  return mask & (key > query - window) if window > 0 else mask


class Attention(nnx.Module):
  """Multi-head self-attention with a fused QKV projection.

  softmax: softmax(mask(QK^T / sqrt(Dh))) V.  linear: mask(QK^T / sqrt(Dh)) V, the identity
  instead of softmax as in Gong et al.'s theory (arXiv 2510.10089). rope: rotate Q and K by
  their positions first (relative positions; see `rotary`).
  gate: None, or the Parallel Loop Transformer's G-SWA gate g = sigmoid(W_g x) [D]
  (models/plt.py; added by the block, see `gate_linear`); unused by `__call__`.

  `__call__` is the whole-sequence pass; `project` and `output` are its two halves, for
  callers that bring their own keys and values (KV caches, PLT).
  """

  def __init__(self, d_model: int, num_heads: int, *, kind: str, causal: bool, use_bias: bool,
               init: ParamInit, rngs: nnx.Rngs, dtype=None, rope: bool = False):
    self.num_heads = num_heads
    self.kind = kind
    self.causal = causal
    self.rope = rope
    self.qkv = linear(d_model, 3 * d_model, init.hidden(), use_bias=use_bias, rngs=rngs,
                      dtype=dtype)
    self.out = linear(d_model, d_model, init.residual(), use_bias=use_bias, rngs=rngs, dtype=dtype)
    self.gate = nnx.data(None)  # a Linear once a PLT block adds its G-SWA gate

  def project(self, x: jax.Array, offset: jax.Array | int = 0):
    """x [B, n, D] at positions offset.. -> q, k, v [B, n, H, Dh] (q and k rotated if rope)."""
    b, n, d = x.shape
    qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    if self.rope:
      q, k = rotary(q, offset=offset), rotary(k, offset=offset)
    return q, k, v

  def output(self, heads: jax.Array) -> jax.Array:
    """Attention heads [B, n, H, Dh] -> the output projection [B, n, D]."""
    b, n = heads.shape[:2]
    return self.out(heads.reshape(b, n, -1))

  def __call__(self, x: jax.Array) -> jax.Array:  # [B, n, D] -> [B, n, D]
    n = x.shape[1]
    q, k, v = self.project(x)
    mask = causal_mask(n) if self.causal else jnp.ones((n, n), bool)
    return self.output(attend(q, k, v, mask, self.kind))


AttentionFn = Callable[[Attention, jax.Array], tuple[jax.Array, Any]]
"""(the block's Attention module, its normed input [B, n, D]) -> (output [B, n, D], extra):
a replacement for the self-attention call, e.g. one that reads and extends a KV cache and
returns the new keys and values as `extra` (models/decode.py)."""


def run_attention(attn: Attention, y: jax.Array, attention: AttentionFn | None):
  """(attn(y), None), or what the replacement `attention` returns."""
  return (attn(y), None) if attention is None else attention(attn, y)


class MLP(nnx.Module):
  def __init__(self, d_model: int, ratio: int, *, use_bias: bool, init: ParamInit,
               rngs: nnx.Rngs, dtype=None):
    self.up = linear(d_model, ratio * d_model, init.hidden(), use_bias=use_bias, rngs=rngs,
                     dtype=dtype)
    self.down = linear(ratio * d_model, d_model, init.residual(), use_bias=use_bias, rngs=rngs,
                       dtype=dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.down(jax.nn.gelu(self.up(x), approximate=True))


def gate_linear(d_model: int, init: ParamInit, rngs: nnx.Rngs, dtype=None) -> nnx.Linear:
  """The G-SWA gate's projection [D] -> [D] (with bias). A block creates it after all its other
  parameters, so that those draw the same values with and without it."""
  return linear(d_model, d_model, init.hidden(), use_bias=True, rngs=rngs, dtype=dtype)


class GPT2Block(nnx.Module):
  """Pre-LN block: x + Attn(LN(x)), then x + MLP(LN(x)) (Yang et al.'s backbone layer).
  gated: give the attention a G-SWA gate (the looped core of a PLT model)."""

  def __init__(self, cfg, *, init: ParamInit, rngs: nnx.Rngs, gated: bool = False):
    d, dt, eps = cfg.d_model, cfg.compute_dtype, cfg.layer_norm_eps
    self.dropout_rate = cfg.dropout
    self.ln1 = layer_norm(d, rngs, dt, eps)
    self.attn = Attention(d, cfg.num_heads, kind=cfg.attention, causal=cfg.causal,
                          use_bias=cfg.use_bias, init=init, rngs=rngs, dtype=dt,
                          rope=cfg.position == "rope")
    self.ln2 = layer_norm(d, rngs, dt, eps)
    self.mlp = MLP(d, cfg.mlp_ratio, use_bias=cfg.use_bias, init=init, rngs=rngs, dtype=dt)
    if gated:
      self.attn.gate = nnx.data(gate_linear(d, init, rngs, dt))

  def __call__(self, x: jax.Array, key: jax.Array | None = None, *,
               recall: jax.Array | None = None, modulation: "Modulation | None" = None,
               attention: "AttentionFn | None" = None):
    """recall [B, n, D]: internal recall, added to the MLP's input only (Labovich,
    arXiv 2604.15259).
    modulation: per-loop adaLN gates and scales (Xu & Sato, arXiv 2410.01405).
    attention: replaces the self-attention call (see `AttentionFn`); the block then returns
    (x, what it returned besides the output)."""
    k1, k2 = jax.random.split(key) if key is not None else (None, None)
    m = modulation or Modulation.identity()
    y = self.ln1(x) * (1 + m.attn_scale)
    a, extra = run_attention(self.attn, y, attention)
    x = x + m.attn_gate * dropout(a, self.dropout_rate, k1)
    z = x + recall if recall is not None else x
    y = self.ln2(z) * (1 + m.mlp_scale)
    x = x + m.mlp_gate * dropout(self.mlp(y), self.dropout_rate, k2)
    return x if attention is None else (x, extra)


class AttnOnlyBlock(nnx.Module):
  """Gong et al.'s layer: x + Attn(x), optionally pre-normed; no MLP (arXiv 2510.10089)."""

  def __init__(self, cfg, *, init: ParamInit, rngs: nnx.Rngs, gated: bool = False):
    self.dropout_rate = cfg.dropout
    self.ln = (layer_norm(cfg.d_model, rngs, cfg.compute_dtype, cfg.layer_norm_eps)
               if cfg.pre_norm else None)
    self.attn = Attention(cfg.d_model, cfg.num_heads, kind=cfg.attention, causal=cfg.causal,
                          use_bias=cfg.use_bias, init=init, rngs=rngs,
                          dtype=cfg.compute_dtype, rope=cfg.position == "rope")
    if gated:
      self.attn.gate = nnx.data(gate_linear(cfg.d_model, init, rngs, cfg.compute_dtype))

  def __call__(self, x: jax.Array, key: jax.Array | None = None, *,
               recall: jax.Array | None = None, modulation: "Modulation | None" = None,
               attention: "AttentionFn | None" = None):
    del recall  # no MLP to inject into; config validation rejects internal recall here
    m = modulation or Modulation.identity()
    y = (self.ln(x) if self.ln is not None else x) * (1 + m.attn_scale)
    a, extra = run_attention(self.attn, y, attention)
    x = x + m.attn_gate * dropout(a, self.dropout_rate, key)
    return x if attention is None else (x, extra)


def rms_norm(x: jax.Array, eps: float) -> jax.Array:
  """x / sqrt(mean(x^2) + eps) over the last axis, without a learned scale, in at least float32."""
  x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  return (x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)).astype(
      x.dtype)


def swiglu_width(d_model: int, ratio: float) -> int:
  """The hidden width of the reference TRM / HRM SwiGLU: round(ratio * D * 2/3), rounded up to a
  multiple of 256 (so two thirds of a GELU MLP's width, at least 256)."""
  return -(-round(ratio * d_model * 2 / 3) // 256) * 256


class SwiGLU(nnx.Module):
  """down(silu(gate(x)) * up(x)), gate and up fused in one projection [D] -> [2W] -> [W] -> [D]."""

  def __init__(self, d_model: int, ratio: float, *, use_bias: bool, init: ParamInit,
               rngs: nnx.Rngs, dtype=None):
    width = swiglu_width(d_model, ratio)
    self.gate_up = linear(d_model, 2 * width, init.hidden(), use_bias=use_bias, rngs=rngs,
                          dtype=dtype)
    self.down = linear(width, d_model, init.residual(), use_bias=use_bias, rngs=rngs,
                       dtype=dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    gate, up = jnp.split(self.gate_up(x), 2, axis=-1)
    return self.down(jax.nn.silu(gate) * up)


class PostNormBlock(nnx.Module):
  """The Tiny Recursive Model's and HRM's block (arXiv 2510.04871, 2506.21734): post-norm,
  x = RMS(x + Attn(x)), then x = RMS(x + SwiGLU(x)); RMSNorm without a learned scale,
  eps = model.layer_norm_eps (the reference's 1e-5). Attention is bidirectional unless
  model.causal; biases follow model.use_bias (the reference has none)."""

  def __init__(self, cfg, *, init: ParamInit, rngs: nnx.Rngs, gated: bool = False):
    d, dt = cfg.d_model, cfg.compute_dtype
    self.eps = cfg.layer_norm_eps
    self.dropout_rate = cfg.dropout
    self.attn = Attention(d, cfg.num_heads, kind=cfg.attention, causal=cfg.causal,
                          use_bias=cfg.use_bias, init=init, rngs=rngs, dtype=dt,
                          rope=cfg.position == "rope")
    self.mlp = SwiGLU(d, cfg.mlp_ratio, use_bias=cfg.use_bias, init=init, rngs=rngs, dtype=dt)
    if gated:
      self.attn.gate = nnx.data(gate_linear(d, init, rngs, dt))

  def __call__(self, x: jax.Array, key: jax.Array | None = None, *,
               recall: jax.Array | None = None, modulation: "Modulation | None" = None,
               attention: "AttentionFn | None" = None):
    del recall, modulation  # config validation rejects both for this block
    k1, k2 = jax.random.split(key) if key is not None else (None, None)
    a, extra = run_attention(self.attn, x, attention)
    x = rms_norm(x + dropout(a, self.dropout_rate, k1), self.eps)
    x = rms_norm(x + dropout(self.mlp(x), self.dropout_rate, k2), self.eps)
    return x if attention is None else (x, extra)


class Modulation(NamedTuple):
  """Per-loop gates g and scales s, each [D] (Xu & Sato's timestep conditioning)."""

  attn_gate: jax.Array | float
  mlp_gate: jax.Array | float
  attn_scale: jax.Array | float
  mlp_scale: jax.Array | float

  @classmethod
  def identity(cls) -> "Modulation":
    return cls(1.0, 1.0, 0.0, 0.0)


def sinusoid(t: jax.Array, dim: int = 256, max_period: float = 1e4) -> jax.Array:
  """DiT-style timestep features of a scalar loop index -> [dim]."""
  half = dim // 2
  freqs = jnp.exp(-jnp.log(max_period) * jnp.arange(half) / half)
  angles = jnp.asarray(t, jnp.float32) * freqs
  return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)])


class TimestepModulation(nnx.Module):
  """t -> MLP(sinusoid(t)) -> zero-initialised Linear -> (g_a, g_m, s_a, s_m).

  Zero init makes every loop start as the identity map (Xu & Sato). One modulation per loop,
  shared by the k layers of that loop (a choice: the paper has k = 1)."""

  def __init__(self, d_model: int, *, init: ParamInit, rngs: nnx.Rngs, freq_dim: int = 256):
    self.freq_dim = freq_dim
    self.embed1 = linear(freq_dim, d_model, init.hidden(), use_bias=True, rngs=rngs)
    self.embed2 = linear(d_model, d_model, init.hidden(), use_bias=True, rngs=rngs)
    self.out = nnx.Linear(d_model, 4 * d_model, rngs=rngs, kernel_init=nnx.initializers.zeros,
                          bias_init=nnx.initializers.zeros)

  def __call__(self, t: jax.Array) -> Modulation:
    emb = self.embed2(jax.nn.silu(self.embed1(sinusoid(t, self.freq_dim))))
    return Modulation(*jnp.split(self.out(jax.nn.silu(emb)), 4))


BLOCKS = {"gpt2": GPT2Block, "attn_only": AttnOnlyBlock, "post_norm": PostNormBlock}
