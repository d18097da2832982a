"""The training loop: build, restore, step, evaluate, log, checkpoint.

Determinism: batch(step) = task.sample(fold_in(key(data_seed), step)); dropout keys are
fold_in(key(seed), step); the loop count is a function of the step. A run restored from
its latest checkpoint therefore continues exactly as if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from looped_jax import config as config_lib
from looped_jax import models, tasks
from looped_jax.errors import ConfigError, check
from looped_jax.train import checkpoint as checkpoint_lib
from looped_jax.train import metrics as metrics_lib
from looped_jax.train import optim, sharding, step as step_lib

CONFIG_FILE = "config.json"
EVAL_CURRICULUM_STEP = 2**30  # evaluate curriculum tasks at full difficulty


class TrainingDiverged(RuntimeError):
  """The training loss became NaN or Inf; the last good checkpoint is kept."""


@dataclasses.dataclass(eq=False)  # hashed by identity: methods are cached per instance
class Experiment:
  """Everything built from a config before the workdir is touched."""

  config: ml_collections.ConfigDict
  task: tasks.Task
  mesh: jax.sharding.Mesh
  graphdef: Any
  params: dict
  optimizer: Any

  @classmethod
  def build(cls, config: ml_collections.ConfigDict, devices=None) -> "Experiment":
    config_lib.validate(config)
    task = tasks.get(config.task)
    mesh = sharding.make_mesh(config.mesh, devices)
    sharding.check_batch(config.train.batch_size, mesh, "train.batch_size")
    sharding.check_batch(config.eval.batch_size, mesh, "eval.batch_size")
    check(config.train.checkpoint_every % config.train.log_every == 0,
          f"train.checkpoint_every={config.train.checkpoint_every} must be a multiple of "
          f"train.log_every={config.train.log_every} (the loss is checked before each save).")
    graphdef, params = models.build(config.model, task, config.seed)
    return cls(config, task, mesh, graphdef, params, optim.make_optimizer(config.train))

  def initial_state(self) -> dict:
    state = {"step": jnp.zeros((), jnp.int32), "params": self.params,
             "opt_state": self.optimizer.init(self.params)}
    return jax.device_put(state, sharding.state_shardings(state, self.mesh))

  @functools.cached_property
  def state_shardings(self):
    return sharding.state_shardings(jax.eval_shape(self.initial_state), self.mesh)

  def sampler(self, batch_size: int):
    """(key, step) -> batch, jitted, split over the data axis."""
    return jax.jit(lambda key, step: self.task.sample(key, batch_size, step),
                   out_shardings=sharding.batch_sharding(self.mesh))

  @functools.cache
  def train_step(self, loops: int):
    t = self.config.train
    fn = step_lib.make_train_step(self.graphdef, self.task, self.optimizer,
                                  grad_loops=t.grad_loops, loss_on=t.loss_on,
                                  dropout=self.config.model.dropout > 0, seed=self.config.seed)
    return jax.jit(functools.partial(fn, loops=loops),
                   in_shardings=(self.state_shardings, sharding.batch_sharding(self.mesh)),
                   out_shardings=(self.state_shardings, sharding.replicated(self.mesh)),
                   donate_argnums=0)

  @functools.cache
  def eval_step(self, loops: int):
    fn = step_lib.make_eval_step(self.graphdef, self.task)
    return jax.jit(functools.partial(fn, loops=loops))

  @functools.cached_property
  def eval_batches(self) -> list[dict]:
    e = self.config.eval
    sample = self.sampler(e.batch_size)
    key = jax.random.key(self.config.eval_seed)
    return [sample(jax.random.fold_in(key, i), EVAL_CURRICULUM_STEP) for i in range(e.num_batches)]

  def eval_loop_counts(self) -> list[int]:
    return sorted({self.config.model.num_loops, *map(int, self.config.eval.loops)})

  def evaluate(self, params) -> dict[str, float]:
    """Eval metrics at the model's loop count ("eval/...") and each extra count ("eval@L/...")."""
    out = {}
    for loops in self.eval_loop_counts():
      step = self.eval_step(loops)
      values = step_lib.combine([jax.device_get(step(params, b)) for b in self.eval_batches])
      prefix = "eval" if loops == self.config.model.num_loops else f"eval@{loops}"
      out |= {f"{prefix}/{k}": v for k, v in values.items()}
    return out


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict, overwrite: bool) -> None:
  """Refuses a workdir that holds a run of another config, unless `overwrite`."""
  path = os.path.join(workdir, CONFIG_FILE)
  text = config_lib.to_json(config)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    if old != json.loads(text):
      if not overwrite:
        diff = _first_difference(old, json.loads(text))
        raise ConfigError(f"workdir {workdir} holds a run of a different config ({diff}); "
                          "use another --workdir or pass --overwrite to replace it.")
      shutil.rmtree(workdir)
  elif overwrite and os.path.isdir(workdir):
    shutil.rmtree(workdir)
  os.makedirs(workdir, exist_ok=True)
  with open(path, "w") as f:
    f.write(text)


def _first_difference(old: dict, new: dict, prefix: str = "") -> str:
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key), new.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      found = _first_difference(a, b, f"{prefix}{key}.")
      if found:
        return found
    elif a != b:
      return f"{prefix}{key}: {a!r} there, {b!r} now"
  return ""


def train(config: ml_collections.ConfigDict, workdir: str, *, overwrite: bool = False,
          quiet: bool = False, prefix: str = "") -> dict[str, float]:
  """Trains (or resumes) the run in `workdir`; returns the final eval metrics."""
  exp = Experiment.build(config)
  prepare_workdir(workdir, config, overwrite)
  t = config.train
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"), keep=t.keep_checkpoints)
  state = exp.initial_state()
  latest = ckpt.latest_step()
  if latest is not None:
    state, _ = ckpt.restore(latest, state)
    if not quiet:
      print(f"{prefix}resumed from the checkpoint at step {latest}", flush=True)
  step = int(state["step"])
  writer = metrics_lib.MetricWriter(workdir, resume_step=step)
  progress = metrics_lib.Progress(t.num_steps, step, prefix=prefix,
                                  stream=open(os.devnull, "w") if quiet else None)
  sample = exp.sampler(t.batch_size)
  data_key = jax.random.key(config.data_seed)
  pending: list[dict] = []
  started = time.perf_counter()
  final_eval: dict[str, float] = {}
  try:
    while step < t.num_steps:
      loops = step_lib.loops_at(step, config.model.num_loops, t.loop_curriculum)
      batch = sample(jax.random.fold_in(data_key, step), step)
      state, step_metrics = exp.train_step(loops)(state, batch)
      pending.append(step_metrics)
      step += 1
      last = step == t.num_steps
      if step % t.log_every == 0 or last:
        scalars = _mean_metrics(pending, step)
        pending = []
        rate = progress.update(step, scalars)
        writer.write(step, scalars | {"loops": loops, "perf/steps_per_sec": rate})
      if step % config.eval.every == 0 or last:
        final_eval = exp.evaluate(state["params"])
        writer.write(step, final_eval)
      if step % t.checkpoint_every == 0 or last:
        ckpt.save(step, state, {"step": step, "loops": loops})
    if not final_eval:  # a resumed run that had already finished
      final_eval = exp.evaluate(state["params"])
  finally:
    ckpt.close()
    writer.close()
  summary = final_eval | {"params": models.count_params(exp.params),
                          "wall_seconds": time.perf_counter() - started}
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  return final_eval


def _mean_metrics(pending: list[dict], step: int) -> dict[str, float]:
  values = jax.device_get(pending)
  out = {k: float(np.mean([v[k] for v in values])) for k in values[0]}
  if not all(math.isfinite(v) for v in out.values()):
    raise TrainingDiverged(f"the training loss became non-finite ({out}) before step {step}; "
                           "training stopped and the last good checkpoint is kept.")
  return out


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Evaluates the latest checkpoint in `workdir`; writes eval.json there."""
  exp = Experiment.build(config)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  latest = ckpt.latest_step()
  if latest is None:
    raise ConfigError(f"no checkpoint in {workdir}/checkpoints; train first (--mode=train).")
  state, _ = ckpt.restore(latest, exp.initial_state())
  ckpt.close()
  result = {"step": latest} | exp.evaluate(state["params"])
  with open(os.path.join(workdir, "eval.json"), "w") as f:
    json.dump(result, f, indent=2, sort_keys=True)
  return result
