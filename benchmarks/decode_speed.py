"""Decoding speed and KV-cache size of looped models vs the standard model, in one process.

  python benchmarks/decode_speed.py [--d_model 512] [--layers 2] [--loops 2,4,8]
      [--tokens 128] [--batch 1] [--rounds 5] [--save decode_speed]

Models (all GPT-2 blocks, rotary positions, byte vocabulary, random weights: speed does not
depend on training):

  standard           k distinct layers, one pass per token (the baseline: ratio 1)
  deep:L             k * L distinct layers, one pass: a standard model of the looped depth
  looped:L/CACHE     the k layers looped L times, loops run one after another per token;
                     CACHE = per_loop (exact), first_loop, every_k (m = 2 slots)
  plt:L              the Parallel Loop Transformer: the L loops of a token in one pass of
                     L rows (models/plt.py), window w = 16
  rows:L             `standard` decoding L sequences at once: the cost of one pass over L
                     rows on this machine, the floor of plt:L's step time (seconds per step;
                     tokens/s counts all L sequences)

Each model generates `tokens` tokens greedily from a one-token prompt (so every step is a
decoding step, with the cache growing to `tokens` positions); all compiled generators then run
in turn, one generation each per round, so load drifts of a shared machine hit every model
alike. Reported per model: the median seconds per generated token, tokens/s, latency relative
to `standard`, and the cache bytes per position of one sequence (keys and values; PLT also
keeps a fixed ring of L - 1 windows and L - 1 states, reported as fixed bytes).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks.common import write_result  # noqa: E402
from looped_jax import models  # noqa: E402
from looped_jax.models import decode, plt  # noqa: E402

VOCAB = 257
PLT_WINDOW = 16


class _ByteTask:
  input_kind = "tokens"
  vocab_size = VOCAB
  output_dim = VOCAB
  seq_len = 1024


def _model(args, num_layers: int, **extra):
  cfg = dict(block="gpt2", d_model=args.d_model, num_heads=args.heads, num_layers=num_layers,
             num_loops=1, injection="add", position="rope") | extra
  return models.build(cfg, _ByteTask(), 0)


def variants(args) -> dict[str, dict]:
  """name -> {graphdef, params, loops, cache, bytes_per_token, fixed_bytes}."""
  out = {}

  def add(name, built, loops, cache=decode.CacheSpec(), rows=1):
    graphdef, params = built
    model = models.merge(graphdef, params)
    if model.spec.plt:
      per_token = plt.cache_bytes(model, loops, 1) - plt.cache_bytes(model, loops, 0)
      fixed = plt.cache_bytes(model, loops, 0)
    else:
      per_token, fixed = decode.cache_bytes_per_token(model, cache, loops), 0
    out[name] = dict(graphdef=graphdef, params=params, loops=loops, cache=cache, rows=rows,
                     bytes_per_token=int(per_token), fixed_bytes=int(fixed))

  k = args.layers
  standard = _model(args, k)
  add("standard", standard, 1)
  for loops in args.loops:
    add(f"rows:{loops}", standard, 1, rows=loops)
    add(f"deep:{loops}", _model(args, k * loops), 1)
    looped = _model(args, k)
    for strategy in ("per_loop", "first_loop", "every_k"):
      add(f"looped:{loops}/{strategy}", looped, loops, decode.CacheSpec(strategy, 2))
    add(f"plt:{loops}", _model(args, k, plt=True, plt_window=PLT_WINDOW), loops)
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--d_model", type=int, default=512)
  parser.add_argument("--heads", type=int, default=8)
  parser.add_argument("--layers", type=int, default=2)
  parser.add_argument("--loops", default="2,4,8")
  parser.add_argument("--tokens", type=int, default=128)
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--only", default="", help="comma-separated variant names (default all)")
  parser.add_argument("--save", default="decode_speed")
  args = parser.parse_args()
  args.loops = [int(x) for x in args.loops.split(",")]
  runs = variants(args)
  if args.only:
    runs = {n: runs[n] for n in args.only.split(",")}
  key = jax.random.key(0)

  def run(v):
    prompt = jnp.zeros((args.batch * v["rows"], 1), jnp.int32)
    out = decode.generate(v["graphdef"], v["params"], prompt, key,
                          max_new_tokens=args.tokens, num_loops=v["loops"],
                          cache_spec=v["cache"])
    return jax.block_until_ready(out.tokens)

  for name, v in runs.items():  # compile (and warm) each generator first
    start = time.perf_counter()
    run(v)
    print(f"compiled {name} in {time.perf_counter() - start:.1f} s", flush=True)
  times = {name: [] for name in runs}
  for _ in range(args.rounds):
    for name, v in runs.items():
      start = time.perf_counter()
      run(v)
      times[name].append((time.perf_counter() - start) / args.tokens)
  base = statistics.median(times["standard"]) if "standard" in times else None
  base_bytes = runs["standard"]["bytes_per_token"] if "standard" in runs else None
  table = {}
  for name, v in runs.items():
    sec = statistics.median(times[name])
    table[name] = {"seconds_per_token": sec, "tokens_per_second": args.batch * v["rows"] / sec,
                   "latency_vs_standard": sec / base if base else None,
                   "cache_bytes_per_position": v["bytes_per_token"],
                   "cache_vs_standard": (v["bytes_per_token"] / base_bytes if base_bytes
                                         else None),
                   "fixed_cache_bytes": v["fixed_bytes"], "loops": v["loops"]}
    print(f"{name:24s} {1e3 * sec:8.3f} ms/token  x{table[name]['latency_vs_standard'] or 0:5.2f}"
          f"  cache {v['bytes_per_token']:7d} B/position (x"
          f"{table[name]['cache_vs_standard'] or 0:.2f}) + {v['fixed_bytes']} B fixed",
          flush=True)
  settings = {k: v for k, v in vars(args).items() if k != "save"}
  write_result(args.save, {"settings": settings, "plt_window": PLT_WINDOW, "results": table})


if __name__ == "__main__":
  main()
