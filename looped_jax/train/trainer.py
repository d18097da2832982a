"""The training loop: restore, step, evaluate, log, run the hooks it is given, checkpoint.

What a run builds from its config is build.py's; workdir rules are workdir.py's; analyses
(Hessian spectra) come in as hooks (hooks.py) from experiment.py, so nothing here imports
looped_jax.analysis.

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

import json
import math
import os
import time
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np

from looped_jax import distributed, models, run_files, shift_criteria
from looped_jax.errors import RunStopped, check
from looped_jax.train import preemption, shift, shift_run
from looped_jax.train import checkpoint as checkpoint_lib
from looped_jax.train import hooks as hooks_lib
from looped_jax.train import metrics as metrics_lib
from looped_jax.train import step as step_lib
from looped_jax.train import workdir as workdir_lib
from looped_jax.train.build import Experiment

# Checkpoint meta key: the train-step metrics since the last log step, saved by a checkpoint
# taken between log steps (on SIGTERM / SIGINT) so that the next log line is unchanged.
PENDING = "pending_metrics"

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


def train(config: ml_collections.ConfigDict, workdir: str, *, overwrite: bool = False,
          quiet: bool = False, prefix: str = "",
          hooks: Sequence[hooks_lib.Hook] = ()) -> dict[str, float]:
  """Trains (or resumes) the run in `workdir`; returns the final eval metrics.

  `hooks` (train/hooks.py) run at their own steps after the update, e.g. Hessian spectra.
  """
  exp = Experiment.build(config)
  workdir_lib.prepare(workdir, config, overwrite)
  t = config.train
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, run_files.CHECKPOINTS),
                                     keep=t.keep_checkpoints)
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
  for hook in hooks:
    hook.start(exp, workdir, step, primary)
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
        final_eval = exp.evaluate(exp.eval_params(state))
        clock.restart()  # eval time is not training time
        writer.write(step, final_eval | (_shift_eval(exp, run, step, final_eval, signals)
                                         if run is not None else {}))
      for hook in hooks:
        if hook.due(step, last):
          clock.split(state)
          writer.write(step, hook(step, state["params"]))
          clock.restart()  # nor is a hook's
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
      final_eval = exp.evaluate(exp.eval_params(state))
  except BaseException:
    stop.uninstall()
    # The error that stopped the run is the one to report.
    _close_after_failure(ckpt, writer, *hooks)
    raise
  stop.uninstall()
  ckpt.close()
  writer.close()
  for hook in hooks:
    hook.close()
  summary = final_eval | {"params": models.count_params(exp.params),
                          "mesh": {name: int(size) for name, size in exp.mesh.shape.items()},
                          "wall_seconds": time.perf_counter() - started,
                          "train_seconds": clock.seconds, "steps": step,
                          "stopped_by": "num_steps" if step >= t.num_steps else "max_train_seconds"}
  if run is not None:
    summary |= run.end_metrics()
  if primary:
    run_files.write_atomically(os.path.join(workdir, run_files.SUMMARY),
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
    ckpt.save(step, state, meta | {PENDING: [jax.tree.map(float, r) for r in values]})
  ckpt.wait()
  raise RunStopped(f"stopped by {stop.name} at step {step}, with a checkpoint of that step "
                   "saved; rerun the same command to resume.", stop.exit_status)


def _restored_pending(meta: dict) -> list[dict]:
  # float32, as the train step returned them: the log line's mean is then the same.
  # JSON turned (sum, weight) pairs into lists.
  return [{k: tuple(map(np.float32, v)) if isinstance(v, list) else np.float32(v)
           for k, v in r.items()} for r in meta.get(PENDING, [])]


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
  """Means over the steps since the last log step; a metric given as a (sum, weight) pair is
  sum(sums) / sum(weights) (left out when every weight is 0), e.g. the mean steps of the
  examples that halted in the window, however many halted at each step."""
  values = jax.device_get(pending)
  out = {}
  for k, first in values[0].items():
    if isinstance(first, tuple):
      weight = sum(float(v[k][1]) for v in values)
      if weight > 0:
        out[k] = sum(float(v[k][0]) for v in values) / weight
    else:
      out[k] = float(np.mean([v[k] for v in values]))
  if not all(math.isfinite(v) for v in out.values()):
    raise TrainingDiverged(f"the training loss became non-finite ({out}) before step {step}; "
                           "training stopped and the last good checkpoint is kept.")
  return out


def restore_latest(exp: Experiment, workdir: str, mode: str = "eval") -> tuple[int, dict]:
  """The newest intact checkpoint of `workdir` (a damaged newer one is reported, not moved)."""
  workdir_lib.check_has_run(workdir, mode)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, run_files.CHECKPOINTS), create=False)
  try:
    restored = ckpt.restore_newest_intact(exp.initial_state(), set_aside=False)
  finally:
    ckpt.close()
  check(restored is not None, f"no checkpoint in {workdir}/checkpoints; train first "
        "(--mode=train).")
  latest, state, _ = restored
  return latest, state


