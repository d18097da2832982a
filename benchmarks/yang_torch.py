"""A PyTorch port of Yang et al.'s in-context model, for the speed baseline and the fidelity test.

  pip install -e ".[torch]"   # torch==2.13.0 (CPU wheel)

Mirrors Leiay/looped_transformer ("Looped Transformers are Better at Learning Learning
Algorithms", arXiv 2311.12424): `TransformerModelLooped` (loop_func "z=f(x+z)") and
`TransformerModel` over its nanoGPT backbone, written for this project:
- read-in `nn.Linear(d_in, D)` and read-out `nn.Linear(D, 1)` keep PyTorch's default init,
  U(±1/√fan_in) for weight and bias;
- backbone (`GPT2`): learned positions added at its input, pre-LN blocks (fused QKV, causal
  softmax attention, tanh-GELU MLP of width 4D, biases), `ln_f` at its output; LayerNorm eps
  1e-5; Linear weights and positions N(0, 0.02), biases 0, the residual projections
  N(0, 0.02/√(2·layers)), LayerNorms 1 / 0 (GPT-2's init, as the reference's backbone);
- looped: h_0 = 0, h_{t+1} = GPT2(h_t + e), the read-out after each of the last `window`
  loops, the first loops - window under `torch.no_grad()`; standard (`inject=False`, one
  loop): GPT2(e), one read-out. Dropout 0.

`load_jax_params` copies a looped_jax parameter tree (models.build with the Yang configs) into
the port, so the two can be compared on the same weights (tests/test_yang_fidelity.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

GPT2_STD = 0.02
LAYER_NORM_EPS = 1e-5  # the reference's LayerNorm (F.layer_norm(..., 1e-5)) = nn.LayerNorm's


class Block(nn.Module):
  """GPT-2 block: x + attn(ln_1(x)), then x + mlp(ln_2(x)). x [B, n, D]."""

  def __init__(self, d: int, heads: int):
    super().__init__()
    self.heads = heads
    self.ln_1, self.ln_2 = nn.LayerNorm(d, eps=LAYER_NORM_EPS), nn.LayerNorm(d, eps=LAYER_NORM_EPS)
    self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
    self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

  def forward(self, x):
    b, n, d = x.shape
    qkv = self.c_attn(self.ln_1(x)).view(b, n, 3, self.heads, d // self.heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, H, n, Dh]
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    x = x + self.c_proj(y.transpose(1, 2).reshape(b, n, d))
    return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
  """inputs_embeds [B, n, D] -> ln_f(blocks(inputs_embeds + wpe)), GPT-2's init."""

  def __init__(self, d: int, heads: int, layers: int, max_len: int):
    super().__init__()
    self.wpe = nn.Parameter(torch.randn(max_len, d) * GPT2_STD)
    self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
    self.ln_f = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
    for name, m in self.named_modules():
      if isinstance(m, nn.Linear):
        residual = name.endswith(("c_proj", "mlp_proj"))
        nn.init.normal_(m.weight, std=GPT2_STD / math.sqrt(2 * layers) if residual else GPT2_STD)
        nn.init.zeros_(m.bias)

  def forward(self, x):
    x = x + self.wpe[: x.shape[1]]
    for block in self.blocks:
      x = block(x)
    return self.ln_f(x)


class LoopedModel(nn.Module):
  """xs [B, n, d_in] -> read-outs [R, B, n] of the last `window` loops (R = window)."""

  def __init__(self, d_in: int, d: int, heads: int, layers: int, max_len: int):
    super().__init__()
    self.read_in = nn.Linear(d_in, d)  # PyTorch's default init, as in the reference
    self.backbone = GPT2(d, heads, layers, max_len)
    self.read_out = nn.Linear(d, 1)

  def forward(self, xs, loops: int, window: int, inject: bool):
    e = self.read_in(xs)
    h = torch.zeros_like(e) if inject else e
    with torch.no_grad():
      for _ in range(loops - window):
        h = self.backbone(h + e if inject else h)
    outs = []
    for _ in range(window):
      h = self.backbone(h + e if inject else h)
      outs.append(self.read_out(h)[..., 0])
    return torch.stack(outs)


def interleave(xs, ys):
  """xs [B, k, d], ys [B, k] -> [B, 2k, d] with x_i at 2i and [y_i, 0, ...] at 2i + 1."""
  y_tokens = torch.zeros_like(xs)
  y_tokens[..., 0] = ys
  return torch.stack([xs, y_tokens], dim=2).flatten(1, 2)


def load_jax_params(model: LoopedModel, params: dict) -> None:
  """Copies a looped_jax parameter tree (gpt2 blocks, stacked over layers) into `model`.

  flax kernels are [in, out], torch weights [out, in]; stacked layer parameters have a
  leading axis of size `layers`. Both models must have the same sizes.
  """

  def put(param: torch.Tensor, value, transpose: bool = False) -> None:
    value = np.array(value, np.float32)  # a writable copy: torch wraps it without copying
    param.data.copy_(torch.from_numpy(np.ascontiguousarray(value.T) if transpose else value))

  def linear(module: nn.Linear, tree: dict) -> None:
    put(module.weight, tree["kernel"], transpose=True)
    put(module.bias, tree["bias"])

  def norm(module: nn.LayerNorm, tree: dict) -> None:
    put(module.weight, tree["scale"])
    put(module.bias, tree["bias"])

  linear(model.read_in, params["embedding"])
  linear(model.read_out, params["head"])
  put(model.backbone.wpe, params["positions"][: model.backbone.wpe.shape[0]])
  norm(model.backbone.ln_f, params["ln_f"])
  layers = params["layers"]
  for i, block in enumerate(model.backbone.blocks):
    layer = {name: _index(tree, i) for name, tree in layers.items()}
    norm(block.ln_1, layer["ln1"])
    norm(block.ln_2, layer["ln2"])
    linear(block.c_attn, layer["attn"]["qkv"])
    linear(block.c_proj, layer["attn"]["out"])
    linear(block.c_fc, layer["mlp"]["up"])
    linear(block.mlp_proj, layer["mlp"]["down"])


def _index(tree, i: int):
  if isinstance(tree, dict):
    return {k: _index(v, i) for k, v in tree.items()}
  return np.asarray(tree)[i]
