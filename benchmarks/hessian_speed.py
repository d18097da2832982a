"""Speed of one gradient, one HVP and top-20 Lanczos on a small looped attention model.

    python benchmarks/hessian_speed.py [--rounds 4] [--num_iters 50]

Model (pure jax, Gong et al.'s Looped-Attn, docs/papers.md): token + position embedding, one causal
softmax attention layer applied 3 times with residuals, untied read-out, next-token
cross-entropy; vocab 16, D 32, n 32, batch 256 (5,120 params). Times are medians after a
warm-up call (compilation excluded), each ending in block_until_ready; gradient, HVP and
Lanczos calls are interleaved round by round, so a shared machine's load drifts hit all
three alike (minima are reported too).

Goals: one HVP <= 4x one gradient; top-20 Lanczos <= 60 HVPs of time. num_iters defaults
to 80 because 50 left ranks 13-20 unconverged on this model; the JSON reports the largest
top-k Ritz residual relative to lambda_max as a convergence check.
Prints one JSON line and writes it to benchmarks/results/hessian_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # This checkout's looped_jax, not an installed one.

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from looped_jax.analysis import hessian  # noqa: E402

VOCAB, WIDTH, LENGTH, BATCH, LOOPS = 16, 32, 32, 256, 3


def init_params(key):
  keys = jax.random.split(key, 6)
  scale = WIDTH ** -0.5
  dense = lambda k, shape: scale * jax.random.normal(k, shape)
  return {"embed": jax.random.normal(keys[0], (VOCAB, WIDTH)),
          "pos": jax.random.normal(keys[1], (LENGTH, WIDTH)),
          "attn": {"wq": dense(keys[2], (WIDTH, WIDTH)), "wk": dense(keys[3], (WIDTH, WIDTH)),
                   "wv": dense(keys[4], (WIDTH, WIDTH))},
          "out": dense(keys[5], (WIDTH, VOCAB))}


def loss_fn(params, batch):
  """Mean next-token cross-entropy of Looped-Attn; batch: int32 tokens [B, n + 1]."""
  inputs, targets = batch[:, :-1], batch[:, 1:]
  x = params["embed"][inputs] + params["pos"]                       # [B, n, D]
  a = params["attn"]
  mask = jnp.tril(jnp.ones((LENGTH, LENGTH), bool))
  for _ in range(LOOPS):  # One shared layer, applied LOOPS times.
    scores = (x @ a["wq"]) @ jnp.swapaxes(x @ a["wk"], 1, 2) / jnp.sqrt(WIDTH)
    scores = jnp.where(mask, scores, -1e9)
    x = x + jax.nn.softmax(scores, axis=-1) @ (x @ a["wv"])
  logp = jax.nn.log_softmax(x @ params["out"], axis=-1)
  return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], axis=-1))


def interleaved_times(fns: dict, rounds: int, calls: dict) -> dict[str, list[float]]:
  """Seconds per call of each fn, alternating fns every round so load drifts hit all alike.

  Each fn is called once first (compilation and warm-up, not timed).
  """
  for fn in fns.values():
    jax.block_until_ready(fn())
  times = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      for _ in range(calls[name]):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times[name].append(time.perf_counter() - start)
  return times


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rounds", type=int, default=4,
                      help="rounds of (5 grads, 5 HVPs, 1 Lanczos), interleaved")
  parser.add_argument("--num_iters", type=int, default=80)
  parser.add_argument("--k", type=int, default=20)
  parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "hessian_speed.json"))
  args = parser.parse_args()

  params = init_params(jax.random.key(0))
  batch = jax.random.randint(jax.random.key(1), (BATCH, LENGTH + 1), 0, VOCAB)
  op = hessian.hessian_operator(loss_fn, params, batch=batch)
  v = jax.random.normal(jax.random.key(2), (op.dim,))
  grad = jax.jit(jax.grad(loss_fn))

  fns = {"grad": lambda: grad(params, batch),
         "hvp": lambda: op.matvec(v),
         "lanczos": lambda: hessian.top_k_eigenvalues(op, jax.random.key(3), args.k,
                                                      args.num_iters)}
  times = interleaved_times(fns, args.rounds, {"grad": 5, "hvp": 5, "lanczos": 1})
  t_grad, t_hvp, t_lanczos = (statistics.median(times[n]) for n in ("grad", "hvp", "lanczos"))
  res = hessian.lanczos(op, jax.random.key(3), args.num_iters)
  ritz, residuals = hessian.ritz_residuals(res)
  top, top_residuals = ritz[::-1][:args.k], residuals[::-1][:args.k]

  device = jax.devices()[0]
  result = {
      "benchmark": "hessian_speed",
      "model": {"vocab": VOCAB, "width": WIDTH, "length": LENGTH, "batch": BATCH,
                "loops": LOOPS, "params": op.dim},
      "grad_s": t_grad,
      "hvp_s": t_hvp,
      "lanczos_s": t_lanczos,
      "lanczos_k": args.k,
      "lanczos_num_iters": args.num_iters,
      "hvp_over_grad": t_hvp / t_grad,
      "lanczos_over_hvp": t_lanczos / t_hvp,
      "goal_hvp_le_4_grad": t_hvp <= 4 * t_grad,
      "goal_lanczos_le_60_hvp": t_lanczos <= 60 * t_hvp,
      "lambda_max": float(top[0]),
      "lambda_k": float(top[-1]),
      "max_rel_residual_top_k": float(jnp.max(top_residuals) / top[0]),
      "min_s": {n: min(t) for n, t in times.items()},
      "calls_timed": {n: len(t) for n, t in times.items()},
      "machine": {"processor": platform.processor() or platform.machine(),
                  "nproc": os.cpu_count(), "loadavg_1m": os.getloadavg()[0],
                  "python": platform.python_version(), "jax": jax.__version__,
                  "device": f"{device.platform}:{device.device_kind}",
                  "num_devices": jax.device_count()},
  }
  line = json.dumps(result)
  print(line)
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(line + "\n")


if __name__ == "__main__":
  main()
