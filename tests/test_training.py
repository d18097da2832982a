"""Trainer guarantees: device-count invariance, exact resume after SIGKILL, the NaN guard."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import REPO, TINY, metric_records, tiny_config
from looped_jax import tasks
from looped_jax.errors import ConfigError
from looped_jax.tasks.markov import MarkovLanguage
from looped_jax.train import build, checkpoint, trainer


@pytest.mark.slow
def test_eight_devices_match_one(tmp_path):
  losses = {}
  for devices in (1, 8):
    config = tiny_config(train={"num_steps": 20, "log_every": 1, "checkpoint_every": 20},
                         mesh={"data": devices})
    trainer.train(config, str(tmp_path / str(devices)), quiet=True)
    losses[devices] = [r["loss"] for r in metric_records(str(tmp_path / str(devices))) if "loss" in r]
  assert len(losses[1]) == 20
  np.testing.assert_allclose(losses[8], losses[1], rtol=1e-4)


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_exactly(tmp_path):
  """SIGKILL after the first checkpoint (step 50, leaving 250 steps of margin before the run
  would end), then the same command: the metrics of a run that was never interrupted
  (trained in this process, with the same 8 simulated devices)."""
  train = {"num_steps": 300, "checkpoint_every": 50}
  args = [f"--config={TINY}", *(f"--config.train.{k}={v}" for k, v in train.items()),
          "--config.eval.every=150"]
  killed = str(tmp_path / "killed")
  command = [sys.executable, "-m", "looped_jax.main", *args, f"--workdir={killed}"]
  proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  ckpts = os.path.join(killed, "checkpoints")
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    done = [int(d) for d in os.listdir(ckpts) if d.isdigit()] if os.path.isdir(ckpts) else []
    if done:
      break
    time.sleep(0.02)
  assert proc.poll() is None, "the run ended before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  interrupted = metric_records(killed)
  assert interrupted[-1]["step"] < 300
  resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr
  assert "resumed from the checkpoint at step" in resumed.stdout
  full = str(tmp_path / "full")
  trainer.train(tiny_config(train=train, eval={"every": 150}), full, quiet=True)
  assert metric_records(killed) == metric_records(full)


@tasks.register("markov_nan_after_25")
@dataclasses.dataclass(frozen=True, eq=False)
class NanAfter25(MarkovLanguage):
  """A Markov task whose batches are poisoned from step 25 on (to trip the guard)."""

  def sample(self, key, batch_size, step=0):
    batch = super().sample(key, batch_size, step)
    poison = jnp.where(jnp.asarray(step) >= 25, jnp.nan, 1.0)
    return batch | {"weights": batch["weights"] * poison}


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  config = tiny_config(train={"num_steps": 60, "log_every": 10, "checkpoint_every": 10})
  config.task.name = "markov_nan_after_25"
  with pytest.raises(trainer.TrainingDiverged, match="non-finite"):
    trainer.train(config, str(tmp_path), quiet=True)
  ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
  assert ckpt.latest_step() == 20
  exp = build.Experiment.build(config)
  state, meta = ckpt.restore(20, exp.initial_state())
  ckpt.close()
  assert meta["step"] == 20
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))


@pytest.mark.slow
def test_larger_num_steps_extends_a_run_exactly(tmp_path):
  """10 steps, then the same workdir at 20: the metrics of one 20-step run, nothing lost."""
  train = {"log_every": 1, "checkpoint_every": 5}
  straight, extended = str(tmp_path / "straight"), str(tmp_path / "extended")
  trainer.train(tiny_config(train={**train, "num_steps": 20}), straight, quiet=True)
  trainer.train(tiny_config(train={**train, "num_steps": 10}), extended, quiet=True)
  trainer.train(tiny_config(train={**train, "num_steps": 20}), extended, quiet=True)
  losses = lambda w: [(r["step"], r["loss"]) for r in metric_records(w) if "loss" in r]
  assert [s for s, _ in losses(extended)] == list(range(1, 21))
  np.testing.assert_allclose([l for _, l in losses(extended)], [l for _, l in losses(straight)],
                             rtol=1e-6)


@pytest.mark.parametrize("change, named", [
    ({"num_steps": 5}, "extended, not shortened"),
    ({"num_steps": 20, "schedule": "warmup_cosine", "warmup_steps": 2}, "train.schedule"),
])
@pytest.mark.slow
def test_extension_that_would_change_the_past_is_refused(tmp_path, change, named):
  base = {"num_steps": 10, "log_every": 5, "checkpoint_every": 5}
  first = {**base, **{k: v for k, v in change.items() if k != "num_steps"}}
  trainer.train(tiny_config(train=first), str(tmp_path), quiet=True)
  before = (tmp_path / "metrics.jsonl").read_text()
  with pytest.raises(ConfigError, match=named):
    trainer.train(tiny_config(train={**first, **change}), str(tmp_path), quiet=True)
  assert (tmp_path / "metrics.jsonl").read_text() == before


@pytest.mark.slow
def test_constant_run_continues_as_the_wsd_run_from_a_checkpoint_before_the_decay(tmp_path):
  """10 constant-LR steps, then the workdir under warmup_stable_decay (20 steps, the last 10
  decaying): the metrics of one 20-step WSD run; a checkpoint past the decay start is refused."""
  train = {"log_every": 1, "checkpoint_every": 5}
  wsd = {**train, "num_steps": 20, "schedule": "warmup_stable_decay", "decay_steps": 10}
  straight, decayed = str(tmp_path / "straight"), str(tmp_path / "decayed")
  trainer.train(tiny_config(train=wsd), straight, quiet=True)
  trainer.train(tiny_config(train={**train, "num_steps": 10}), decayed, quiet=True)
  trainer.train(tiny_config(train=wsd), decayed, quiet=True)
  losses = lambda w: [(r["step"], r["loss"]) for r in metric_records(w) if "loss" in r]
  assert [s for s, _ in losses(decayed)] == list(range(1, 21))
  np.testing.assert_allclose([l for _, l in losses(decayed)], [l for _, l in losses(straight)],
                             rtol=1e-6)
  late = str(tmp_path / "late")
  trainer.train(tiny_config(train={**train, "num_steps": 15}), late, quiet=True)
  with pytest.raises(ConfigError, match=r"checkpoint at step 15, past the decay start"):
    trainer.train(tiny_config(train=wsd), late, quiet=True)


@pytest.mark.slow
def test_a_run_saved_before_a_key_existed_resumes_while_the_key_keeps_its_default(tmp_path):
  """A config.json without train.decay_steps (as written before the key was added) resumes;
  the key at another value is a different config."""
  train = {"num_steps": 4, "log_every": 2, "checkpoint_every": 2}
  trainer.train(tiny_config(train=train), str(tmp_path), quiet=True)
  path = tmp_path / "config.json"
  saved = json.loads(path.read_text())
  del saved["train"]["decay_steps"]
  path.write_text(json.dumps(saved))
  trainer.train(tiny_config(train={**train, "num_steps": 6}), str(tmp_path), quiet=True)
  assert [r["step"] for r in metric_records(str(tmp_path)) if "loss" in r] == [2, 4, 6]
  assert "decay_steps" in json.loads(path.read_text())["train"]
  path.write_text(json.dumps({**saved, "train": {**saved["train"], "num_steps": 6}}))
  with pytest.raises(ConfigError, match="train.decay_steps"):
    trainer.train(tiny_config(train={**train, "num_steps": 6, "decay_steps": 3}), str(tmp_path),
                  quiet=True)


@pytest.mark.slow
def test_eight_cpu_devices_survive_a_long_run_ahead(tmp_path):
  """Logging rarely lets the host dispatch far ahead; without trainer.steps_ahead's waits
  this run hung in an all-reduce on a 2-core machine (docs/performance.md, "Several CPU
  devices in one process")."""
  flags = ("--xla_force_host_platform_device_count=8 "
           # a hang fails in 10 s, not XLA's 40
           "--xla_cpu_collective_call_terminate_timeout_seconds=10 "
           "--xla_cpu_collective_call_warn_stuck_timeout_seconds=5")
  overrides = {"train.num_steps": 120, "train.log_every": 120, "train.checkpoint_every": 120,
               "eval.every": 120, "train.batch_size": 512, "model.d_model": 64}
  done = subprocess.run(
      [sys.executable, "-m", "looped_jax.main", f"--config={TINY}", f"--workdir={tmp_path}",
       *[f"--config.{k}={v}" for k, v in overrides.items()]],
      cwd=REPO, text=True, capture_output=True, timeout=600,
      env=dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu"))
  assert done.returncode == 0, done.stderr[-3000:]
  assert [r["step"] for r in metric_records(str(tmp_path)) if "loss" in r] == [120]


def test_steps_ahead_is_bounded_only_for_several_cpu_devices():
  devices = jax.devices()
  assert len(devices) == 8 and devices[0].platform == "cpu"
  mesh = lambda n: jax.make_mesh((n,), ("data",), devices=devices[:n],
                                 axis_types=(jax.sharding.AxisType.Explicit,))
  assert trainer.steps_ahead(mesh(8)) == trainer.CPU_STEPS_AHEAD == 4
  assert trainer.steps_ahead(mesh(1)) == 0


@pytest.mark.slow
def test_time_budget_ends_the_run_at_a_log_step_and_a_larger_one_resumes_it(tmp_path):
  """max_train_seconds ends training at the first log step past it, with the final eval, a
  checkpoint and summary.json saying so; the same workdir with a larger budget (the only
  change) resumes and runs to num_steps."""
  train = {"num_steps": 40, "log_every": 5, "checkpoint_every": 20}
  trainer.train(tiny_config(train={**train, "max_train_seconds": 1e-6}), str(tmp_path), quiet=True)
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["steps"] == 5 and summary["stopped_by"] == "max_train_seconds"
  assert "eval/loss" in summary
  assert checkpoint.Checkpointer(str(tmp_path / "checkpoints")).latest_step() == 5
  trainer.train(tiny_config(train={**train, "max_train_seconds": 1e-6}), str(tmp_path), quiet=True)
  assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 5  # budget spent
  trainer.train(tiny_config(train=train), str(tmp_path), quiet=True)
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["steps"] == 40 and summary["stopped_by"] == "num_steps"
  assert [r["step"] for r in metric_records(str(tmp_path)) if "loss" in r] == list(range(5, 41, 5))
