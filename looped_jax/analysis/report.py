"""Plots of finished runs (matplotlib, Agg: no display needed)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from looped_jax.train.metrics import METRICS_FILE, read_jsonl  # noqa: E402

# Panels drawn when a run logged them, in this order.
PANELS = (
    ("loss", "train loss"),
    ("eval/loss", "eval loss"),
    ("eval/accuracy/simple", "accuracy, simple samples"),
    ("eval/accuracy/complex", "accuracy, complex samples"),
    ("eval/accuracy", "accuracy"),
    ("eval/sequence_accuracy", "whole-sequence accuracy"),
)


def curves(records: list[dict], key: str) -> tuple[list[int], list[float]]:
  pts = [(r["step"], r[key]) for r in records if key in r]
  return [s for s, _ in pts], [v for _, v in pts]


def plot_comparison(run_dirs: dict[str, str], path: str) -> str:
  """One panel per metric in PANELS that any run logged, one line per run."""
  records = {name: read_jsonl(os.path.join(d, METRICS_FILE)) for name, d in run_dirs.items()}
  panels = [(k, t) for k, t in PANELS if any(k in r for rs in records.values() for r in rs)]
  if "eval/accuracy/simple" in dict(panels):  # the grouped panels say more than the overall one
    panels = [(k, t) for k, t in panels if k != "eval/accuracy"]
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
  for ax, (key, title) in zip(axes[0], panels):
    for name, rs in records.items():
      ax.plot(*curves(rs, key), label=name)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  axes[0][0].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
