"""Tables of docs/looped_lm.md from trained configs/looped_lm.py runs.

  python docs/scripts/looped_lm_report.py RUNS [--out docs/data/looped_lm.jsonl]
      [--sequences 32]

RUNS holds one workdir per run, named VARIANT_sSEED (e.g. looped_s0, plt_s2, ouro_s0), each
trained with `python -m looped_jax.main --config=configs/looped_lm.py:VARIANT
--workdir=RUNS/VARIANT_sSEED --config.seed=SEED`. For every run it reads the final held-out
evaluation at each loop count (metrics.jsonl: eval/ at the trained count, eval@L/ at the
others), and for looped and ouro runs decodes `sequences` held-out sequences token by token
(models/decode.py) with each cache strategy and with per-token exit at several thresholds:
the held-out loss (nats per byte) and the mean loops per token. Writes one JSON row per
(run, measurement) to --out and prints the markdown tables (mean and spread over seeds).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import re
import sys

import jax
import jax.numpy as jnp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from helpers import repo_config  # noqa: E402
from looped_jax import jsonl, run_files  # noqa: E402
from looped_jax.models import decode  # noqa: E402
from looped_jax.tasks.base import token_cross_entropy  # noqa: E402
from looped_jax.train import build, trainer  # noqa: E402

EXITS = {"kl": (0.3, 0.1, 0.03, 0.01, 0.003), "residual": (1.5, 1.0, 0.7, 0.5, 0.3),
         "gate": (0.5, 0.8, 0.95, 0.99)}
EXIT_TEST = {"kl": "KL <", "residual": "residual <", "gate": "gate CDF >="}
CACHES = (("per_loop", 1), ("first_loop", 1), ("every_k", 2))


def final_eval(workdir: str) -> dict[int, float]:
  """loops -> the last held-out loss (nats per token) at that loop count."""
  config = json.load(open(os.path.join(workdir, run_files.CONFIG)))
  trained = config["model"]["num_loops"]
  out = {}
  for record in jsonl.read(os.path.join(workdir, run_files.METRICS)):
    for key, value in record.items():
      m = re.fullmatch(r"eval(?:@(\d+))?/loss", key)
      if m:
        out[int(m.group(1) or trained)] = value
  return dict(sorted(out.items()))


def decoding_rows(variant: str, seed: int, workdir: str, sequences: int) -> list[dict]:
  config = repo_config("looped_lm", variant)
  config.seed = seed
  exp = build.Experiment.build(config)
  _, state = trainer.restore_latest(exp, workdir)
  params = jax.device_get(state["params"])
  batch = exp.task.held_out().sample(jax.random.key(config.eval_seed), sequences)
  loops = config.model.num_loops

  def measure(**kwargs):
    out = decode.decode_tokens(exp.graphdef, params, batch["inputs"], **kwargs)
    loss = float(jnp.mean(token_cross_entropy(out.logits, batch["targets"])))
    return {"loss": loss, "mean_loops": float(jnp.mean(out.loops))}

  rows = []
  for strategy, share in CACHES:
    for n in (loops, 2 * loops):
      rows.append({"kind": "cache", "cache": strategy, "share_every": share, "num_loops": n}
                  | measure(num_loops=n, cache_spec=decode.CacheSpec(strategy, share)))
  for criterion, thresholds in EXITS.items():
    if criterion == "gate" and not config.model.exit_gate:
      continue
    for threshold in thresholds:
      spec = decode.ExitSpec(criterion, threshold)
      rows.append({"kind": "exit", "criterion": criterion, "threshold": threshold,
                   "num_loops": loops} | measure(num_loops=loops, exit_spec=spec))
  return rows


def _spread(values: list[float]) -> str:
  mean = sum(values) / len(values)
  if len(values) == 1:
    return f"{mean:.3f}"
  return f"{mean:.3f} ± {(max(values) - min(values)) / 2:.3f}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs")
  parser.add_argument("--out", default=os.path.join(ROOT, "docs", "data", "looped_lm.jsonl"))
  parser.add_argument("--sequences", type=int, default=32)
  args = parser.parse_args()
  rows = []
  for name in sorted(os.listdir(args.runs)):
    m = re.fullmatch(r"(\w+?)_s(\d+)", name)
    workdir = os.path.join(args.runs, name)
    if not m or not os.path.exists(os.path.join(workdir, run_files.METRICS)):
      continue
    variant, seed = m.group(1), int(m.group(2))
    base = {"variant": variant, "seed": seed}
    for n, loss in final_eval(workdir).items():
      rows.append(base | {"kind": "eval", "num_loops": n, "loss": loss})
    if variant in ("looped", "ouro"):
      rows += [base | r for r in decoding_rows(variant, seed, workdir, args.sequences)]
    print(f"read {name}", file=sys.stderr, flush=True)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    for r in rows:
      f.write(json.dumps(r) + "\n")

  evals = collections.defaultdict(list)
  for r in rows:
    if r["kind"] == "eval":
      evals[(r["variant"], r["num_loops"])].append(r["loss"] / math.log(2))
  counts = sorted({n for _, n in evals})
  print("\n| model | " + " | ".join(f"L = {n}" for n in counts) + " |")
  print("|---|" + "---|" * len(counts))
  for variant in sorted({v for v, _ in evals}):
    cells = [_spread(evals[(variant, n)]) if (variant, n) in evals else "" for n in counts]
    print(f"| {variant} | " + " | ".join(cells) + " |")

  decoded = collections.defaultdict(list)
  for r in rows:
    if r["kind"] == "cache":
      cache = r["cache"] + (f" (m = {r['share_every']})" if r["cache"] == "every_k" else "")
      decoded[(r["variant"], "cache " + cache, r["num_loops"])].append(r)
    elif r["kind"] == "exit":
      what = f"exit at {EXIT_TEST[r['criterion']]} {r['threshold']}"
      decoded[(r["variant"], what, r["num_loops"])].append(r)
  print("\n| model | decoding | loops run | mean loops per token | bits per byte |")
  print("|---|---|---|---|---|")
  for (variant, what, n), rs in decoded.items():
    bits = [r["loss"] / math.log(2) for r in rs]
    print(f"| {variant} | {what} | {n} | {_spread([r['mean_loops'] for r in rs])} | "
          f"{_spread(bits)} |")


if __name__ == "__main__":
  main()
