"""In-context learning evaluation: error-vs-k curves, bootstrap bands, the OOD suite, plots.

Metric (Garg et al., arXiv 2208.01066; Yang et al., arXiv 2311.12424; docs/papers.md, "Yang
et al."): at k in-context examples, the squared error of the prediction of y_{k+1} divided by
`task.normaliser` (d; s for sparse LR; 1 for trees), averaged over prompts, with a 90 %
bootstrap band (1000 resamples of the prompts, seeded).
Index k of every curve is the number of in-context examples, k = 0 .. n - 1.

A predictor is anything with the model signature `predictor(inputs [B, 2n, d]) -> [B, 2n, 1]`:
a jitted model apply at a fixed loop count, or a `tasks.baselines` entry.

The suite is data: `SUITE` maps a setting name to task field overrides. Every setting runs with
the curriculum off (full d and n). Curves are plain dicts of lists, JSON-serialisable; positions
no prompt scores (orthogonal queries exist only for k < d) hold None.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from looped_jax.errors import ConfigError
from looped_jax.tasks.icl import InContextRegression

# A predictor maps a batch's interleaved prompts, inputs [B, 2n, d], to outputs shaped as the
# model's, [B, 2n, 1], read at the x positions (tasks/baselines.py's baselines too).
Predictor = Callable[[Any], Any]
# An error-vs-k curve: {"mean", "std", "bootstrap_low", "bootstrap_high", ...}, each a list of
# n floats (k = 0..n-1 in-context examples; None where no prompt is scored at that k).
Curve = dict[str, Any]

_SCALES = (0.333, 0.5, 2.0, 3.0)  # Garg's scale-x / scale-y grid

# Setting name -> task field overrides (dtsip/in-context-learning `build_evals`).
SUITE: dict[str, dict[str, Any]] = {
    "standard": {},
    "skewed": {"x_covariance": "skewed"},
    "half_subspace": {"x_covariance": "half_subspace"},
    **{f"scale_x={s:g}": {"x_scale": s} for s in _SCALES},
    **{f"scale_y={s:g}": {"y_scale": s} for s in _SCALES},
    "noisy_y": {"noise_std": 1.0, "renormalize_ys": True},
    "orthogonal_train_test": {"prompting": "orthogonal_train_test"},
    "overlapping_train_test": {"prompting": "overlapping_train_test"},
    "random_quadrants": {"prompting": "random_quadrants"},
}


def setting_task(task: InContextRegression, overrides: Mapping[str, Any]) -> InContextRegression:
  """The task of one setting: `task` with the curriculum off and `overrides` applied."""
  return dataclasses.replace(task, **{"curriculum": False, **overrides})


# --- metrics ---------------------------------------------------------------------------------


def normalised_errors(outputs, batch: Mapping[str, Any], task: InContextRegression):
  """Per-prompt normalised squared error and which positions are scored.

  outputs [B, 2n, 1] -> (errors [B, n] float64, scored [B, n] bool); errors / task.normaliser.
  """
  pred = np.asarray(outputs, np.float64)[:, 0::2, 0]
  err = np.square(pred - np.asarray(batch["ys"], np.float64)) / task.normaliser
  return err, np.asarray(batch["weights"])[:, 0::2] > 0


def prediction_distance(outputs_a, outputs_b, task: InContextRegression):
  """Squared difference of two predictors' outputs at the x-positions / task.normaliser.

  [B, 2n, 1], [B, 2n, 1] -> [B, n] float64.
  """
  a = np.asarray(outputs_a, np.float64)[:, 0::2, 0]
  b = np.asarray(outputs_b, np.float64)[:, 0::2, 0]
  return np.square(a - b) / task.normaliser


def aggregate(values: np.ndarray, scored: np.ndarray | None = None, *, n_bootstrap: int = 1000,
              confidence: float = 0.9, seed: int = 0) -> Curve:
  """Mean over prompts per position with a bootstrap band.

  values [P, n] (rows = prompts), scored [P, n] bool (None: all). Each position resamples its own
  scored rows with replacement `n_bootstrap` times; the band is the central `confidence` interval
  of the resampled means. Returns JSON-ready lists: mean, std, bootstrap_low, bootstrap_high,
  count (positions without scored rows give None and count 0).
  """
  values = np.asarray(values, np.float64)
  scored = np.ones(values.shape, bool) if scored is None else np.asarray(scored, bool)
  rng = np.random.default_rng(seed)
  lo_q, hi_q = (1 - confidence) / 2, (1 + confidence) / 2
  n = values.shape[1]
  out: dict[str, list] = {key: [None] * n for key in ("mean", "std", "bootstrap_low",
                                                      "bootstrap_high")}
  out["count"] = scored.sum(0).astype(int).tolist()
  # Positions sharing a scored-row pattern share one resampling draw (one draw when all rows
  # are scored); the draw is a count matrix so the resampled means are one matmul.
  patterns: dict[bytes, list[int]] = {}
  for k in range(n):
    if scored[:, k].any():
      patterns.setdefault(np.packbits(scored[:, k]).tobytes(), []).append(k)
  for cols in patterns.values():
    rows = np.flatnonzero(scored[:, cols[0]])
    v = values[np.ix_(rows, cols)]  # [m, c]
    m = rows.size
    draws = rng.integers(0, m, size=(n_bootstrap, m)) + m * np.arange(n_bootstrap)[:, None]
    counts = np.bincount(draws.ravel(), minlength=n_bootstrap * m).reshape(n_bootstrap, m)
    means = counts @ v / m  # [n_bootstrap, c]
    lo, hi = np.quantile(means, [lo_q, hi_q], axis=0)
    for i, k in enumerate(cols):
      out["mean"][k] = float(v[:, i].mean())
      out["std"][k] = float(v[:, i].std(ddof=1)) if m > 1 else 0.0
      out["bootstrap_low"][k] = float(lo[i])
      out["bootstrap_high"][k] = float(hi[i])
  return out


# --- running predictors over the suite -------------------------------------------------------


def _setting_key(seed: int, name: str) -> jax.Array:
  # crc32, not hash(): stable across processes, so every predictor sees the same prompts.
  return jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)


def setting_batches(task: InContextRegression, name: str, n_prompts: int, batch_size: int,
                    seed: int):
  """Yields the batches of one setting: n_prompts curves' worth of rows (n_prompts *
  task.rows_per_prompt rows, so query settings get n_prompts rows per position), in chunks of
  batch_size curves. Deterministic in (seed, name)."""
  key = _setting_key(seed, name)
  rows = task.rows_per_prompt
  for i, start in enumerate(range(0, n_prompts, batch_size)):
    size = min(batch_size, n_prompts - start) * rows
    yield jax.device_get(_sampler(task, size)(jax.random.fold_in(key, i)))


@functools.lru_cache(maxsize=64)
def _sampler(task: InContextRegression, rows: int):
  # Cached per (task, rows): re-evaluating a setting (e.g. at every loop count) reuses the
  # compiled sampler instead of tracing a fresh bound method each time.
  return jax.jit(lambda key: task.sample(key, rows))


def evaluate_predictors(predictors: Mapping[str, Predictor], task: InContextRegression,
                        settings: Mapping[str, Mapping[str, Any]] | Sequence[str] | None = None, *,
                        n_prompts: int = 1280, batch_size: int = 64, seed: int = 1,
                        train_seed: int | None = None, distance_to: str | None = None,
                        n_bootstrap: int = 1000) -> dict[str, dict[str, Any]]:
  """Runs every predictor on the same prompts of every setting.

  settings: name -> overrides, a list of SUITE names, or None for the whole SUITE.
  Returns {setting: {"error": {predictor: curve}, "distance": {predictor: curve}}}; distances
  (normalised mean squared difference of predictions to `distance_to`) only when it is given.
  `train_seed` guards against scoring on training prompts (docs/papers.md, "Pitfalls" 5).
  """
  if train_seed is not None and train_seed == seed:
    raise ConfigError(f"eval seed={seed} equals the training seed; pick a different eval seed.")
  if distance_to is not None and distance_to not in predictors:
    raise ConfigError(f"distance_to={distance_to!r} is not one of the predictors "
                      f"{', '.join(predictors)}.")
  if settings is None:
    settings = SUITE
  elif not isinstance(settings, Mapping):
    unknown = [s for s in settings if s not in SUITE]
    if unknown:
      raise ConfigError(f"unknown eval setting {unknown[0]!r}; choose from {', '.join(SUITE)}.")
    settings = {s: SUITE[s] for s in settings}

  results: dict[str, dict[str, Any]] = {}
  for name, overrides in settings.items():
    t = setting_task(task, overrides)
    errors: dict[str, list] = {p: [] for p in predictors}
    dists: dict[str, list] = {p: [] for p in predictors}
    masks = []
    for batch in setting_batches(t, name, n_prompts, batch_size, seed):
      outputs = {p: np.asarray(fn(batch["inputs"])) for p, fn in predictors.items()}
      for p, out in outputs.items():
        err, scored = normalised_errors(out, batch, t)
        errors[p].append(err)
        if distance_to is not None:
          dists[p].append(prediction_distance(out, outputs[distance_to], t))
      masks.append(scored)
    scored = np.concatenate(masks)
    agg = lambda v: aggregate(np.concatenate(v), scored, n_bootstrap=n_bootstrap, seed=seed)
    entry = {"error": {p: agg(v) for p, v in errors.items()}}
    if distance_to is not None:
      entry["distance"] = {p: agg(v) for p, v in dists.items() if p != distance_to}
    for curves in entry.values():
      for curve in curves.values():
        curve["normaliser"] = t.normaliser
    results[name] = entry
  return results


def evaluate_suite(predictor: Predictor, task: InContextRegression,
                   settings: Mapping[str, Mapping[str, Any]] | Sequence[str] | None = None,
                   **kwargs) -> dict[str, Curve]:
  """One predictor over the suite: {setting: error-vs-k curve}. kwargs: see evaluate_predictors."""
  res = evaluate_predictors({"predictor": predictor}, task, settings, **kwargs)
  return {name: entry["error"]["predictor"] for name, entry in res.items()}


# --- plots ---------------------------------------------------------------------------------


def _figure(figsize=(6.0, 4.0)):
  # Figure + Agg canvas directly: no pyplot global state, no backend switch at import.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=figsize)
  FigureCanvasAgg(fig)
  return fig


def _xy(curve: Curve, key: str):
  ys = curve[key]
  pts = [(k, v) for k, v in enumerate(ys) if v is not None]
  return np.array([p[0] for p in pts]), np.array([p[1] for p in pts], np.float64)


def plot_error_curves(model_curves: Mapping[str, Curve], baseline_curves: Mapping[str, Curve],
                      path: str | None = None, *, title: str | None = None, logy: bool = False,
                      ylim: tuple[float, float] | None = None):
  """Error vs in-context examples: models solid with bands, baselines dashed with bands.
  Saves to `path` when given; returns the matplotlib Figure."""
  fig = _figure()
  ax = fig.add_subplot(1, 1, 1)
  for style, curves in (("-", model_curves), ("--", baseline_curves)):
    for name, curve in curves.items():
      x, mean = _xy(curve, "mean")
      (line,) = ax.plot(x, mean, style, lw=2 if style == "-" else 1.2, label=name)
      _, lo = _xy(curve, "bootstrap_low")
      _, hi = _xy(curve, "bootstrap_high")
      ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
  ax.set_xlabel("in-context examples k")
  ax.set_ylabel("squared error / normaliser")
  return _finish(fig, ax, path, logy=logy, ylim=ylim, title=title)


def plot_error_vs_loops(curves: Mapping[str, Mapping[int, Curve]], k: int,
                        path: str | None = None, *,
                        reference: Mapping[str, Curve] | None = None,
                        title: str | None = None, logy: bool = True):
  """Error at k in-context examples vs loop count. curves: name -> {loops: curve} (one curve
  per evaluated loop count); reference: name -> curve drawn as a horizontal dashed line (e.g.
  least squares). Saves to `path` when given; returns the Figure."""
  fig = _figure()
  ax = fig.add_subplot(1, 1, 1)
  for name, by_loops in curves.items():
    loops = sorted(by_loops)
    pick = lambda key: np.array([by_loops[t][key][k] for t in loops], np.float64)
    (line,) = ax.plot(loops, pick("mean"), "-o", ms=3, label=name)
    ax.fill_between(loops, pick("bootstrap_low"), pick("bootstrap_high"),
                    color=line.get_color(), alpha=0.2, lw=0)
  for name, curve in (reference or {}).items():
    ax.axhline(curve["mean"][k], ls="--", lw=1, color="gray")
    ax.annotate(name, (0.99, curve["mean"][k]), xycoords=("axes fraction", "data"),
                ha="right", va="bottom", fontsize=7, color="gray")
  ax.set_xlabel("loops")
  ax.set_ylabel(f"squared error / normaliser at k = {k}")
  return _finish(fig, ax, path, logy=logy, title=title)


def _finish(fig, ax, path, *, logy, title, ylim=None):
  """Shared styling of the ICL plots; saves to `path` when given and returns the Figure."""
  if logy:
    ax.set_yscale("log")
  if ylim is not None:
    ax.set_ylim(*ylim)
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  if path is not None:
    fig.savefig(path, dpi=120)
  return fig
