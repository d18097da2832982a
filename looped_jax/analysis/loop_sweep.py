"""Loop sweep of a trained token model: accuracy vs test-time loops, adaptive exit, fixed points.

`write(exp, params, workdir)` is the `--mode=eval` hook for token tasks (configured by
`eval.loop_sweep`; off while `max_factor` is 0). For the training setting and every harder
test setting in `eval.loop_sweep.tasks` (task field overrides, e.g. {"bits64": {"n_bits": 64}})
it measures, on one held-out batch (eval_seed):

  * per-token and whole-sequence accuracy after every loop 1..M, M = max_factor * num_loops
    (one scan: each loop's read-out is scored as it is produced), and the mean relative
    residual ||h_{t+1} - h_t|| / ||h_t|| along the way;
  * adaptive exit by residual and by KL between successive loops' predictions (Geiping),
    per sequence, up to M loops: mean / max loops used and the accuracy at exit;
  * `fixed_point.diagnose` of the model's `loop` map at the state after M loops, on the first
    `diagnose_examples` sequences (reachability, input dependence, geometry), for the
    settings in `diagnose_settings` (all when empty).

Writes loop_sweep.json and loop_sweep.png in the workdir. Adaptive exit and the fixed-point
diagnostics need an autonomous loop map h -> G(h, e); with timestep conditioning G depends on
the loop index, so they are reported as skipped. `python -m looped_jax.analysis.loop_sweep
DIR` draws all variants under DIR into DIR/loop_sweep.png and prints a summary table.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from looped_jax import models, run_files, tasks
from looped_jax.analysis import adaptive_exit, fixed_point
from looped_jax.errors import check
from looped_jax.tasks.base import TokenTask

PLOT_FILE = "loop_sweep.png"
SWEEP_SEED_OFFSET = 10_000  # sweep batch i uses fold_in(key(eval_seed), offset + i)
# diagnose() iteration counts: enough for tiny models, a few seconds each on CPU.
DIAGNOSE = dict(power_iters=200, solve_iters=200, lipschitz_iters=10, lanczos_iters=32)


def settings(config: Any) -> dict[str, TokenTask]:
  """name -> task: "train" (config.task) then each of eval.loop_sweep.tasks."""
  out = {"train": tasks.get(config.task)}
  for name, overrides in dict(config.eval.loop_sweep.tasks).items():
    out[name] = tasks.get(dict(config.task) | dict(overrides))
  return out


def _scores(outputs: jax.Array, batch: dict) -> tuple[jax.Array, jax.Array]:
  """(per-token accuracy over scored positions, whole-sequence accuracy) of one read-out."""
  correct = (jnp.argmax(outputs, -1) == batch["targets"]).astype(jnp.float32)
  w = batch["weights"]
  token = jnp.sum(correct * w) / jnp.maximum(jnp.sum(w), 1.0)
  seq = jnp.mean((jnp.sum((1.0 - correct) * w, axis=1) == 0).astype(jnp.float32))
  return token, seq


def _curve(graphdef, params, batch: dict, max_loops: int) -> dict[str, np.ndarray]:
  """Accuracies and mean residual after loops 1..max_loops, [max_loops] each."""

  @jax.jit
  def run(params, batch):
    model = models.merge(graphdef, params)
    e = model.encode(batch["inputs"])

    def body(h, t):
      h_next = model.loop(h, e, None, t)
      res = jax.vmap(fixed_point.relative_residual)(h, h_next)
      return h_next, (*_scores(model.readout(h_next), batch), jnp.mean(res))

    _, (token, seq, res) = jax.lax.scan(body, model.initial_state(e), jnp.arange(max_loops))
    return token, seq, res

  token, seq, res = jax.device_get(run(params, batch))
  return {"token_accuracy": token, "sequence_accuracy": seq, "residual": res}


def _loop_map(model):
  """The per-example loop map and read-out that the analysis functions vmap."""
  step = lambda h, e: model.loop(h[None], e[None])[0]
  readout = lambda h: model.readout(h[None])[0]
  return step, readout


def _exits(model, batch: dict, max_loops: int, thresholds: dict[str, float]) -> dict:
  e = model.encode(batch["inputs"])
  step, readout = _loop_map(model)
  out = {}
  for criterion, threshold in thresholds.items():
    result = adaptive_exit.adaptive_exit(step, readout, model.initial_state(e), e, max_loops,
                                         criterion, threshold)
    token, seq = _scores(result.logits, batch)
    loops = np.asarray(result.loops)
    out[criterion] = {"threshold": threshold, "mean_loops": float(loops.mean()),
                      "max_loops_used": int(loops.max()),
                      "frac_hit_budget": float(np.mean(loops == max_loops)),
                      "token_accuracy": float(token), "sequence_accuracy": float(seq)}
  return out


def _diagnose(graphdef, params, batch: dict, max_loops: int, examples: int,
              key: jax.Array) -> dict:
  # On one device: the diagnostics are per-example and small, so replicating them over the mesh
  # buys nothing, and on a multi-device CPU host (jax 0.10.2) the replicated program with the
  # batched dense SVD never returned. This gathers the parameters onto the first local device.
  device = jax.local_devices()[0]
  model = models.merge(graphdef, jax.device_put(params, device))
  e = model.encode(jax.device_put(batch["inputs"][:examples], device))
  step, _ = _loop_map(model)
  return fixed_point.diagnose(step, model.initial_state(e), e, max_loops, key, **DIAGNOSE)


def sweep(exp, params) -> dict[str, Any]:
  """The loop sweep of `params` (see the module docstring) as a JSON-serialisable dict."""
  config = exp.config
  s = config.eval.loop_sweep
  train_loops = int(config.model.num_loops)
  max_loops = int(s.max_factor) * train_loops
  model = models.merge(exp.graphdef, params)
  autonomous = not model.spec.timestep
  key = jax.random.key(config.eval_seed)
  out = {"train_loops": train_loops, "max_loops": max_loops, "batch_size": int(s.batch_size),
         "loops": list(range(1, max_loops + 1)), "settings": {}, "order": []}
  for i, (name, task) in enumerate(settings(config).items()):
    if model.positions is not None:  # learned slots; rope and none have no length limit
      check(task.seq_len <= model.positions.shape[0],
            f"eval.loop_sweep setting {name!r} has sequences of {task.seq_len} positions but "
            f"the model's learned positions stop at {model.positions.shape[0]}; raise "
            "model.max_len.")
    batch = jax.jit(lambda k, t=task: t.sample(k, int(s.batch_size)))(
        jax.random.fold_in(key, SWEEP_SEED_OFFSET + i))
    curve = _curve(exp.graphdef, params, batch, max_loops)
    entry = {"task": dict(vars(task)), "seq_len": task.seq_len}
    entry |= {k: [float(x) for x in v] for k, v in curve.items()}
    at = lambda factor: {k: float(curve[k][factor * train_loops - 1])
                         for k in ("token_accuracy", "sequence_accuracy")}
    entry["at_train_loops"] = at(1)
    entry["at_max_loops"] = at(int(s.max_factor))
    entry["best"] = {"sequence_accuracy": float(np.max(curve["sequence_accuracy"])),
                     "loops": int(np.argmax(curve["sequence_accuracy"])) + 1}
    if autonomous:
      entry["adaptive_exit"] = _exits(model, batch, max_loops,
                                      {"residual": float(s.residual_threshold),
                                       "kl": float(s.kl_threshold)})
      if s.diagnose_examples and (not s.diagnose_settings or name in s.diagnose_settings):
        entry["fixed_point"] = _diagnose(exp.graphdef, params, batch, max_loops,
                                         int(s.diagnose_examples), jax.random.fold_in(key, i))
    else:
      entry["adaptive_exit"] = entry["fixed_point"] = {
          "skipped": "timestep conditioning makes the loop map depend on the loop index"}
    out["settings"][name] = entry
    out["order"].append(name)  # JSON keys are sorted on disk
  return out


def write(exp, params, workdir: str) -> dict[str, Any] | None:
  """Runs the sweep when configured for a token task; writes loop_sweep.json / .png."""
  if not exp.config.eval.loop_sweep.max_factor or not isinstance(exp.task, TokenTask):
    return None
  result = sweep(exp, params)
  run_files.write_atomically(os.path.join(workdir, run_files.LOOP_SWEEP),
                             json.dumps(result, indent=1, sort_keys=True))
  plot({"": result}, os.path.join(workdir, PLOT_FILE))
  return result


def plot(results: dict[str, dict], path: str) -> str:
  """Rows: runs; columns: settings. Sequence (solid) and token (dashed) accuracy vs loops on
  the left axis, mean residual (grey, log) on the right; the training loop count dotted."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = list(results)
  setting_names = next(iter(results.values()))["order"]
  fig, axes = plt.subplots(len(names), len(setting_names), squeeze=False, sharex=True,
                           figsize=(3.6 * len(setting_names), 2.4 * len(names) + 0.6))
  for r, name in enumerate(names):
    res = results[name]
    for c, setting in enumerate(setting_names):
      ax, entry = axes[r][c], res["settings"][setting]
      loops = res["loops"]
      ax.plot(loops, entry["sequence_accuracy"], label="sequence acc")
      ax.plot(loops, entry["token_accuracy"], "--", label="token acc")
      ax.axvline(res["train_loops"], color="k", ls=":", lw=0.8)
      ax.set_ylim(-0.02, 1.02)
      twin = ax.twinx()
      twin.semilogy(loops, np.maximum(entry["residual"], 1e-12), color="0.6", lw=0.8)
      if c == len(setting_names) - 1:
        twin.set_ylabel("residual", fontsize=7)
      fp = entry.get("fixed_point", {})
      rho = fp.get("spectral_radius", {}).get("median")
      sens = fp.get("fd_sensitivity", {}).get("median")
      info = (f" ρ={rho:.2f} S={sens:.2g}" if rho is not None and sens is not None else "")
      ax.set_title(f"{name} {setting} (n={entry['seq_len']}){info}".strip(), fontsize=7)
      if c == 0:
        ax.set_ylabel("accuracy")
      if r == len(names) - 1:
        ax.set_xlabel("test-time loops")
  axes[0][0].legend(fontsize=6, loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def summary_table(results: dict[str, dict]) -> str:
  """Markdown: per run and setting, accuracies at 1x and max loops, best, exits, diagnostics."""
  rows = ["| run | setting | seq acc @1x | seq acc @max | tok acc @max | best seq acc (loops) "
          "| KL exit loops / seq acc | residual exit loops / seq acc | converged frac "
          "| median ρ | median FD sens |", "|" + "---|" * 11]
  fmt = lambda v, f="{:.3f}": "–" if v is None else f.format(v)
  for name, res in results.items():
    for setting in res["order"]:
      e = res["settings"][setting]
      ex, fp = e.get("adaptive_exit", {}), e.get("fixed_point", {})
      kl, rs = ex.get("kl", {}), ex.get("residual", {})
      rows.append(
          f"| {name} | {setting} | {fmt(e['at_train_loops']['sequence_accuracy'])} "
          f"| {fmt(e['at_max_loops']['sequence_accuracy'])} "
          f"| {fmt(e['at_max_loops']['token_accuracy'])} "
          f"| {fmt(e['best']['sequence_accuracy'])} ({e['best']['loops']}) "
          f"| {fmt(kl.get('mean_loops'), '{:.1f}')} / {fmt(kl.get('sequence_accuracy'))} "
          f"| {fmt(rs.get('mean_loops'), '{:.1f}')} / {fmt(rs.get('sequence_accuracy'))} "
          f"| {fmt(fp.get('converged_fraction'), '{:.2f}')} "
          f"| {fmt(fp.get('spectral_radius', {}).get('median'))} "
          f"| {fmt(fp.get('fd_sensitivity', {}).get('median'), '{:.3g}')} |")
  return "\n".join(rows)


def main(argv: list[str]) -> None:
  """python -m looped_jax.analysis.loop_sweep DIR: plot + table over DIR's variants."""
  root = argv[1]
  found = {name: os.path.join(root, name, run_files.LOOP_SWEEP) for name in sorted(os.listdir(root))}
  found = {n: p for n, p in found.items() if os.path.exists(p)}
  if os.path.exists(os.path.join(root, run_files.LOOP_SWEEP)):
    found = {"": os.path.join(root, run_files.LOOP_SWEEP)}
  results = {}
  for name, path in found.items():
    with open(path) as f:
      results[name] = json.load(f)
  print(summary_table(results))
  print(plot(results, os.path.join(root, PLOT_FILE)))


if __name__ == "__main__":
  main(sys.argv)
