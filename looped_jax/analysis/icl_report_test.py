"""Unit tests of the ICL report's settings, baselines and loop grid."""

import pytest

from looped_jax import tasks
from looped_jax.analysis import icl_eval, icl_report
from looped_jax.errors import ConfigError


def test_settings_are_suite_entries_or_all():
  assert icl_report.settings_of(("standard", "skewed")) == {
      "standard": {}, "skewed": {"x_covariance": "skewed"}}
  assert icl_report.settings_of(("all",)) == icl_eval.SUITE
  with pytest.raises(ConfigError, match="eval.icl_settings"):
    icl_report.settings_of(("standard", "skewd"))


def test_baselines_are_the_tasks_relevant_ones():
  task = tasks.get({"name": "sparse_linear_regression", "n_dims": 5, "n_points": 9})
  assert "lasso_alpha=0.01" in icl_report.baselines_of(task, ())
  assert list(icl_report.baselines_of(task, ("zero", "lasso_alpha=0.01"))) == [
      "zero", "lasso_alpha=0.01"]
  with pytest.raises(ConfigError, match="lasso_alpha=0.01"):
    icl_report.baselines_of(task, ("lasso",))


def test_sweep_loops_is_dense_to_2b_then_strided_to_the_max():
  assert icl_report.sweep_loops(20, 200) == list(range(1, 41)) + list(range(45, 201, 5))
  assert icl_report.sweep_loops(1, 10) == list(range(1, 11))
  assert icl_report.sweep_loops(3, 30)[:6] == [1, 2, 3, 4, 5, 6] and 30 in icl_report.sweep_loops(3, 30)


def test_applies_only_to_in_context_regression():
  assert icl_report.applies(tasks.get({"name": "relu2nn", "n_dims": 3, "n_points": 5}))
  assert not icl_report.applies(tasks.get({"name": "markov"}))
  task = tasks.get({"name": "linear_regression", "n_dims": 10, "n_points": 15})
  assert icl_report.k_at_2d(task) == 14
