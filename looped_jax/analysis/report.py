"""Plots of finished runs (matplotlib, Agg: no display needed)."""

from __future__ import annotations

import os

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from looped_jax import jsonl, run_files  # noqa: E402
from looped_jax.analysis import seeds  # noqa: E402

# Hessian curves beside the spectra: (metric, title, per eps?); the eps-dependent ones are
# drawn for the smallest eps fraction a run logged.
SPECTRUM_CURVES = (("kappa_valley", "kappa(H_valley)", True), ("river_dim", "river dimension", True),
                   ("low_valley_inv_sum", "Theorem 1's C = sum 1/lambda", True),
                   ("lambda_max", "lambda_max", False),
                   ("low_valley_dim", "valley eigenvalues below tau", True),
                   ("spectral_entropy", "spectral entropy", False))
CURVE_COLUMNS = 3

# Panels drawn when a run logged them, in this order.
PANELS = (
    ("loss", "train loss"),
    ("eval/loss", "eval loss"),
    ("eval/accuracy/simple", "accuracy, simple samples"),
    ("eval/accuracy/complex", "accuracy, complex samples"),
    ("eval/accuracy", "accuracy"),
    ("eval/argmax_accuracy/simple", "argmax accuracy, simple samples"),
    ("eval/argmax_accuracy/complex", "argmax accuracy, complex samples"),
    ("eval/sequence_accuracy", "whole-sequence accuracy"),
)


def curves(records: list[dict], key: str) -> tuple[list[int], list[float]]:
  pts = [(r["step"], r[key]) for r in records if key in r]
  return [s for s, _ in pts], [v for _, v in pts]


def plot_comparison(run_dirs: dict[str, str], path: str) -> str | None:
  """One panel per metric in PANELS that any run logged, one line per run; None (and no
  file) when no metric varies, e.g. after train.num_steps=0."""
  records = {name: jsonl.read(os.path.join(d, run_files.METRICS)) for name, d in run_dirs.items()}
  panels = [(k, t) for k, t in PANELS if _varies(records, k)]
  if "eval/accuracy/simple" in dict(panels):  # the grouped panels say more than the overall one
    panels = [(k, t) for k, t in panels if k != "eval/accuracy"]
  if not panels:
    return None
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
  for ax, (key, title) in zip(axes[0], panels):
    plot_runs(ax, records, key)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  axes[0][0].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def plot_runs(ax, records: dict[str, list[dict]], key: str, **style) -> None:
  """One line per run; runs named MODEL_sK drawn as each model's mean over its seeds with
  the min-max range shaded (analysis/seeds.py)."""
  if not seeds.has_seeds(records):
    for name, rs in records.items():
      ax.plot(*curves(rs, key), label=name or "run", **style)
    return
  for model, names in seeds.group(records).items():
    b = seeds.band([records[n] for n in names], key)
    if not len(b.steps):
      continue
    line, = ax.plot(b.steps, b.mean, label=f"{model} ({b.num_seeds} seeds)", **style)
    ax.fill_between(b.steps, b.low, b.high, color=line.get_color(), alpha=0.25, linewidth=0)


def _varies(records: dict[str, list[dict]], key: str) -> bool:
  """Whether any run logged `key` with more than one value (a constant panel says nothing)."""
  return len({r[key] for rs in records.values() for r in rs if key in r}) > 1


def has_spectra(run_dirs: dict[str, str]) -> bool:
  return any(jsonl.read(os.path.join(d, run_files.SPECTRA)) for d in run_dirs.values())


def _eps_suffix(records: list[dict]) -> str | None:
  fracs = sorted({k.split("@", 1)[1] for r in records for k in r
                  if k.startswith("hessian/kappa_valley@")}, key=float)
  return fracs[0] if fracs else None


def plot_spectra(run_dirs: dict[str, str], path: str, bins: int = 60) -> str:
  """Hessian spectra over training, one row per run (Single vs Looped side by side).

  Left: a heatmap, step on x, eigenvalue on y (asinh scale around s = 1e-4 * max|lambda|,
  so signs, the river near 0 and the steep walls all show), colour = log(1 + count).
  Right: kappa(H_valley), river dimension, Theorem 1's C, lambda_max, the count of valley
  eigenvalues below tau and the spectral entropy over steps, all runs in each panel.
  """
  spectra = {n: jsonl.read(os.path.join(d, run_files.SPECTRA)) for n, d in run_dirs.items()}
  spectra = {n: rs for n, rs in spectra.items() if rs}
  records = {n: jsonl.read(os.path.join(run_dirs[n], run_files.METRICS)) for n in spectra}
  top = max(max(abs(v) for r in rs for v in r["eigenvalues"]) for rs in spectra.values())
  scale = 1e-4 * top if top > 0 else 1.0
  edges = np.linspace(-np.arcsinh(top / scale), np.arcsinh(top / scale), bins + 1)
  curve_rows = -(-len(SPECTRUM_CURVES) // CURVE_COLUMNS)
  nrows, ncols = max(len(spectra), curve_rows), 1 + CURVE_COLUMNS
  fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
  for ax in axes.flat:
    ax.axis("off")
  for row, (name, rs) in enumerate(spectra.items()):
    steps = [r["step"] for r in rs]
    counts = np.stack([np.histogram(np.arcsinh(np.asarray(r["eigenvalues"]) / scale), edges)[0]
                       for r in rs], axis=1)
    ax = axes[row][0]
    ax.axis("on")
    x = np.arange(len(steps) + 1) - 0.5  # one column per recorded step, evenly spaced
    mesh = ax.pcolormesh(x, edges, np.log1p(counts), cmap="viridis", shading="flat")
    ticks = np.arange(len(steps))[:: max(1, len(steps) // 6)]
    ax.set_xticks(ticks, [str(steps[i]) for i in ticks])
    yt = np.linspace(edges[0], edges[-1], 7)
    ax.set_yticks(yt, [f"{v:.2g}" for v in scale * np.sinh(yt)])
    ax.set_title(f"{name or 'run'}: Hessian spectrum (loops {rs[-1]['loops']})")
    ax.set_xlabel("step")
    ax.set_ylabel("eigenvalue (asinh scale)")
    fig.colorbar(mesh, ax=ax, label="log(1 + count)")
  eps = _eps_suffix([r for rs in records.values() for r in rs])
  for i, (metric, title, per_eps) in enumerate(SPECTRUM_CURVES):
    ax = axes[i // CURVE_COLUMNS][1 + i % CURVE_COLUMNS]  # every run on one axis
    ax.axis("on")
    if per_eps and eps is None:
      continue
    plot_runs(ax, records, f"hessian/{metric}@{eps}" if per_eps else f"hessian/{metric}",
              marker=".")
    ax.set_title(f"{title}, eps {eps} lambda_max" if per_eps else title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if metric == "kappa_valley":
      ax.set_yscale("log")
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
