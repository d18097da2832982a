"""configs/yang_icl.py: every task, CPU and full, builds valid variants; bad arguments fail."""

import pytest

from helpers import repo_config
from looped_jax import tasks
from looped_jax.analysis import icl_report
from looped_jax.errors import ConfigError
from looped_jax.train import experiment

TASKS = ("linear_regression", "noisy_linear_regression", "sparse_linear_regression",
         "decision_tree", "relu2nn")
PAPER_BT = {"linear_regression": (20, 15), "noisy_linear_regression": (20, 15),
            "sparse_linear_regression": (20, 10), "decision_tree": (70, 15), "relu2nn": (12, 5)}


def _get_config(arg):
  return repo_config("yang_icl", arg)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("size", ["", ":full", ":small", ":check"])
def test_every_task_builds_its_variants(task, size):
  runs = experiment.expand(_get_config(task + size))
  assert set(runs) == {"looped", "standard", "looped_no_inject"}
  # the reference code's init and LayerNorm eps at every size and in every variant
  assert all((r.model.init, r.model.layer_norm_eps) == ("reference_yang", 1e-5)
             for r in runs.values())
  looped = runs["looped"]
  t = tasks.get(looped.task)
  icl_report.settings_of(looped.eval.icl_settings)
  icl_report.baselines_of(t, looped.eval.icl_baselines)
  if size == ":small":  # b = 10, T = 5, no curriculum, batch 256
    assert (looped.model.num_loops, looped.train.grad_loops) == (10, 5)
    assert t.n_dims == (10 if task == "sparse_linear_regression" else 5)
    assert t.active_dims(0) == t.n_dims and t.active_points(0) == t.n_points
    assert looped.train.batch_size == 256 and looped.eval.icl_max_loops == 100
  elif size == ":check":  # the 30-minute d = 10 check: cpu's (b, T) and sizes at batch 256
    cpu = experiment.expand(_get_config(task))["looped"]
    assert (looped.model.num_loops, looped.train.grad_loops) == (
        cpu.model.num_loops, cpu.train.grad_loops)
    assert t.n_dims == 10 and t.active_dims(500) == 10
    assert t.active_dims(499) < 10 or not t.uses_dims_curriculum  # trees: no dims curriculum
    assert looped.train.batch_size == 256 and looped.train.num_steps == 1200
    assert all(r.train.max_train_seconds == 1800 for r in runs.values())  # the 30 min
    assert runs["standard"].model.num_layers == 8  # looped <= 1/6 of its parameters
  elif size:
    assert (looped.model.num_loops, looped.train.grad_loops) == PAPER_BT[task]
    assert t.n_dims == 20 and looped.model.d_model == 256
    assert runs["standard"].model.num_layers == 12
  assert runs["standard"].model.num_loops == 1


def test_variant_selection_and_bad_arguments():
  assert set(experiment.expand(_get_config("relu2nn:looped"))) == {"looped"}
  with pytest.raises(ConfigError, match="linear_regression"):
    _get_config("linear")
  with pytest.raises(ConfigError, match="looped_no_inject"):
    _get_config("relu2nn:fulll")
  with pytest.raises(ConfigError, match="at most one of cpu, full, small, check"):
    _get_config("relu2nn:full:small")
