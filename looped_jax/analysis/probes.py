"""Linear probes on loop states: what does the state after loop t encode?

For each loop t = 0 (the initial state h_0), 1, ..., L (L = model.num_loops) a ridge
read-out is fitted from the loop state to a target quantity on `eval.probe_prompts` training
prompts and scored by R^2 on as many held-out prompts (both drawn from the held-out task with
keys derived from eval_seed). Targets (`eval.probes`):

  answer  the task's targets at its scored positions: one sample per (prompt, scored
          position), feature = the state at that position [D]; class ids are one-hot
          encoded (R^2 of the one-hot read-out, and the accuracy of its argmax)
  steps   every reasoning step s of a task with step targets (batch["step_targets"],
          tasks/depth.py), the same way at the positions step s scores: an [S, L + 1]
          matrix that shows whether loop t holds step t
  w       an in-context regression prompt's weight vector batch["w"] [B, d] (linear, sparse,
          noisy regression), one sample per prompt, feature = [state at the last position;
          mean state over positions] [2D]

Yang et al.'s probing code ("Looped Transformers are Better at Learning Learning Algorithms",
arXiv 2311.12424) trains a small MLP per layer on a learned softmax pooling over positions;
this is its closed-form linear counterpart (a choice: exact, no training, no tuning beyond
the ridge strength). Features are standardised with the training prompts' mean and standard
deviation; R^2 = 1 - SSE / SST, summed over target dimensions, SST around the held-out mean.

`write(exp, params, workdir)` is the `--mode=eval` hook (off while eval.probes is empty):
probes.json and probes.png in the workdir.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from looped_jax import distributed, models, run_files
from looped_jax.config import PROBE_TARGETS as TARGETS
from looped_jax.errors import ConfigError
PLOT_FILE = "probes.png"
PROBE_SEED_OFFSET = 20_000  # probe batches: fold_in(key(eval_seed), offset + 0 / 1)


def loop_states(model, inputs: jax.Array, num_loops: int) -> jax.Array:
  """[L + 1, B, n, D]: the answer state before the first loop and after each loop."""
  e = model.encode(inputs)
  h0 = model.initial_state(e)
  states = model.trajectory(inputs, num_loops)
  return jax.vmap(model.answer_state)(jnp.concatenate([h0[None], states]))


def ridge_fit(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, ...]:
  """(mean, std, W [D + 1, k]) of a ridge read-out y ~ [(x - mean) / std, 1] W; the bias is
  not penalised. x [N, D], y [N, k]; float64 normal equations."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  mean, std = x.mean(0), x.std(0) + 1e-8
  z = np.concatenate([(x - mean) / std, np.ones((len(x), 1))], axis=1)
  penalty = ridge * np.eye(z.shape[1])
  penalty[-1, -1] = 0.0
  w = np.linalg.solve(z.T @ z + penalty, z.T @ y)
  return mean, std, w


def ridge_predict(fit: tuple[np.ndarray, ...], x: np.ndarray) -> np.ndarray:
  mean, std, w = fit
  z = np.concatenate([(np.asarray(x, np.float64) - mean) / std, np.ones((len(x), 1))], axis=1)
  return z @ w


def r_squared(y: np.ndarray, pred: np.ndarray) -> float:
  """1 - SSE / SST over all target dimensions (SST around y's own mean)."""
  y = np.asarray(y, np.float64)
  sst = np.sum(np.square(y - y.mean(0)))
  return float(1.0 - np.sum(np.square(y - pred)) / max(sst, 1e-12))


def _samples(states: np.ndarray, batch: dict, target: str, output_dim: int,
             step: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
  """(features [L + 1, N, F], targets [N, k], class ids [N] or None) of one batch."""
  if target == "w":
    pooled = np.concatenate([states[:, :, -1], states.mean(axis=2)], axis=-1)  # [L + 1, B, 2D]
    return pooled, np.asarray(batch["w"]), None
  if target == "answer":
    labels, weights = np.asarray(batch["targets"]), np.asarray(batch["weights"])
  else:
    labels = np.asarray(batch["step_targets"][:, step])
    weights = np.asarray(batch["step_weights"][:, step])
  b, p = np.nonzero(weights > 0)
  feats = states[:, b, p]  # [L + 1, N, D]
  values = labels[b, p]
  if np.issubdtype(values.dtype, np.integer):
    return feats, np.eye(output_dim)[values], values
  return feats, values[:, None], None


def _probe(train, test, ridge: float) -> dict[str, list[float]]:
  """R^2 (and argmax accuracy for class targets) per loop of one target."""
  (x_tr, y_tr, _), (x_te, y_te, ids) = train, test
  r2, acc = [], []
  for t in range(x_tr.shape[0]):
    pred = ridge_predict(ridge_fit(x_tr[t], y_tr, ridge), x_te[t])
    r2.append(r_squared(y_te, pred))
    if ids is not None:
      acc.append(float(np.mean(np.argmax(pred, -1) == ids)))
  return {"r2": r2} | ({"accuracy": acc} if ids is not None else {})


def check_targets(names, task) -> None:
  """ConfigError naming the allowed targets for a name this task cannot be probed for (read
  from the shapes of its batches: nothing is sampled)."""
  batch = jax.eval_shape(lambda k: task.sample(k, 2), jax.random.key(0))
  usable = ["answer"] + (["steps"] if "step_targets" in batch else []) + (
      ["w"] if "w" in batch else [])
  for name in names:
    if name not in usable:
      raise ConfigError(f"eval.probes names {name!r}, which task {task.name!r} does not "
                        f"provide; allowed for it: {', '.join(usable)} (all: "
                        f"{', '.join(TARGETS)}).")


def probe(exp, params) -> dict[str, Any]:
  """R^2 per loop of every target in eval.probes (module docstring), JSON-serialisable."""
  config = exp.config
  e = config.eval
  loops = int(config.model.num_loops)
  task = exp.task.held_out()
  key = jax.random.key(config.eval_seed)
  sample = jax.jit(lambda k: task.sample(k, int(e.probe_prompts)))
  batches = [jax.device_get(sample(jax.random.fold_in(key, PROBE_SEED_OFFSET + i)))
             for i in range(2)]
  check_targets(e.probes, task)
  # Parameters as an argument, not closed over: no weights baked into the program.
  states_fn = jax.jit(lambda p, x: loop_states(models.merge(exp.graphdef, p), x, loops))
  states = [np.asarray(states_fn(params, b["inputs"]), np.float32) for b in batches]
  out_dim = task.output_dim
  out: dict[str, Any] = {"loops": list(range(loops + 1)), "prompts": int(e.probe_prompts),
                         "ridge": float(e.probe_ridge), "targets": {}}
  for name in e.probes:
    if name == "steps":
      rows = [_probe(*(_samples(s, b, name, out_dim, step) for s, b in zip(states, batches)),
                     float(e.probe_ridge))
              for step in range(batches[0]["step_targets"].shape[1])]
      out["targets"][name] = {k: [row[k] for row in rows] for k in rows[0]}
    else:
      out["targets"][name] = _probe(*(_samples(s, b, name, out_dim)
                                      for s, b in zip(states, batches)), float(e.probe_ridge))
  return out


def write(exp, params, workdir: str) -> dict[str, Any] | None:
  """Runs the probes when eval.probes names any; process 0 writes probes.json and .png."""
  if not exp.config.eval.probes:
    return None
  result = probe(exp, params)
  if not distributed.is_primary():
    return result
  run_files.write_atomically(os.path.join(workdir, run_files.PROBES),
                             json.dumps(result, indent=1, sort_keys=True))
  plot(result, os.path.join(workdir, PLOT_FILE))
  return result


def plot(result: dict[str, Any], path: str) -> str:
  """One panel per target: held-out R^2 vs loop (steps: one line per reasoning step)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = list(result["targets"])
  fig, axes = plt.subplots(1, len(names), squeeze=False, figsize=(3.8 * len(names), 3.0))
  for ax, name in zip(axes[0], names):
    r2 = result["targets"][name]["r2"]
    rows = r2 if name == "steps" else [r2]
    for s, row in enumerate(rows):
      ax.plot(result["loops"], row, marker=".", label=f"step {s + 1}" if name == "steps" else None)
    ax.set_xlabel("loop (0 = initial state)")
    ax.set_ylabel("held-out R²")
    ax.set_title(f"probe: {name}", fontsize=9)
    ax.set_ylim(min(-0.05, min(min(r) for r in rows)), 1.02)
    if name == "steps":
      ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
