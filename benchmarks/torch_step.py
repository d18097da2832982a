"""The PyTorch baseline of benchmarks/step_throughput.py: the same model and train step.

  pip install -e ".[torch]"   # torch==2.13.0 (CPU wheel)
  python benchmarks/torch_step.py [same model flags as step_throughput.py] [--device cuda]
      [--matmul_precision high]

Mirrors Leiay/looped_transformer's TransformerModelLooped (Yang et al.): read-in Linear(d, D);
a HuggingFace-style GPT-2 model of --layers pre-LN blocks (fused c_attn QKV, causal attention,
GELU-tanh MLP of width 4D) with learned position embeddings added at its input and ln_f at its
output; looped as h_{t+1} = GPT2(h_t + e) from h_0 = 0; the first loops - window loops under
torch.no_grad(); read-out Linear(D, 1) after each of the last `window` loops; loss = mean
squared error at the x positions averaged over those read-outs; torch.optim.Adam. Attention
uses F.scaled_dot_product_attention (HuggingFace's default "sdpa" implementation). --model
standard runs --layers blocks once with h_0 = e and the loss on the single read-out. Dropout 0.

Times one fixed batch per step after --warmup steps and prints one JSON line with the keys of
step_throughput.py (median_s, steps_per_s, gflop_per_step from looped_jax.models.flops,
gflop_per_s); --serve is the one-step-per-request worker mode of compare_torch.py. Measured
with the CPU wheel torch-2.13.0+cpu (from PyTorch's CPU wheel index, or a local copy of that
wheel).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from step_throughput import add_model_flags, run_steps, shape, summary  # noqa: E402

from looped_jax import models  # noqa: E402  (FLOP count only; no JAX computation runs)
from looped_jax.models import flops  # noqa: E402

INIT_STD = 0.02


class Block(nn.Module):
  """GPT-2 block: x + attn(ln_1(x)), then x + mlp(ln_2(x)). x [B, n, D]."""

  def __init__(self, d: int, heads: int):
    super().__init__()
    self.heads = heads
    self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
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
  """inputs_embeds [B, n, D] -> ln_f(blocks(inputs_embeds + wpe)), as HF GPT2Model."""

  def __init__(self, d: int, heads: int, layers: int, max_len: int):
    super().__init__()
    self.wpe = nn.Parameter(torch.randn(max_len, d) * INIT_STD)
    self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
    self.ln_f = nn.LayerNorm(d)

  def forward(self, x):
    x = x + self.wpe[: x.shape[1]]
    for block in self.blocks:
      x = block(x)
    return self.ln_f(x)


class LoopedModel(nn.Module):
  """xs [B, n, d_in] -> read-outs [R, B, n] of the last `window` loops (R = window)."""

  def __init__(self, d_in: int, d: int, heads: int, layers: int, max_len: int):
    super().__init__()
    self.read_in = nn.Linear(d_in, d)
    self.backbone = GPT2(d, heads, layers, max_len)
    self.read_out = nn.Linear(d, 1)
    for m in self.modules():
      if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, std=INIT_STD)
        nn.init.zeros_(m.bias)

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


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  add_model_flags(parser)
  parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
  parser.add_argument("--device", default="cpu", help="torch device: cpu | cuda")
  parser.add_argument("--matmul_precision", default="highest", choices=("highest", "high"),
                      help="torch.set_float32_matmul_precision: highest = float32, high = TF32 "
                           "(what XLA uses for float32 matmuls on NVIDIA GPUs by default)")
  args = parser.parse_args()
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.set_float32_matmul_precision(args.matmul_precision)
  device = torch.device(args.device)
  s = shape(args)
  torch.manual_seed(0)
  model = LoopedModel(args.dims, args.d_model, args.heads, args.layers, 2 * args.points).to(device)
  opt = torch.optim.Adam(model.parameters(), lr=1e-4)
  xs = torch.randn(args.batch, args.points, args.dims, device=device)
  ys = torch.einsum("bkd,bd->bk", xs, torch.randn(args.batch, args.dims, device=device))  # y = w.x
  inputs = interleave(xs, ys)
  inject = args.model == "looped"

  last = {}

  def step():
    preds = model(inputs, s["loops"], s["window"], inject)  # [R, B, 2k]
    loss = ((preds[:, :, 0::2] - ys) ** 2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    last["loss"] = loss.item()  # also waits for the step (on a GPU too)

  timing = run_steps(step, args)

  spec = models.ModelSpec(input_kind="vectors", vocab_size=args.dims, output_dim=1,
                          max_len=2 * args.points, d_model=args.d_model, num_heads=args.heads,
                          num_layers=args.layers, injection="add" if inject else "none")
  gflop = flops.train_step(spec, args.batch, 2 * args.points, s["loops"],
                           s["window"] if inject else 0, "window" if inject else "last") / 1e9
  print(json.dumps({"framework": "torch", "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                               else "cpu"),
                    "matmul_precision": args.matmul_precision, **s,
                    "gflop_per_step": gflop, **summary(timing["times"], timing["cpu_times"], gflop),
                    "final_loss": last["loss"]}), flush=True)


if __name__ == "__main__":
  main()
