"""Everything a run builds from its config before any workdir is touched: `Experiment`.

The task, the device mesh, the model (graphdef and params), the optimizer (SHIFT's
multi-stage one when shift.loops is set) and, cached per instance, the jitted train and eval
steps and the fixed eval batches. The train loop (trainer.py), the --mode=eval/hessian runs
(experiment.py) and the analysis hooks all take one.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from looped_jax import config as config_lib
from looped_jax import models, shift_criteria, tasks
from looped_jax.analysis import probes
from looped_jax.errors import check
from looped_jax.train import compiler, deep_supervision, optim, sharding, shift, shift_signals
from looped_jax.train import stablemax
from looped_jax.train import step as step_lib

EVAL_CURRICULUM_STEP = 2**30  # evaluate curriculum tasks at full difficulty


@dataclasses.dataclass(eq=False)  # hashed by identity: methods are cached per instance
class Experiment:
  """Everything built from a config before the workdir is touched."""

  config: ml_collections.ConfigDict
  task: tasks.Task
  mesh: jax.sharding.Mesh
  graphdef: Any
  params: dict
  optimizer: Any
  schedule: shift_criteria.ShiftSchedule | None = None  # SHIFT's stages; None: one plain optimizer
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
    x64 = jax.dtypes.canonicalize_dtype(jnp.float64) == jnp.float64
    check(config.model.dtype != "float64" or x64,
          "model.dtype='float64' needs 64-bit JAX: set JAX_ENABLE_X64=1 in the environment "
          "(float64 is for analysis, e.g. exact Hessians; float32 and bfloat16 need nothing).")
    device = mesh.local_devices[0]  # this process's: a probe compiles here
    options = compiler.parse(config.xla_options, device.platform)
    compiler.check(options, device)
    t = config.train
    check(t.cross_entropy == "softmax" or task.input_kind == "tokens",
          f"train.cross_entropy={t.cross_entropy!r} needs a token task; {task.name!r} is a "
          "regression task (use 'softmax', which it ignores).")
    check(not config.model.halting or task.input_kind == "tokens",
          f"model.halting learns 'the answer is fully correct', which needs a token task; "
          f"{task.name!r} is a regression task.")
    check(not config.model.exit_gate or task.input_kind == "tokens",
          f"model.exit_gate trains on per-token cross-entropies, which needs a token task; "
          f"{task.name!r} is a regression task.")
    check(t.loss_on != "steps" or (hasattr(task, "num_steps") and task.input_kind == "tokens"),
          f"train.loss_on='steps' supervises loop t with reasoning step t, which task "
          f"{task.name!r} does not provide; use a token task with step targets "
          "(word_problem, reachability, dag_eval).")
    if config.eval.probes:  # before training, not after it
      probes.check_targets(config.eval.probes, task.held_out())
    graphdef, params = models.build(config.model, task, config.seed)
    schedule = config_lib.shift_schedule(config)
    if schedule is None:
      optimizer = optim.make_optimizer(config.train)
    else:  # one optimizer per stage, same settings: moments="keep" then continues it unchanged
      optimizer = shift.multi_stage([optim.make_optimizer(config.train) for _ in schedule.loops])
    return cls(config, task, mesh, graphdef, params, optimizer, schedule, options)

  @property
  def loss_task(self) -> tasks.Task:
    """The task with the loss the run trains and evaluates on (train.cross_entropy)."""
    return stablemax.loss_task(self.task, self.config.train.cross_entropy)

  def _new_state(self) -> dict:
    t = self.config.train
    state = {"step": jnp.zeros((), jnp.int32), "params": self.params,
             "opt_state": self.optimizer.init(self.params)}
    if t.ema:  # the average starts at the initial weights
      state["ema"] = jax.tree.map(jnp.copy, self.params)
    if t.supervision_steps:
      state["carry"] = deep_supervision.initial_carry(
          self.task, t.batch_size, models.merge(self.graphdef, self.params).spec.state_width)
    return state

  def initial_state(self) -> dict:
    # Host copies: every process holds the same values and keeps its own shards.
    return jax.device_put(jax.device_get(self._new_state()), self.state_shardings)

  @functools.cached_property
  def state_shardings(self):
    state = jax.eval_shape(self._new_state)
    shardings = sharding.state_shardings(state, self.mesh, self.config.mesh.fsdp)
    if "carry" in state:  # one row per batch slot: split like the batch
      shardings["carry"] = jax.tree.map(lambda _: sharding.batch_sharding(self.mesh),
                                        state["carry"])
    return shardings

  @staticmethod
  def eval_params(state: dict) -> dict:
    """The weights evaluation uses: the moving average when train.ema is on."""
    return state.get("ema", state["params"])

  def sampler(self, batch_size: int):
    """(key, step) -> the global batch, split over the data axis."""
    return sharding.batch_sampler(self.task.sample, batch_size, self.mesh)

  @functools.cache
  def train_step(self, loops: int, shift_stage: int | None = None):
    t = self.config.train
    if t.supervision_steps:
      fn = deep_supervision.make_train_step(
          self.graphdef, self.loss_task, self.optimizer, supervision_steps=t.supervision_steps,
          grad_loops=t.grad_loops, halting=self.config.model.halting, halt_target=t.halt_target,
          halt_loss_weight=t.halt_loss_weight, halt_exploration=t.halt_exploration, ema=t.ema,
          seed=self.config.seed)
      fn = functools.partial(fn, loops=loops)
    else:
      fn = functools.partial(
          step_lib.make_train_step(self.graphdef, self.loss_task, self.optimizer,
                                   options=step_lib.LossOptions.from_config(self.config),
                                   dropout=self.config.model.dropout > 0, seed=self.config.seed,
                                   ema=t.ema),
          loops=loops, shift_stage=shift_stage)
    return jax.jit(fn,
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
    fn = step_lib.make_eval_step(self.graphdef, self.loss_task)
    # Replicated sums: every process can read them.
    return jax.jit(functools.partial(fn, loops=loops),
                   out_shardings=sharding.replicated(self.mesh),
                   compiler_options=self.compiler_options)

  @functools.cache
  def halting_eval_step(self, max_steps: int):
    fn = deep_supervision.make_halting_eval_step(
        self.graphdef, self.loss_task, loops_per_step=self.config.model.num_loops,
        halt_target=self.config.train.halt_target)
    return jax.jit(functools.partial(fn, max_steps=max_steps),
                   out_shardings=sharding.replicated(self.mesh),
                   compiler_options=self.compiler_options)

  @functools.cached_property
  def eval_batches(self) -> list[dict]:
    """Fixed batches of the held-out task (`Task.held_out`: disjoint from a finite training
    pool; the task itself for tasks generated on the fly), from eval_seed."""
    e = self.config.eval
    sample = sharding.batch_sampler(self.task.held_out().sample, e.batch_size, self.mesh)
    key = jax.random.key(self.config.eval_seed)
    return [sample(jax.random.fold_in(key, i), EVAL_CURRICULUM_STEP) for i in range(e.num_batches)]

  @property
  def eval_loops(self) -> int:
    """The loop count of "eval/...": model.num_loops, times train.supervision_steps under deep
    supervision (the depth a trained example reaches)."""
    m = self.config.model
    return m.num_loops * max(1, self.config.train.supervision_steps)

  def eval_loop_counts(self) -> list[int]:
    stages = self.schedule.loops if self.schedule else ()  # every stage's own loop count
    return sorted({self.eval_loops, *map(int, self.config.eval.loops), *stages})

  def eval_prefix(self, loops: int) -> str:
    return "eval" if loops == self.eval_loops else f"eval@{loops}"

  def evaluate(self, params) -> dict[str, float]:
    """Eval metrics at the model's loop count ("eval/...") and each extra count ("eval@L/...").

    With a halting head, also "<prefix>/halting/...": the answers where the head halts, at
    most loops / model.num_loops supervision steps, and "steps", the mean steps used; at the
    trained depth (eval_loops) and the larger counts that are whole supervision steps.
    """
    out = {}
    per_step = self.config.model.num_loops
    for loops in self.eval_loop_counts():
      steps = [self.eval_step(loops)]
      names = [""]
      if self.config.model.halting and loops >= self.eval_loops and loops % per_step == 0:
        steps.append(self.halting_eval_step(loops // per_step))
        names.append("halting/")
      prefix = self.eval_prefix(loops)
      for step, name in zip(steps, names):
        values = step_lib.combine([jax.device_get(step(params, b)) for b in self.eval_batches])
        out |= {f"{prefix}/{name}{k}": v for k, v in values.items()}
    return out
