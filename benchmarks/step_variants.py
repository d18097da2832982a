"""Variants of the looped train step timed side by side in one process, round-robin.

  python benchmarks/step_variants.py [model flags of step_throughput.py] [--rounds 3]
      [--variants einsum,dpa,remat_full,...] [--save NAME]

Each variant is compiled first (with its attention formulation patched in while it is traced)
and then all compiled steps run in turn, one step each per round, so load drifts of a shared
machine hit every variant alike. Reports the median seconds per step of each variant and its
speed relative to the first. Variants:

  einsum          the library's attention (whatever looped_jax/models/layers.py does now)
  einsum_bnhd     scores by einsum on the [B, n, H, Dh] slices of the fused QKV (the original)
  heads_first     Q, K, V transposed to [B, H, n, Dh] once, then batched matmuls
  dpa             jax.nn.dot_product_attention(..., is_causal=True, implementation="xla")
  bias_mask       an additive 0 / -inf bias instead of where(mask, s, -1e30)
  remat_full, remat_dots, remat_dots_no_batch   model.remat policies around one loop
  bf16            model.dtype = bfloat16 (float32 parameters and softmax)
  rolled, unrolled  model.unroll = 0 (the window loops under lax.scan) or 64 (straight-line)
  data:N          data parallel over N simulated host devices of this CPU (mesh.data = N;
                  the process starts with 8 host devices for this). Faster at d = 64; in
                  training (mesh.host_devices) the gain is smaller (docs/performance.md)
  xla_default     config xla_options = "" (XLA's own defaults; the others use "auto")
  xla:FLAG=VALUE  that XLA option on top of XLA's defaults, e.g.
                  xla:xla_cpu_experimental_ynn_fusion_type= (all YNNPACK fusions off)
  A+B             several of the above at once, e.g. heads_first+xla_default
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
# Host devices for the data:N variants; one-device variants use the first device alone.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import step_throughput as st  # noqa: E402
from common import write_result  # noqa: E402
from looped_jax.models import layers  # noqa: E402
from looped_jax.train import build  # noqa: E402


def _split_heads(attn, x):
  b, n, d = x.shape
  qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, d // attn.num_heads)
  return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, n, H, Dh]


def _causal(n):
  return jnp.tril(jnp.ones((n, n), bool))


def einsum_bnhd(attn, x):
  b, n, d = x.shape
  q, k, v = _split_heads(attn, x)
  scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(q.shape[-1]).astype(x.dtype)
  scores = jnp.where(_causal(n), scores.astype(jnp.float32), -1e30)
  weights = jax.nn.softmax(scores, axis=-1).astype(x.dtype)
  return attn.out(jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, d))


def heads_first(attn, x):
  b, n, d = x.shape
  h = attn.num_heads
  qkv = attn.qkv(x).reshape(b, n, 3, h, d // h).transpose(2, 0, 3, 1, 4)  # [3, B, H, n, Dh]
  q, k, v = qkv[0], qkv[1], qkv[2]
  scores = jnp.matmul(q, k.swapaxes(-1, -2)) / jnp.sqrt(q.shape[-1]).astype(x.dtype)
  scores = jnp.where(_causal(n), scores.astype(jnp.float32), -1e30)
  weights = jax.nn.softmax(scores, axis=-1).astype(x.dtype)
  y = jnp.matmul(weights, v).transpose(0, 2, 1, 3).reshape(b, n, d)
  return attn.out(y)


def dpa(attn, x):
  b, n, d = x.shape
  q, k, v = _split_heads(attn, x)
  y = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla")
  return attn.out(y.reshape(b, n, d))


def bias_mask(attn, x):
  b, n, d = x.shape
  q, k, v = _split_heads(attn, x)
  bias = jnp.where(_causal(n), 0.0, -jnp.inf).astype(jnp.float32)
  scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(q.shape[-1]).astype(x.dtype)
  weights = jax.nn.softmax(scores.astype(jnp.float32) + bias, axis=-1).astype(x.dtype)
  return attn.out(jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, d))


ATTENTION = {"einsum": None, "einsum_bnhd": einsum_bnhd, "heads_first": heads_first,
             "dpa": dpa, "bias_mask": bias_mask}
CONFIG = {"remat_full": {"remat": "full"}, "remat_dots": {"remat": "dots"},
          "remat_dots_no_batch": {"remat": "dots_no_batch"}, "bf16": {"dtype": "bfloat16"},
          "rolled": {"unroll": 0}, "unrolled": {"unroll": 64}}


@contextlib.contextmanager
def attention(fn):
  """Patches layers.Attention.__call__ (softmax attention) while a step is traced."""
  original = layers.Attention.__call__
  if fn is not None:
    layers.Attention.__call__ = lambda self, x: fn(self, x)
  try:
    yield
  finally:
    layers.Attention.__call__ = original


def unknown_parts(name: str) -> list[str]:
  return [part for part in name.split("+") if part not in ATTENTION and part not in CONFIG
          and part != "xla_default" and not part.startswith(("xla:", "data:"))]


def compile_variant(args, name):
  parts = name.split("+")
  overrides = {k: v for part in parts for k, v in CONFIG.get(part, {}).items()}
  xla = [part.removeprefix("xla:") for part in parts if part.startswith("xla:")]
  xla_options = ";".join(xla) if xla or "xla_default" in parts else "auto"
  data = [int(part.removeprefix("data:")) for part in parts if part.startswith("data:")]
  devices = data[-1] if data else 1
  cfg = st.yang_config(argparse.Namespace(**{**vars(args), "remat": "none", "dtype": "float32",
                                             "unroll": -1, "xla_options": xla_options,
                                             **overrides}))
  cfg.mesh.data = devices
  exp = build.Experiment.build(cfg, devices=jax.devices()[:devices])
  state = exp.initial_state()
  batch = exp.sampler(args.batch)(jax.random.key(0), 0)
  attention_fns = [ATTENTION[part] for part in parts if ATTENTION.get(part)]
  if len(attention_fns) > 1:
    raise SystemExit(f"variant {name!r} names more than one attention formulation")
  with attention(attention_fns[0] if attention_fns else None):
    start = time.perf_counter()
    compiled = exp.train_step(cfg.model.num_loops).lower(state, batch).compile()
    compile_s = time.perf_counter() - start
  return {"step": compiled, "state": state, "batch": batch, "compile_s": compile_s,
          "xla_options": exp.compiler_options,
          "gflop": st.step_flops(exp, cfg.model.num_loops) / 1e9, "times": []}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  st.add_model_flags(parser)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--variants", default="einsum,einsum_bnhd,heads_first,dpa,remat_full")
  parser.add_argument("--save", default="")
  args = parser.parse_args()
  names = args.variants.split(",")
  unknown = sorted({part for name in names for part in unknown_parts(name)})
  if unknown:
    known = sorted({**ATTENTION, **CONFIG})
    parser.error(f"unknown variants {unknown}; choose from {known}, xla_default, "
                 "xla:FLAG=VALUE, data:N, or several joined by '+'")
  runs = {name: compile_variant(args, name) for name in names}
  for r in range(args.warmup + args.rounds):
    for name, run in runs.items():
      start = time.perf_counter()
      run["state"], metrics = run["step"](run["state"], run["batch"])
      jax.block_until_ready(metrics)
      if r >= args.warmup:
        run["times"].append(time.perf_counter() - start)
  base = statistics.median(runs[names[0]]["times"])
  result = {"shape": st.shape(args), "rounds": args.rounds, "warmup": args.warmup,
            "variants": {}}
  for name, run in runs.items():
    med = statistics.median(run["times"])
    result["variants"][name] = {"median_s": med, "gflop_per_s": run["gflop"] / med,
                                "speed_vs_first": base / med, "compile_s": run["compile_s"],
                                "xla_options": run["xla_options"],
                                "times_s": [round(t, 4) for t in run["times"]]}
    print(f"{name:22s} {med:.4f} s/step  {run['gflop'] / med:6.1f} GFLOP/s  "
          f"x{base / med:.2f}", file=sys.stderr, flush=True)
  if args.save:
    write_result(args.save, result)
  else:
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
