"""Recursive reasoning end to end: a TRM with deep supervision, halting and EMA resumes exactly
(its carried examples and states are in the checkpoint), and reports halting statistics."""

import jax
import numpy as np
import pytest

import json
import os

from looped_jax import config as config_lib
from looped_jax import tasks
from looped_jax.config import base_config
from looped_jax.train import build, experiment, trainer

from helpers import cli, metric_records, repo_config


def _config(num_steps):
  c = base_config()
  c.task = tasks.default_config("parity", n_bits=6)
  c.model.update(block="post_norm", recursion="trm", d_model=8, num_heads=1, num_layers=1,
                 inner_loops=1, outer_cycles=2, init="reference_trm", head_bias=False,
                 position="rope", causal=False, final_norm=False, layer_norm_eps=1e-5,
                 halting=True)
  c.train.update(num_steps=num_steps, supervision_steps=3, ema=0.9, cross_entropy="stablemax",
                 batch_size=8, log_every=1, checkpoint_every=5)
  c.eval.update(every=5, batch_size=16, num_batches=1, loops=(1, 6))
  return c


@pytest.mark.slow
def test_deep_supervision_run_resumes_exactly_with_its_carry(tmp_path):
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  trainer.train(_config(12), straight, quiet=True)
  trainer.train(_config(7), resumed, quiet=True)  # its last checkpoint is step 7 (the end)
  trainer.train(_config(12), resumed, quiet=True)
  records = lambda w: [r for r in metric_records(w) if "loss" in r]
  a, b = records(straight), records(resumed)
  assert [r["step"] for r in b] == list(range(1, 13))
  for ra, rb in zip(a, b):
    assert ra.keys() == rb.keys()
    for k in ra:
      np.testing.assert_allclose(rb[k], ra[k], rtol=1e-5, err_msg=f"step {ra['step']} {k}")
  # halting statistics are logged: the examples that ended, their steps and correctness
  assert {"halt/ended", "halt/steps", "halt/halt_loss"} <= set().union(*map(set, a))
  evals = [r for r in metric_records(straight) if "eval/halting/steps" in r]
  assert evals and 1.0 <= evals[-1]["eval/halting/steps"] <= 3.0
  assert "eval@6/halting/steps" in evals[-1] and "eval@1/accuracy" in evals[-1]
  assert "eval@1/halting/steps" not in evals[-1]  # halting: at the trained depth and beyond
  # the carry restored from the checkpoint is the one the straight run had at that step
  exp = build.Experiment.build(_config(12))
  _, state_a = trainer.restore_latest(exp, straight)
  _, state_b = trainer.restore_latest(exp, resumed)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7),
               jax.device_get(state_a["carry"]), jax.device_get(state_b["carry"]))
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7),
               jax.device_get(state_a["ema"]), jax.device_get(state_b["ema"]))


@pytest.mark.parametrize("name", ["trm_sudoku", "trm_maze"])
@pytest.mark.parametrize("size", ["full", "check"])
def test_trm_configs_expand_to_valid_variants(name, size):
  variants = experiment.expand(repo_config(name, size))
  assert {"trm_s0", "trm_s1", "trm_s2", "looped_s0", "looped_s1", "looped_s2", "trm_no_ds_s0",
          "trm_no_halt_s0", "trm_no_ema_s0"} == set(variants)
  for config in variants.values():
    config_lib.validate(config)
  trm, looped = variants["trm_s1"], variants["looped_s1"]
  assert trm.model.recursion == "trm" and trm.train.supervision_steps > 0
  assert looped.model.recursion == "none" and looped.train.supervision_steps == 0
  # equal parameters (but the halting head) and an equal time budget
  for key in ("block", "d_model", "num_layers", "num_heads", "mlp_ratio", "use_bias"):
    assert trm.model[key] == looped.model[key]
  assert trm.train.max_train_seconds == looped.train.max_train_seconds
  assert list(experiment.expand(repo_config(name, f"{size}:trm_s0"))) == ["trm_s0"]


@pytest.mark.slow
def test_trm_maze_config_trains_and_evaluates_from_the_cli(tmp_path):
  workdir = str(tmp_path / "w")
  args = ["--config=configs/trm_maze.py:check:trm_s0", f"--workdir={workdir}",
          "--config.train.num_steps=4", "--config.train.log_every=2",
          "--config.train.checkpoint_every=4", "--config.eval.every=4"]
  done = cli(*args)
  assert done.returncode == 0, done.stderr
  assert "step 4/4" in done.stdout
  evaluated = cli(*args, "--mode=eval")
  assert evaluated.returncode == 0, evaluated.stderr
  with open(os.path.join(workdir, "trm_s0", "eval.json")) as f:
    result = json.load(f)
  # accuracy vs supervision steps (1, 2, 4, N = 8, 2N) and, at N and 2N, with halting on
  assert {"eval@1/sequence_accuracy", "eval@16/sequence_accuracy", "eval/sequence_accuracy",
          "eval/halting/steps", "eval@16/halting/steps"} <= set(result)
  assert 1.0 <= result["eval@16/halting/steps"] <= 16.0
