"""SHIFT in the trainer: equivalences with plain runs, exact resume in either stage, config."""

import importlib.util
import json
import os
import shutil

import pytest

from helpers import REPO, metric_records, tiny_config
from looped_jax import config as config_lib
from looped_jax.errors import ConfigError
from looped_jax.train import checkpoint, experiment, trainer
from looped_jax.train import build

SHORT = {"num_steps": 12, "log_every": 1, "checkpoint_every": 12}


def _short(num_loops: int, shift_loops=(), criterion=None):
  config = tiny_config(train=SHORT, eval={"every": 6}, mesh={"data": 1})
  config.model.num_loops = num_loops
  config.shift.loops = shift_loops
  if criterion is not None:
    config.shift.criterion = criterion
  return config


def _curve(workdir, keys=("loss", "grad_norm")):
  """(step, key, value) of the given keys, in file order."""
  return [(r["step"], k, r[k]) for r in metric_records(str(workdir)) for k in keys if k in r]


def _eval_keys(workdir):
  return sorted({k for r in metric_records(str(workdir)) for k in r if k.startswith("eval/")})


@pytest.mark.slow
def test_switch_at_step_0_is_plain_looped_training(tmp_path):
  trainer.train(_short(3), str(tmp_path / "looped"), quiet=True)
  trainer.train(_short(3, (1, 3), {"kind": "fixed_step", "step": 0}), str(tmp_path / "shift"),
                quiet=True)
  keys = ("loss", "grad_norm", "loops", *_eval_keys(tmp_path / "looped"))
  assert _curve(tmp_path / "shift", keys) == _curve(tmp_path / "looped", keys)
  summary = json.load(open(tmp_path / "shift" / "summary.json"))
  assert summary["shift/switch_step"] == 0 and summary["shift/final_stage"] == 1


@pytest.mark.slow
def test_switch_never_firing_is_plain_single_training(tmp_path):
  trainer.train(_short(1), str(tmp_path / "single"), quiet=True)
  trainer.train(_short(1, (1, 3), {"kind": "fixed_step", "step": 10**6}),
                str(tmp_path / "shift"), quiet=True)
  keys = ("loss", "grad_norm", "loops", *_eval_keys(tmp_path / "single"))
  assert _curve(tmp_path / "shift", keys) == _curve(tmp_path / "single", keys)
  records = metric_records(str(tmp_path / "shift"))
  assert {r["shift/stage"] for r in records if "shift/stage" in r} == {0}
  assert "shift/switch_step" not in records[-1]


def _cosines(workdir):
  return {r["step"]: r["shift/grad_cosine"] for r in metric_records(str(workdir))
          if "shift/grad_cosine" in r}


@pytest.mark.slow
def test_grad_alignment_is_measured_at_checks_and_fires_on_it(tmp_path):
  # Never firing (threshold -1): the cosine is logged at every check (steps 3, 6, 9, 12) and
  # measuring it leaves training exactly as plain Single-Attn training.
  never = {"kind": "grad_alignment", "every": 3, "threshold": -1.0}
  trainer.train(_short(1), str(tmp_path / "single"), quiet=True)
  trainer.train(_short(1, (1, 3), never), str(tmp_path / "never"), quiet=True)
  keys = ("loss", "grad_norm", "loops", *_eval_keys(tmp_path / "single"))
  assert _curve(tmp_path / "never", keys) == _curve(tmp_path / "single", keys)
  cosines = _cosines(tmp_path / "never")
  assert sorted(cosines) == [3, 6, 9, 12]
  assert all(-1.0 <= c < 1.0 for c in cosines.values())
  # Threshold at the median value: the switch comes at the first check below it.
  threshold = sorted(cosines.values())[2]
  expected = min(s for s, c in cosines.items() if c < threshold)
  fires = {"kind": "grad_alignment", "every": 3, "threshold": threshold}
  trainer.train(_short(1, (1, 3), fires), str(tmp_path / "fires"), quiet=True)
  summary = json.load(open(tmp_path / "fires" / "summary.json"))
  assert summary["shift/switch_step"] == expected
  assert _cosines(tmp_path / "fires") == {s: c for s, c in cosines.items() if s <= expected}


@pytest.mark.slow
def test_other_criteria_do_not_measure_the_cosine(tmp_path):
  trainer.train(_short(1, (1, 3), {"kind": "scp", "every": 3, "delta1": 0.5}), str(tmp_path),
                quiet=True)
  assert not _cosines(tmp_path)


@pytest.mark.slow
def test_resume_from_stage_1_and_stage_2_checkpoints_is_exact(tmp_path):
  # SCP checks at 10, 20, 30; delta1=10 passes every check after the first, patience 2:
  # fires at step 30. Checkpoints every 10: step 20 is mid-streak in stage 1, 40 in stage 2.
  config = tiny_config(train={"num_steps": 50, "log_every": 5, "checkpoint_every": 10,
                              "keep_checkpoints": 10}, eval={"every": 10}, mesh={"data": 1})
  config.shift.loops = (1, 3)
  config.shift.criterion = {"kind": "scp", "every": 10, "patience": 2, "delta1": 10.0}
  workdir = str(tmp_path)
  final = trainer.train(config, workdir, quiet=True)
  full = metric_records(workdir)
  assert full[-1]["shift/switch_step"] == 30
  for resume_at, stage in ((40, 1), (20, 0)):
    ckpts = os.path.join(workdir, "checkpoints")
    for d in os.listdir(ckpts):  # as if the run had been killed right after saving resume_at
      if d.isdigit() and int(d) > resume_at:
        shutil.rmtree(os.path.join(ckpts, d))
    ckpt = checkpoint.Checkpointer(ckpts)
    _, meta = ckpt.restore(resume_at, build.Experiment.build(config).initial_state())
    ckpt.close()
    assert meta["shift"]["stage"] == stage
    assert trainer.train(config, workdir, quiet=True) == final
    assert metric_records(workdir) == full


def test_shift_config_is_validated():
  config = tiny_config()
  config_lib.validate(config)  # off by default
  config.shift.loops = (1, 3)
  config_lib.validate(config)
  for key, value, match in [("loops", (3,), "at least two"),
                            ("moments", "zero", "shift.moments"),
                            ("criterion", {"kind": "never"}, "kind"),
                            ("criterion", {"kind": "scp", "every": 7}, "multiple of train.log_every")]:
    bad = tiny_config()
    bad.shift.loops = (1, 3)
    bad.shift[key] = value
    with pytest.raises(ConfigError, match=match):
      config_lib.validate(bad)
  config.train.loop_curriculum.every = 10
  with pytest.raises(ConfigError, match="loop_curriculum"):
    config_lib.validate(config)


def test_variant_replaces_the_whole_criterion():
  config = tiny_config()
  config.shift.loops = (1, 3)
  config.shift.criterion = {"kind": "scp", "every": 10, "delta1": 0.05}
  merged = config_lib.apply_overrides(config, {"shift": {"criterion": {"kind": "fixed_step",
                                                                       "step": 5}}})
  assert merged.shift.criterion.to_dict() == {"kind": "fixed_step", "step": 5}
  config_lib.validate(merged)
  assert "shift.criterion" in config_lib.flatten(merged)


def _config_module(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", name + ".py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("name, arg", [("shift_markov", ""), ("shift_markov", "medium"),
                                       ("shift_markov", "large"), ("shift_progressive", ""),
                                       ("shift_p_hop", ""), ("shift_p_hop", "p2")])
def test_shift_configs_are_valid(name, arg):
  module = _config_module(name)
  runs = experiment.expand(module.get_config(arg) if arg else module.get_config())
  assert set(runs) == {"looped", "shift"} and runs["shift"].shift.loops[0] == 1


def test_unknown_config_scale_is_a_config_error():
  with pytest.raises(ConfigError, match="quick, medium, large"):
    _config_module("shift_markov").get_config("huge")
  with pytest.raises(ConfigError, match="p1, p2"):
    _config_module("shift_p_hop").get_config("p3")
