"""The PyTorch baseline of benchmarks/step_throughput.py: the same model and train step.

  pip install -e ".[torch]"   # torch==2.13.0 (CPU wheel)
  python benchmarks/torch_step.py [same model flags as step_throughput.py] [--device cuda]
      [--matmul_precision high]

The model is benchmarks/yang_torch.py's port of Leiay/looped_transformer's
TransformerModelLooped (Yang et al.): the looped model with input injection h_{t+1} =
GPT2(h_t + e) from h_0 = 0, the first loops - window loops under torch.no_grad(), a read-out
after each of the last `window` loops, loss = mean squared error at the x positions averaged
over those read-outs; torch.optim.Adam. Attention uses F.scaled_dot_product_attention.
--model standard runs --layers blocks once with h_0 = e and the loss on the single read-out.

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

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from step_throughput import add_model_flags, run_steps, shape, summary  # noqa: E402
from yang_torch import LoopedModel, interleave  # noqa: E402

from looped_jax import models  # noqa: E402  (FLOP count only; no JAX computation runs)
from looped_jax.models import flops  # noqa: E402


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
