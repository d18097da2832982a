"""The in-context learning report of `--mode=eval`: error vs k and error vs loops, with baselines.

For an in-context regression task, `write(exp, params, workdir)` evaluates the model on fresh
prompts (eval_seed, curriculum off: full d and n) and writes to workdir:

  icl_report.json     task, settings evaluated (name -> task overrides: the OOD suite as data),
                      error-vs-k curves of the model at its trained loop count and of the task's
                      baselines per setting, the model-vs-least-squares distance, the loop sweep
                      (error-vs-k curve at every swept loop count) and a summary at k = 2d
  error_vs_k.png      standard prompts: the model (solid) and the baselines (dashed), 90 % bands
  error_vs_k_<setting>.png   the same for each other setting
  error_vs_loops.png  error at k = 2d (capped at n - 1) vs loops 1 .. eval.icl_max_loops
                      (default 10x model.num_loops), baselines as horizontal lines

The loop sweep is one forward pass per batch: the model runs the largest loop count once and
returns the read-out of every loop (`per_loop=True`), so all swept counts cost one compile.
Models with one loop (the standard transformer) get no sweep.

`plot_variants(run_dirs, out_dir)` draws the variants of one config in one error-vs-k and one
error-vs-loops figure (looped vs standard vs no injection, with the baselines).

Curves are `icl_eval.aggregate` dicts (mean, std, bootstrap_low/high, count, normaliser).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np

from looped_jax import models, run_files
from looped_jax.analysis import icl_eval
from looped_jax.errors import ConfigError
from looped_jax.tasks import baselines as baselines_lib
from looped_jax.tasks.icl import InContextRegression

_REFERENCE_FLOOR = 1e-6  # baselines below this at k (exact least squares) are left off the
                         # error-vs-loops plot: a line at 1e-13 would squash the log axis
_BASELINE_CACHE: dict[tuple, dict] = {}  # variants of one config share the baselines' curves


def applies(task) -> bool:
  """Whether `task` is an in-context regression task (the report's domain)."""
  return isinstance(task, InContextRegression)


def settings_of(names) -> dict[str, dict[str, Any]]:
  """eval.icl_settings names -> {name: task overrides} from icl_eval.SUITE ("all": every one)."""
  names = tuple(names)
  if names == ("all",):
    return dict(icl_eval.SUITE)
  unknown = [n for n in names if n not in icl_eval.SUITE]
  if unknown or not names:
    raise ConfigError(f"eval.icl_settings={names!r} must be ('all',) or names from "
                      f"{', '.join(icl_eval.SUITE)}.")
  return {n: icl_eval.SUITE[n] for n in names}


def baselines_of(task: InContextRegression, names) -> dict[str, baselines_lib.Predictor]:
  """eval.icl_baselines names -> predictors among the task's relevant baselines (() = all)."""
  relevant = baselines_lib.relevant_baselines(task.name)
  if not names:
    return relevant
  unknown = [n for n in names if n not in relevant]
  if unknown:
    raise ConfigError(f"eval.icl_baselines contains {unknown[0]!r}; for task {task.name!r} "
                      f"choose from {', '.join(relevant)}.")
  return {n: relevant[n] for n in names}


def sweep_loops(trained: int, max_loops: int) -> list[int]:
  """Every loop count up to 2x trained, then steps of max(1, trained // 4), and max_loops."""
  dense = range(1, min(2 * trained, max_loops) + 1)
  sparse = range(2 * trained, max_loops + 1, max(1, trained // 4))
  return sorted({*dense, *sparse, max_loops})


def k_at_2d(task: InContextRegression) -> int:
  """k = 2d in-context examples, capped at the last position n - 1."""
  return min(2 * task.n_dims, task.n_points - 1)


def write(exp, params, workdir: str) -> dict[str, float]:
  """Evaluates, writes icl_report.json and the PNGs to workdir; returns summary scalars."""
  config, task = exp.config, exp.task
  e = config.eval
  settings = settings_of(e.icl_settings)
  names = baselines_of(task, e.icl_baselines)
  trained = int(config.model.num_loops)
  max_loops = int(e.icl_max_loops) or 10 * trained
  if max_loops < trained:
    raise ConfigError(f"eval.icl_max_loops={max_loops} must be 0 (10x model.num_loops) or >= "
                      f"model.num_loops={trained}.")
  kw = dict(n_prompts=int(e.icl_prompts), batch_size=int(e.batch_size), seed=int(config.eval_seed),
            train_seed=int(config.data_seed))

  at_trained = jax.jit(lambda p, x: models.apply(exp.graphdef, p, x, trained))
  model_res = icl_eval.evaluate_predictors(
      {"model": lambda x: at_trained(params, x), "least_squares": baselines_lib.least_squares()},
      task, settings, distance_to="least_squares", **kw)
  key = (task, tuple(settings), tuple(names), kw["n_prompts"], kw["batch_size"], kw["seed"])
  if key not in _BASELINE_CACHE:
    _BASELINE_CACHE[key] = icl_eval.evaluate_predictors(names, task, settings, **kw)
  base_res = _BASELINE_CACHE[key]

  error_vs_k = {s: {"model": model_res[s]["error"]["model"],
                    "model_to_least_squares": model_res[s]["distance"]["model"],
                    "baselines": base_res[s]["error"]} for s in settings}
  sweep = None
  if trained > 1 or config.model.num_layers == 1:
    sweep = _loop_sweep(exp, params, task, sweep_loops(trained, max_loops), **kw)
  k = k_at_2d(task)
  summary = _summary(error_vs_k.get("standard"), sweep, k, trained, max_loops)
  report = {
      "task": {"name": task.name, "n_dims": task.n_dims, "n_points": task.n_points,
               "normaliser": task.normaliser},
      "trained_loops": trained, "max_loops": max_loops, "k_at_2d": k,
      "n_prompts": kw["n_prompts"], "eval_seed": kw["seed"],
      "settings": settings, "error_vs_k": error_vs_k, "error_vs_loops": sweep,
      "summary": summary,
  }
  run_files.write_atomically(os.path.join(workdir, run_files.ICL_REPORT),
                             json.dumps(report, indent=1, sort_keys=True))
  _plot_run(report, workdir)
  return summary


def _loop_sweep(exp, params, task, loops: list[int], *, n_prompts, batch_size, seed,
                train_seed) -> dict[str, Any]:
  """Error-vs-k curves of the standard setting at every loop count in `loops`."""
  del train_seed  # checked by evaluate_predictors already
  top = max(loops)
  every_loop = jax.jit(lambda p, x: models.apply(exp.graphdef, p, x, top, per_loop=True))
  t = icl_eval.setting_task(task, {})
  errors, masks = [], []
  for batch in icl_eval.setting_batches(t, "standard", n_prompts, batch_size, seed):
    outs = np.asarray(every_loop(params, batch["inputs"]))  # [top, B, 2n, 1]
    per = [icl_eval.normalised_errors(outs[l - 1], batch, t) for l in loops]
    errors.append(np.stack([err for err, _ in per]))  # [len(loops), B, n]
    masks.append(per[0][1])
  errors, scored = np.concatenate(errors, axis=1), np.concatenate(masks)
  curves = {}
  for i, l in enumerate(loops):
    curve = icl_eval.aggregate(errors[i], scored, seed=seed)
    curves[str(l)] = curve | {"normaliser": t.normaliser}
  return {"setting": "standard", "loops": loops, "curves": curves}


def _summary(standard, sweep, k, trained, max_loops) -> dict[str, float]:
  """Flat scalars for eval.json: errors at k = 2d (model at b and at max loops, baselines)."""
  out: dict[str, float] = {}
  if standard is not None:
    out[f"icl/model@k={k}"] = standard["model"]["mean"][k]
    for name, curve in standard["baselines"].items():
      out[f"icl/{name}@k={k}"] = curve["mean"][k]
  if sweep is not None:
    for loops in (trained, max_loops):
      out[f"icl/model@k={k}@loops={loops}"] = sweep["curves"][str(loops)]["mean"][k]
  return {key: float(v) for key, v in out.items() if v is not None}


# --- plots ---------------------------------------------------------------------------------


def _ylim(report) -> tuple[float, float]:
  return (-0.02, 1.25) if report["task"]["normaliser"] != 1.0 else (-0.02, 1.5)


def _plot_run(report: dict, workdir: str) -> None:
  name, b = report["task"]["name"], report["trained_loops"]
  for setting, entry in report["error_vs_k"].items():
    suffix = "" if setting == "standard" else f"_{_safe(setting)}"
    icl_eval.plot_error_curves({f"model ({b} loops)": entry["model"]}, entry["baselines"],
                               os.path.join(workdir, f"error_vs_k{suffix}.png"),
                               title=f"{name}, {setting}", ylim=_ylim(report))
  if report["error_vs_loops"] is not None:
    _plot_loops({"model": report}, report, os.path.join(workdir, "error_vs_loops.png"))


def _plot_loops(reports: dict[str, dict], ref: dict, path: str) -> None:
  k = ref["k_at_2d"]
  curves = {n: {int(l): c for l, c in r["error_vs_loops"]["curves"].items()}
            for n, r in reports.items() if r["error_vs_loops"] is not None}
  standard = ref["error_vs_k"].get("standard")
  references = {}
  if standard is not None:
    references = {n: c for n, c in standard["baselines"].items()
                  if c["mean"][k] is not None and c["mean"][k] > _REFERENCE_FLOOR}
  icl_eval.plot_error_vs_loops(curves, k, path, reference=references,
                               title=f"{ref['task']['name']}, trained at "
                                     f"{ref['trained_loops']} loops")


def plot_variants(run_dirs: dict[str, str], out_dir: str) -> list[str]:
  """Variants side by side from their icl_report.json: error_vs_k.png and error_vs_loops.png
  in out_dir (baselines from the first variant). Returns the paths written ([] if none)."""
  reports = {}
  for name, d in run_dirs.items():
    path = os.path.join(d, run_files.ICL_REPORT)
    if os.path.exists(path):
      with open(path) as f:
        reports[name] = json.load(f)
  if not reports or not all("standard" in r["error_vs_k"] for r in reports.values()):
    return []
  ref = next(iter(reports.values()))
  written = [os.path.join(out_dir, "error_vs_k.png")]
  icl_eval.plot_error_curves(
      {f"{n} ({r['trained_loops']} loops)": r["error_vs_k"]["standard"]["model"]
       for n, r in reports.items()},
      ref["error_vs_k"]["standard"]["baselines"], written[0],
      title=f"{ref['task']['name']}, standard prompts", ylim=_ylim(ref))
  if any(r["error_vs_loops"] is not None for r in reports.values()):
    written.append(os.path.join(out_dir, "error_vs_loops.png"))
    _plot_loops(reports, ref, written[1])
  return written


def _safe(name: str) -> str:
  return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
