"""The training loop: build, restore, step, evaluate, log, checkpoint.

Determinism: batch(step) = task.sample(fold_in(key(data_seed), step)); dropout keys are
fold_in(key(seed), step); the loop count is a function of the step, or under SHIFT of the
stage, which is restored with the criterion state from the checkpoint. A run restored from
its latest checkpoint therefore continues exactly as if it had never stopped.

SHIFT (config.shift.loops set): the optimizer is `shift.multi_stage`, one jitted train step
per stage (loop count and stage static); the criterion sees the train loss and gradient
norm at log steps and the eval loss / simple-group accuracy at eval steps (values fetched
anyway: no extra device sync per step); `grad_cosine` (train/shift_signals.py) is computed
by its own jitted function, only at the check steps of a criterion that reads it; a switch
takes effect from the next update.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from looped_jax import config as config_lib
from looped_jax import distributed, models, run_files, tasks
from looped_jax.analysis import icl_report, landscape_tracking, loop_sweep
from looped_jax.errors import ConfigError, RunStopped, check
from looped_jax.train import checkpoint as checkpoint_lib
from looped_jax.train import compiler
from looped_jax.train import metrics as metrics_lib
from looped_jax import shift_criteria
from looped_jax.train import optim, preemption, sharding, shift, shift_run
from looped_jax.train import shift_signals
from looped_jax.train import step as step_lib
from looped_jax.train import workdir as workdir_lib

# Config keys that say where and how a run executes, not what it computes: a run may resume
# under another mesh (orbax reshards the checkpoint) or other XLA options.
PLACEMENT_KEYS = ("mesh", "xla_options")
# train keys that may differ on resume too: they bound how long a run trains, not what it computes
BUDGET_KEYS = ("max_train_seconds",)

# Checkpoint meta key: the train-step metrics since the last log step, saved by a checkpoint
# taken between log steps (on SIGTERM / SIGINT) so that the next log line is unchanged.
PENDING = "pending_metrics"

EVAL_CURRICULUM_STEP = 2**30  # evaluate curriculum tasks at full difficulty

# XLA's CPU client (jaxlib 0.10.2) can deadlock when the host dispatches far ahead of several
# CPU devices in one process: once a device has 32 programs in flight, the next launch waits
# for a slot while holding a thread of the client's pool (max(cores, devices) threads), the
# other devices' threads wait in an all-reduce for that device, and the task that would free
# the slot finds no thread; XLA aborts after its 40 s collective timeout (docs/performance.md,
# "Several CPU devices in one process"). Waiting for every 4th step keeps each device far
# below 32 programs (a step dispatches about 3). Accelerators, and one CPU device per process,
# run ahead freely.
CPU_STEPS_AHEAD = 4


def steps_ahead(mesh: jax.sharding.Mesh) -> int:
  """Steps the host may dispatch before it waits for them (0: no limit)."""
  local = mesh.local_devices
  return CPU_STEPS_AHEAD if len(local) > 1 and local[0].platform == "cpu" else 0


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
  schedule: shift.ShiftSchedule | None = None  # SHIFT's stages; None: one plain optimizer
  compiler_options: dict[str, str] = dataclasses.field(default_factory=dict)  # xla_options

  @classmethod
  def build(cls, config: ml_collections.ConfigDict, devices=None) -> "Experiment":
    config_lib.validate(config)
    task = tasks.get(config.task)
    mesh = sharding.make_mesh(config.mesh, devices)
    sharding.check_batch(config.train.batch_size, mesh, "train.batch_size")
    sharding.check_batch(config.eval.batch_size, mesh, "eval.batch_size")
    sharding.check_batch(config.hessian.probe_batch_size, mesh, "hessian.probe_batch_size")
    check(config.train.checkpoint_every % config.train.log_every == 0,
          f"train.checkpoint_every={config.train.checkpoint_every} must be a multiple of "
          f"train.log_every={config.train.log_every} (the loss is checked before each save).")
    device = mesh.local_devices[0]  # this process's: a probe compiles here
    options = compiler.parse(config.xla_options, device.platform)
    compiler.check(options, device)
    graphdef, params = models.build(config.model, task, config.seed)
    schedule = config_lib.shift_schedule(config)
    if schedule is None:
      optimizer = optim.make_optimizer(config.train)
    else:  # one optimizer per stage, same settings: moments="keep" then continues it unchanged
      optimizer = shift.multi_stage([optim.make_optimizer(config.train) for _ in schedule.loops])
    return cls(config, task, mesh, graphdef, params, optimizer, schedule, options)

  def initial_state(self) -> dict:
    state = {"step": jnp.zeros((), jnp.int32), "params": self.params,
             "opt_state": self.optimizer.init(self.params)}
    # Host copies: every process holds the same values and keeps its own shards.
    return jax.device_put(jax.device_get(state), self.state_shardings)

  @functools.cached_property
  def state_shardings(self):
    state = jax.eval_shape(lambda: {"step": jnp.zeros((), jnp.int32), "params": self.params,
                                    "opt_state": self.optimizer.init(self.params)})
    return sharding.state_shardings(state, self.mesh, self.config.mesh.fsdp)

  def sampler(self, batch_size: int):
    """(key, step) -> the global batch, split over the data axis."""
    return sharding.batch_sampler(self.task.sample, batch_size, self.mesh)

  @functools.cache
  def train_step(self, loops: int, shift_stage: int | None = None):
    fn = step_lib.make_train_step(self.graphdef, self.task, self.optimizer,
                                  options=step_lib.LossOptions.from_config(self.config),
                                  dropout=self.config.model.dropout > 0, seed=self.config.seed)
    return jax.jit(functools.partial(fn, loops=loops, shift_stage=shift_stage),
                   in_shardings=(self.state_shardings, sharding.batch_sharding(self.mesh)),
                   out_shardings=(self.state_shardings, sharding.replicated(self.mesh)),
                   donate_argnums=0, compiler_options=self.compiler_options)

  @functools.cache
  def grad_cosine(self, loops: int, other_loops: int, part: str):
    """(params, batch) -> the SHIFT gradient cosine between two loop counts, jitted."""
    t = self.config.train
    return jax.jit(shift_signals.make_grad_cosine(
        self.graphdef, self.task, loops=loops, other_loops=other_loops, part=part,
        grad_loops=t.grad_loops, loss_on=t.loss_on))

  @functools.cache
  def eval_step(self, loops: int):
    fn = step_lib.make_eval_step(self.graphdef, self.task)
    # Replicated sums: every process can read them.
    return jax.jit(functools.partial(fn, loops=loops),
                   out_shardings=sharding.replicated(self.mesh),
                   compiler_options=self.compiler_options)

  @functools.cached_property
  def eval_batches(self) -> list[dict]:
    e = self.config.eval
    sample = self.sampler(e.batch_size)
    key = jax.random.key(self.config.eval_seed)
    return [sample(jax.random.fold_in(key, i), EVAL_CURRICULUM_STEP) for i in range(e.num_batches)]

  @functools.cached_property
  def probe(self) -> landscape_tracking.Probe:
    """Hessian spectra on the fixed probe batch (config.hessian)."""
    return landscape_tracking.Probe(self)

  def eval_loop_counts(self) -> list[int]:
    stages = self.schedule.loops if self.schedule else ()  # every stage's own loop count
    return sorted({self.config.model.num_loops, *map(int, self.config.eval.loops), *stages})

  def eval_prefix(self, loops: int) -> str:
    return "eval" if loops == self.config.model.num_loops else f"eval@{loops}"

  def evaluate(self, params) -> dict[str, float]:
    """Eval metrics at the model's loop count ("eval/...") and each extra count ("eval@L/...")."""
    out = {}
    for loops in self.eval_loop_counts():
      step = self.eval_step(loops)
      values = step_lib.combine([jax.device_get(step(params, b)) for b in self.eval_batches])
      prefix = self.eval_prefix(loops)
      out |= {f"{prefix}/{k}": v for k, v in values.items()}
    return out


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict, overwrite: bool) -> None:
  """Refuses a workdir that holds a run of another config, unless `overwrite`.

  `overwrite` deletes only a run this project wrote (workdir.check_replaceable); a workdir
  that is a file, cannot be written or holds a damaged config.json is refused.

  The mesh and XLA options (PLACEMENT_KEYS) and the time budget (BUDGET_KEYS) may differ: the
  run resumes under the new ones.
  A larger `train.num_steps` alone extends the run where nothing before the old end depends
  on it (`_extension_problem`); a constant-LR run may continue as a warmup_stable_decay run
  from a checkpoint before the decay start (`_decay_problem`); keys added since the run was
  saved count only away from their defaults (`_with_added_keys`). Every process checks;
  process 0 writes, between barriers, so none reads a half-replaced workdir.
  """
  workdir_lib.check_usable(workdir)
  text = config_lib.to_json(config)
  saved = workdir_lib.saved_config(workdir)
  replace = False
  if saved is not None:
    old = _without_placement(saved)
    new = _without_placement(json.loads(text))
    old = _with_added_keys(old, new, json.loads(config_lib.to_json(config_lib.base_config())))
    extends = old != new and _equal_except(old, new, ("num_steps",))
    decays = (old != new and not extends and new["train"]["schedule"] == "warmup_stable_decay"
              and _equal_except(old, new, ("schedule", "decay_steps", "num_steps")))
    if old != new and not overwrite:
      problem = (_extension_problem(old, new) if extends else
                 _decay_problem(old, new, workdir) if decays else "")
      if not (extends or decays) or problem:
        reason = problem or f"a different config ({_first_difference(old, new)})"
        raise ConfigError(f"workdir {workdir} holds a run of {reason}; use another --workdir "
                          "or pass --overwrite to replace it.")
    replace = old != new and overwrite
  elif overwrite and os.path.isdir(workdir) and os.listdir(workdir):
    replace = True  # e.g. the variant folders of another config
  if replace:
    workdir_lib.check_replaceable(workdir)
  distributed.barrier("prepare_workdir:checked")
  if distributed.is_primary():
    if replace:
      workdir_lib.remove_run(workdir)
    os.makedirs(workdir, exist_ok=True)
    workdir_lib.write_atomically(os.path.join(workdir, run_files.CONFIG), text)
  distributed.barrier("prepare_workdir:written")


def _with_added_keys(old: dict, new: dict, defaults: dict) -> dict:
  """`old` with the keys it lacks that `new` and the base config's defaults have, at their
  defaults: a key added to looped_jax since the run was saved, left at its default (which
  keeps the old behaviour), is no difference."""
  out = dict(old)
  for key, value in new.items():
    if key not in old and key in defaults:
      out[key] = defaults[key]
    elif isinstance(value, dict) and isinstance(old.get(key), dict):
      below = defaults.get(key)
      out[key] = _with_added_keys(old[key], value, below if isinstance(below, dict) else {})
  return out


def _equal_except(old: dict, new: dict, train_keys: tuple[str, ...]) -> bool:
  """Whether the configs agree on everything but these keys of their `train` sections."""
  strip = lambda c: {**c, "train": {k: v for k, v in c["train"].items() if k not in train_keys}}
  return strip(old) == strip(new)


def _extension_problem(old: dict, new: dict) -> str:
  """Why a run cannot be extended from old to new train.num_steps ("" when it can).

  Extending resumes the checkpoint and trains on: that equals one longer run only if no step
  before the old end depends on num_steps. The cosine schedule decays over num_steps, and a
  SHIFT budget_fraction switch is a fraction of it, so those runs are refused.
  """
  before, after = old["train"]["num_steps"], new["train"]["num_steps"]
  if after < before:
    return (f"{before} steps (train.num_steps={after} now); a run can be extended, not "
            "shortened")
  if new["train"]["schedule"] not in ("constant", "warmup_constant"):
    return (f"{before} steps whose train.schedule={new['train']['schedule']!r} depends on "
            "train.num_steps; only 'constant' and 'warmup_constant' runs can be extended")
  if new["shift"]["loops"]:
    return (f"{before} steps with SHIFT stages (shift.loops), whose switches may depend on "
            "train.num_steps; SHIFT runs cannot be extended")
  return ""


def _decay_problem(old: dict, new: dict, workdir: str) -> str:
  """Why a run cannot continue as a warmup_stable_decay run ("" when it can).

  A constant-LR run's checkpoint is a WSD run's state at any step up to the decay start
  (the two schedules agree there), so the decay can start from it: the WSD practice of
  decaying a checkpoint of one long constant run. Refused past the decay start.
  """
  t_old, t_new = old["train"], new["train"]
  if t_old["schedule"] not in ("constant", "warmup_constant"):
    return (f"train.schedule={t_old['schedule']!r}; only 'constant' and 'warmup_constant' "
            "runs can continue as 'warmup_stable_decay' runs")
  warmup_old = t_old["warmup_steps"] if t_old["schedule"] == "warmup_constant" else 0
  if warmup_old != t_new["warmup_steps"]:
    return (f"{warmup_old} warm-up steps (train.warmup_steps={t_new['warmup_steps']} now); "
            "the decayed run must keep the warm-up it had")
  latest = max(_checkpoint_steps(workdir), default=0)
  start = t_new["num_steps"] - t_new["decay_steps"]
  if latest > start:
    return (f"a checkpoint at step {latest}, past the decay start num_steps - decay_steps = "
            f"{start}; use train.num_steps >= {latest + t_new['decay_steps']}")
  return ""


def _checkpoint_steps(workdir: str) -> list[int]:
  # Finished orbax steps are folders named by the step (unfinished ones carry a suffix);
  # listing them avoids opening a CheckpointManager, which would create and lock the folder.
  path = os.path.join(workdir, "checkpoints")
  return [int(n) for n in os.listdir(path) if n.isdigit()] if os.path.isdir(path) else []


def _without_placement(config: dict) -> dict:
  out = {k: v for k, v in config.items() if k not in PLACEMENT_KEYS}
  out["train"] = {k: v for k, v in out["train"].items() if k not in BUDGET_KEYS}
  return out


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
  run = shift_run.ShiftRun.new(exp.schedule) if exp.schedule else None
  meta: dict = {}
  restored = ckpt.restore_newest_intact(state, set_aside=True)
  if restored is not None:
    latest, state, meta = restored
    if run is not None:
      run = _restore_shift(exp, state, meta, latest)
    if not quiet and distributed.is_primary():
      print(f"{prefix}resumed from the checkpoint at step {latest}", flush=True)
  step = int(state["step"])
  primary = distributed.is_primary()  # the only process that writes files and prints
  writer = (metrics_lib.MetricWriter(workdir, resume_step=step) if primary
            else metrics_lib.NullWriter())
  spectra = (landscape_tracking.SpectraWriter(workdir, resume_step=step) if primary
             else metrics_lib.NullWriter())
  progress = metrics_lib.Progress(t.num_steps, step, prefix=prefix,
                                  stream=open(os.devnull, "w") if quiet or not primary else None)
  sample = exp.sampler(t.batch_size)
  data_key = jax.random.key(config.data_seed)
  pending = _restored_pending(meta)  # a checkpoint between log steps carries their metrics
  started = time.perf_counter()
  clock = _TrainClock(meta.get("train_seconds", 0.0), run)
  final_eval: dict[str, float] = {}
  ahead = steps_ahead(exp.mesh)
  out_of_time = _out_of_time(t, clock)  # a resumed run may have spent its budget already
  stop = preemption.StopSignals().install()
  try:
    if run is not None and step == 0:  # a criterion may fire before any update (fixed_step 0)
      state = _observe_shift(exp, run, clock, state, 0, {})
    while step < t.num_steps and not out_of_time:
      if run is not None:
        loops, stage = run.loops, run.stage
      else:
        loops, stage = step_lib.loops_at(step, config.model.num_loops, t.loop_curriculum), None
      ckpt.check()  # a background save that failed stops the run now
      batch = sample(jax.random.fold_in(data_key, step), step)
      state, step_metrics = exp.train_step(loops, stage)(state, batch)
      pending.append(step_metrics)
      step += 1
      if ahead and step % ahead == 0:
        jax.block_until_ready(state["step"])  # bounded run-ahead: see steps_ahead
      last = step == t.num_steps
      signals: dict[str, float] = {}  # SHIFT criterion inputs measured at this step
      if step % t.log_every == 0 or last:
        scalars = _mean_metrics(pending, step)
        pending = []
        clock.split(state)
        rate = progress.update(step, scalars, (t.max_train_seconds - clock.seconds
                                               if t.max_train_seconds else math.inf))
        extra = {"loops": loops, "perf/steps_per_sec": rate, "perf/train_seconds": clock.seconds}
        if run is not None:
          extra["shift/stage"] = stage
          signals = {shift_criteria.TRAIN_LOSS: scalars["loss"],
                     shift_criteria.GRAD_NORM: scalars["grad_norm"]}
        writer.write(step, scalars | extra)
        out_of_time = _out_of_time(t, clock)
        last = last or out_of_time  # the time budget ends the run as num_steps would
      if step % config.eval.every == 0 or last:
        clock.split(state)
        final_eval = exp.evaluate(state["params"])
        clock.restart()  # eval time is not training time
        writer.write(step, final_eval | (_shift_eval(exp, run, step, final_eval, signals)
                                         if run is not None else {}))
      if config.hessian.every and (step % config.hessian.every == 0 or last):
        clock.split(state)
        result = exp.probe.spectrum(state["params"])
        clock.restart()  # nor is the Hessian
        writer.write(step, landscape_tracking.metric_scalars(result))
        spectra.write(step, result)
      if run is not None:
        if shift_criteria.measures_at(run.criterion, shift_criteria.GRAD_COSINE, step):
          signals |= _grad_cosine(exp, run, state, batch)
          writer.write(step, {"shift/grad_cosine": signals[shift_criteria.GRAD_COSINE]})
        state = _observe_shift(exp, run, clock, state, step, signals)
        if last:
          writer.write(step, run.end_metrics())
      saved = step % t.checkpoint_every == 0 or last
      if saved:
        clock.split(state)
        ckpt.save(step, state, _checkpoint_meta(step, loops, clock, run))
        clock.restart()
      if not last and stop.agreed(step % t.log_every == 0):
        _save_and_stop(ckpt, stop, step, state, _checkpoint_meta(step, loops, clock, run),
                       pending, saved)
    if not final_eval:  # a resumed run that had already finished
      final_eval = exp.evaluate(state["params"])
  except BaseException:
    stop.uninstall()
    _close_after_failure(ckpt, writer)  # the error that stopped the run is the one to report
    raise
  stop.uninstall()
  ckpt.close()
  writer.close()
  summary = final_eval | {"params": models.count_params(exp.params),
                          "mesh": {name: int(size) for name, size in exp.mesh.shape.items()},
                          "wall_seconds": time.perf_counter() - started,
                          "train_seconds": clock.seconds, "steps": step,
                          "stopped_by": "num_steps" if step >= t.num_steps else "max_train_seconds"}
  if run is not None:
    summary |= run.end_metrics()
  if primary:
    workdir_lib.write_atomically(os.path.join(workdir, run_files.SUMMARY),
                                 json.dumps(summary, indent=2, sort_keys=True))
  return final_eval


def _checkpoint_meta(step: int, loops: int, clock: "_TrainClock",
                     run: shift_run.ShiftRun | None) -> dict:
  meta = {"step": step, "loops": loops, "train_seconds": clock.seconds}
  return meta | ({"shift": run.to_dict()} if run is not None else {})


def _save_and_stop(ckpt: checkpoint_lib.Checkpointer, stop: preemption.StopSignals, step: int,
                   state: dict, meta: dict, pending: list[dict], saved: bool) -> None:
  """Saves `step` (with the metrics of the steps since the last log step, which the next log
  line averages over) unless it was just saved, waits for the save, and raises RunStopped."""
  if not saved:
    values = jax.device_get(pending)
    ckpt.save(step, state, meta | {PENDING: [{k: float(v) for k, v in r.items()} for r in values]})
  ckpt.wait()
  raise RunStopped(f"stopped by {stop.name} at step {step}, with a checkpoint of that step "
                   "saved; rerun the same command to resume.", stop.exit_status)


def _restored_pending(meta: dict) -> list[dict]:
  # float32, as the train step returned them: the log line's mean is then the same.
  return [{k: np.float32(v) for k, v in r.items()} for r in meta.get(PENDING, [])]


def _close_after_failure(*resources) -> None:
  """Closes what a failed run opened; their own errors (often the same full disk) are dropped."""
  for resource in resources:
    try:
      resource.close()
    except Exception:  # noqa: BLE001, S110 - secondary to the error being raised
      pass


def _out_of_time(t: ml_collections.ConfigDict, clock: _TrainClock) -> bool:
  """Whether the time budget is spent, by process 0's clock (a collective with several)."""
  if not t.max_train_seconds:
    return False
  return distributed.primary_decides(t.max_train_seconds <= clock.seconds)


class _TrainClock:
  """Seconds spent training (evals and saves excluded), in total and per SHIFT stage.

  `split` waits for the dispatched steps, so call it only where the loop syncs anyway.
  """

  def __init__(self, seconds: float, run: shift_run.ShiftRun | None):
    self.seconds, self.run = seconds, run
    self._tick = time.perf_counter()

  def split(self, state) -> None:
    """Adds the time since the last split/restart to the total and the active stage."""
    jax.block_until_ready(state)
    now = time.perf_counter()
    self.seconds += now - self._tick
    if self.run is not None:
      self.run.seconds[self.run.stage] += now - self._tick
    self._tick = now

  def restart(self) -> None:
    self._tick = time.perf_counter()


def _restore_shift(exp: Experiment, state: dict, meta: dict, step: int) -> shift_run.ShiftRun:
  check("shift" in meta, f"the checkpoint at step {step} has no SHIFT record, though its "
        "config.json sets shift.loops; the workdir was changed by hand: use another --workdir.")
  run = shift_run.ShiftRun.from_dict(exp.schedule, meta["shift"])
  stage = int(shift.current_stage(state["opt_state"]))
  check(run.stage == stage, f"the checkpoint at step {step} is in stage {stage} but its SHIFT "
        f"record says {run.stage}; the checkpoint is corrupt.")
  return run


def _shift_eval(exp: Experiment, run: shift_run.ShiftRun, step: int, evals: dict[str, float],
                signals: dict[str, float]) -> dict[str, float]:
  """Feeds eval signals at the active stage's loop count; returns `shift/accuracy`."""
  at = exp.eval_prefix(run.loops)
  signals[shift_criteria.EVAL_LOSS] = evals[f"{at}/loss"]
  if f"{at}/accuracy/simple" in evals:
    signals[shift_criteria.SIMPLE_ACC] = evals[f"{at}/accuracy/simple"]
  value = evals[f"{at}/{shift_run.DIP_METRIC}"]
  run.on_eval(step, value)
  return {"shift/accuracy": value}  # the metric of the loop count being trained


def _grad_cosine(exp: Experiment, run: shift_run.ShiftRun, state: dict,
                 batch: dict) -> dict[str, float]:
  """grad_cosine between the active and the next stage's loop count, on this step's batch.

  Measured after the update (at the parameters the criterion judges), only at the check
  steps of a criterion that reads it; its time counts as the active stage's training time.
  """
  part = getattr(run.criterion, "params", "qk")
  fn = exp.grad_cosine(run.loops, run.schedule.loops[run.stage + 1], part)
  return {shift_criteria.GRAD_COSINE: float(fn(state["params"], batch))}


def _observe_shift(exp: Experiment, run: shift_run.ShiftRun, clock: _TrainClock, state: dict,
                   step: int, signals: dict[str, float]) -> dict:
  """Feeds the criterion; on a switch returns the state moved to the next stage."""
  if not run.observe(step, signals):
    return state
  clock.split(state)  # the time so far belongs to the stage being left
  opt_state = run.switch(step, state["opt_state"])
  opt_state = jax.device_put(opt_state, exp.state_shardings["opt_state"])
  return state | {"opt_state": opt_state}


def _mean_metrics(pending: list[dict], step: int) -> dict[str, float]:
  values = jax.device_get(pending)
  out = {k: float(np.mean([v[k] for v in values])) for k in values[0]}
  if not all(math.isfinite(v) for v in out.values()):
    raise TrainingDiverged(f"the training loss became non-finite ({out}) before step {step}; "
                           "training stopped and the last good checkpoint is kept.")
  return out


def _restore_latest(exp: Experiment, workdir: str, mode: str = "eval") -> tuple[int, dict]:
  """The newest intact checkpoint of `workdir` (a damaged newer one is reported, not moved)."""
  workdir_lib.check_has_run(workdir, mode)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"), create=False)
  try:
    restored = ckpt.restore_newest_intact(exp.initial_state(), set_aside=False)
  finally:
    ckpt.close()
  check(restored is not None, f"no checkpoint in {workdir}/checkpoints; train first "
        "(--mode=train).")
  latest, state, _ = restored
  return latest, state


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Evaluates the latest checkpoint in `workdir`; writes eval.json there."""
  exp = Experiment.build(config)
  latest, state = _restore_latest(exp, workdir, "eval")
  result = {"step": latest} | exp.evaluate(state["params"])
  if icl_report.applies(exp.task):  # error vs k / vs loops with baselines, JSON + PNG
    result |= icl_report.write(exp, state["params"], workdir)
  if distributed.is_primary():
    with open(os.path.join(workdir, run_files.EVAL), "w") as f:
      json.dump(result, f, indent=2, sort_keys=True)
  loop_sweep.write(exp, state["params"], workdir)  # token tasks with eval.loop_sweep on
  return result


def hessian(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """The Hessian spectrum (config.hessian) of the latest checkpoint in `workdir`.

  Writes hessian.json there: step, loops, subset, method, paths, all computed eigenvalues
  (ascending) and their river/valley metrics. Runs whatever hessian.every is.
  """
  exp = Experiment.build(config)
  latest, state = _restore_latest(exp, workdir, "hessian")
  result = {"step": latest} | exp.probe.spectrum(state["params"])
  if distributed.is_primary():
    with open(os.path.join(workdir, run_files.HESSIAN), "w") as f:
      json.dump(result, f, indent=1, sort_keys=True)
  return result
