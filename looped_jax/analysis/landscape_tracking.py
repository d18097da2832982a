"""Hessian spectra of a run's params on a fixed probe batch (docs/papers.md, "Gong et al.").

The probe loss is the training loss in eval mode (no dropout) at the model's loop count
(`model.num_loops`), with gradients through every loop, on ONE batch sampled from
key(hessian.probe_seed) at full curriculum difficulty: every checkpoint of every variant
sees the same sequences, so spectra are comparable over training and between models.

  method "exact"    dense Hessian, float64 `eigh`, all eigenvalues (tiny models; above
                    MAX_EXACT_DIM selected params it refuses: dim^2 floats and O(dim^3)).
  method "lanczos"  top-k Ritz values from `num_iters` float32 HVP Lanczos steps.

`hessian.subset` (a regex on '/'-joined param paths, "" = all) restricts H to a diagonal
block, e.g. "layers/attn" for the attention block of Gong's toy. Used by the train loop
through `SpectraHook` every `hessian.every` steps and by `--mode=hessian` on the latest
checkpoint.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from looped_jax import jsonl, models, run_files
from looped_jax.analysis import hessian as hessian_lib
from looped_jax.analysis import landscape
from looped_jax.errors import check

# Dense float64 H of 4096 params is 128 MiB and a ~1 s eigh on CPU; beyond, use lanczos.
MAX_EXACT_DIM = 4096
# Dense H column blocks of this many HVPs: jax.hessian's all-at-once vmap holds dim copies
# of the activations (64 GB for Gong's toy on 256 probe sequences).
EXACT_CHUNK = 32
PROBE_STEP = 2**30  # curriculum tasks at full difficulty, as the eval batches


def subset_of(settings: ml_collections.ConfigDict) -> str | None:
  return settings.subset or None  # "" = every parameter


def _last_loop_loss(params, batch, *, graphdef, task, loops: int) -> jax.Array:
  """The task loss of the read-out after `loops` loops (the landscape being probed)."""
  return task.loss(models.apply(graphdef, params, batch["inputs"], loops), batch)


class Probe:
  """The probe batch and loss of one Experiment; computes spectra of params at `loops`.

  Jitted solvers key their cache on the loss function, so the loss is built once per
  (loop count, dtype) and reused at every call.
  """

  def __init__(self, exp, batch=None):
    self.exp, self.settings = exp, exp.config.hessian
    # Sampled through the experiment's sampler: split over the mesh's data axis.
    self.batch = batch if batch is not None else exp.sampler(self.settings.probe_batch_size)(
        jax.random.key(self.settings.probe_seed), PROBE_STEP)

  @functools.cache
  def _graphdef64(self):
    # A float32/bfloat16 model's float64 twin keeps the exact Hessian float64 end to end.
    with jax.enable_x64(True):
      return models.graphdef(self.exp.config.model, self.exp.task, dtype="float64")

  @functools.cache
  def loss_fn(self, loops: int, float64: bool):
    graphdef = self._graphdef64() if float64 else self.exp.graphdef
    return functools.partial(_last_loop_loss, graphdef=graphdef, task=self.exp.task,
                             loops=loops)

  def spectrum(self, params: Any, loops: int | None = None) -> dict[str, Any]:
    """{"loops", "subset", "method", "paths", "eigenvalues" (ascending), "metrics"}."""
    s = self.settings
    loops = loops or self.exp.config.model.num_loops
    subset = subset_of(s)
    if s.method == "exact":
      with jax.enable_x64(True):
        op = hessian_lib.hessian_operator(self.loss_fn(loops, True), params, subset,
                                          batch=self.batch, dtype=jnp.float64)
        check(op.dim <= MAX_EXACT_DIM,
              f"hessian.method='exact' on {op.dim} params exceeds the limit of {MAX_EXACT_DIM}; "
              "narrow hessian.subset or use hessian.method='lanczos'.")
        evals = np.asarray(hessian_lib.dense_eigh(op, EXACT_CHUNK)[0], np.float64)
    else:
      op = hessian_lib.hessian_operator(self.loss_fn(loops, False), params, subset,
                                        batch=self.batch)
      check(s.top_k <= s.num_iters <= op.dim,
            f"hessian.num_iters={s.num_iters} must be in [top_k={s.top_k}, {op.dim}] "
            "(the number of selected params).")
      key = jax.random.fold_in(jax.random.key(s.probe_seed), 1)
      evals = np.sort(np.asarray(hessian_lib.top_k_eigenvalues(op, key, s.top_k, s.num_iters),
                                 np.float64))
    metrics = landscape.river_valley_metrics(evals, tuple(float(f) for f in s.eps_fracs))
    return {"loops": int(loops), "subset": s.subset, "method": s.method,
            "paths": list(op.paths), "eigenvalues": evals.tolist(), "metrics": metrics}


class SpectraHook:
  """The train-loop hook (train/hooks.py) of hessian.every: at those steps and the last, the
  probe's spectrum goes to spectra.jsonl ({"step", "loops", "subset", "eigenvalues"}; cut
  back to the resume step, so resumed files equal fresh ones) and its river/valley metrics
  to metrics.jsonl as hessian/...."""

  def start(self, exp, workdir: str, step: int, primary: bool) -> None:
    self.every, self.probe = exp.config.hessian.every, Probe(exp)
    path = os.path.join(workdir, run_files.SPECTRA)
    self.log = jsonl.Log(path, step, create=False) if primary else None

  def due(self, step: int, last: bool) -> bool:
    return bool(self.every) and (step % self.every == 0 or last)

  def __call__(self, step: int, params: Any) -> dict[str, float]:
    result = self.probe.spectrum(params)
    if self.log is not None:
      self.log.append({"step": int(step), "loops": result["loops"], "subset": result["subset"],
                       "eigenvalues": result["eigenvalues"]})
    return metric_scalars(result)

  def close(self) -> None:
    pass


def metric_scalars(result: dict[str, Any]) -> dict[str, float]:
  """`hessian/...` metrics.jsonl entries of one spectrum."""
  return {f"hessian/{k}": v for k, v in result["metrics"].items()}
