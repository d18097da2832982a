"""--mode=eval loop sweep on a reasoning task: JSON + PNG with curves, exits and diagnostics."""

import json
import os

import jax
import numpy as np
import pytest
from helpers import tiny_config

from looped_jax import models, tasks
from looped_jax.analysis import loop_sweep
from looped_jax.train import experiment


def _config(**model):
  c = tiny_config()
  c.task = tasks.default_config("prefix_sums", n_bits=8)
  c.model.update({"block": "gpt2", "d_model": 16, "num_heads": 2, "num_loops": 2,
                  "max_len": 12, "injection": "concat", "state_norm": "rms"} | model)
  c.train.num_steps = 20
  c.train.checkpoint_every = 20
  c.eval.every = 20
  ls = c.eval.loop_sweep
  ls.max_factor = 3
  ls.tasks = {"bits12": {"n_bits": 12}}
  ls.batch_size = 16
  ls.diagnose_examples = 2
  ls.diagnose_settings = ("bits12",)  # each diagnosed setting costs a compile of diagnose()
  return c


@pytest.mark.slow
def test_eval_mode_writes_the_loop_sweep(tmp_path):
  config = _config()
  workdir = str(tmp_path)
  experiment.run(config, workdir, "train")
  experiment.run(config, workdir, "eval")
  assert os.path.exists(os.path.join(workdir, "loop_sweep.png"))
  with open(os.path.join(workdir, "loop_sweep.json")) as f:
    result = json.load(f)
  assert result["train_loops"] == 2 and result["max_loops"] == 6
  assert result["order"] == ["train", "bits12"] and set(result["settings"]) == {"train", "bits12"}
  for name, n_bits in (("train", 8), ("bits12", 12)):
    entry = result["settings"][name]
    assert entry["seq_len"] == n_bits
    for key in ("token_accuracy", "sequence_accuracy", "residual"):
      assert len(entry[key]) == 6
    assert all(0 <= a <= 1 for a in entry["token_accuracy"] + entry["sequence_accuracy"])
    for criterion in ("residual", "kl"):
      exit_ = entry["adaptive_exit"][criterion]
      assert 1 <= exit_["mean_loops"] <= 6 and 0 <= exit_["sequence_accuracy"] <= 1
  assert "fixed_point" not in result["settings"]["train"]
  fp = result["settings"]["bits12"]["fixed_point"]
  assert fp["num_examples"] == 2 and fp["num_loops"] == 6 and fp["state_size"] == 12 * 16
  assert fp["spectral_radius"]["num_finite"] == 2

  # The curve scores the model itself: rebuild the sweep's training-setting batch and compare.
  exp = experiment.build.Experiment.build(config)
  _, state = experiment.trainer.restore_latest(exp, workdir)
  batch = tasks.get(config.task).sample(
      jax.random.fold_in(jax.random.key(config.eval_seed), loop_sweep.SWEEP_SEED_OFFSET), 16)
  out = models.apply(exp.graphdef, state["params"], batch["inputs"], 2)
  token = float(np.mean(np.argmax(out, -1) == batch["targets"]))
  np.testing.assert_allclose(result["settings"]["train"]["token_accuracy"][1], token, atol=1e-6)


@pytest.mark.slow
def test_timestep_models_skip_exit_and_diagnostics():
  config = _config(timestep=True)
  config.eval.loop_sweep.tasks = {}
  config.eval.loop_sweep.diagnose_settings = ()
  exp = experiment.build.Experiment.build(config)
  entry = loop_sweep.sweep(exp, exp.params)["settings"]["train"]  # initial parameters
  assert "skipped" in entry["fixed_point"] and "skipped" in entry["adaptive_exit"]
  assert len(entry["token_accuracy"]) == 6


@pytest.mark.slow
def test_rope_models_sweep_past_their_training_length():
  config = _config(position="rope", max_len=8)  # no learned slots: max_len limits nothing
  config.eval.loop_sweep.diagnose_settings = ()
  config.eval.loop_sweep.diagnose_examples = 0
  exp = experiment.build.Experiment.build(config)
  result = loop_sweep.sweep(exp, exp.params)
  assert result["settings"]["bits12"]["seq_len"] == 12
  assert len(result["settings"]["bits12"]["sequence_accuracy"]) == 6
