"""Tests for the ICL evaluation metric, suite runner and plots (training-free)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from looped_jax import tasks
from looped_jax.analysis import icl_eval as ev
from looped_jax.errors import ConfigError
from looped_jax.tasks import baselines as bl


def test_bootstrap_band_contains_the_mean_and_is_seeded():
  rng = np.random.default_rng(0)
  values = rng.exponential(size=(500, 7)) * np.arange(1, 8)
  a = ev.aggregate(values, seed=3)
  b = ev.aggregate(values, seed=3)
  c = ev.aggregate(values, seed=4)
  assert a == b and a != c
  mean = np.array(a["mean"])
  np.testing.assert_allclose(mean, values.mean(0))
  lo, hi = np.array(a["bootstrap_low"]), np.array(a["bootstrap_high"])
  assert np.all(lo < mean) and np.all(mean < hi)
  # A 90 % band of the mean is about +-1.645 standard errors.
  se = values.std(0, ddof=1) / np.sqrt(500)
  np.testing.assert_allclose((hi - lo) / (2 * 1.645 * se), 1.0, atol=0.15)
  assert a["count"] == [500] * 7


def test_bootstrap_band_covers_the_true_mean_about_90_percent():
  rng = np.random.default_rng(1)
  hits = [ev.aggregate(rng.exponential(size=(200, 1)), n_bootstrap=400, seed=i)
          for i in range(300)]
  covered = np.mean([h["bootstrap_low"][0] <= 1.0 <= h["bootstrap_high"][0] for h in hits])
  assert 0.83 <= covered <= 0.96


def test_aggregate_respects_the_scored_mask():
  values = np.arange(12, dtype=float).reshape(4, 3)
  scored = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [1, 1, 0]], bool)
  out = ev.aggregate(values, scored)
  assert out["count"] == [3, 3, 0]
  assert out["mean"][0] == pytest.approx(np.mean([0, 3, 9]))
  assert out["mean"][1] == pytest.approx(np.mean([4, 7, 10]))
  assert out["mean"][2] is None and out["bootstrap_low"][2] is None
  json.dumps(out)


def test_normalised_errors_and_distance():
  task = tasks.get({"name": "sparse_linear_regression", "curriculum": False, "n_points": 5})
  batch = {"ys": np.ones((2, 5)), "weights": np.tile([1.0, 0.0], (2, 5))}
  out = np.zeros((2, 10, 1))
  out[:, 0::2, 0] = 4.0
  err, scored = ev.normalised_errors(out, batch, task)
  np.testing.assert_allclose(err, 9.0 / 3)  # normalised by s = 3
  assert scored.all()
  np.testing.assert_allclose(ev.prediction_distance(out, np.zeros_like(out), task), 16.0 / 3)


def test_suite_settings_build_valid_tasks_for_every_class():
  fields = {"x_covariance", "x_scale", "y_scale", "noise_std", "prompting"}
  used = {k for overrides in ev.SUITE.values() for k in overrides}
  assert fields <= used
  for name in ("linear_regression", "noisy_linear_regression", "sparse_linear_regression",
               "decision_tree", "relu2nn"):
    task = tasks.get({"name": name})
    for overrides in ev.SUITE.values():
      t = ev.setting_task(task, overrides)
      assert not t.curriculum


SETTINGS = ["standard", "orthogonal_train_test", "overlapping_train_test"]


@pytest.fixture(scope="module")
def small_eval():
  task = tasks.get({"name": "linear_regression", "n_dims": 5, "n_points": 9})
  predictors = {"least_squares": bl.least_squares(), "zero": bl.zero(),
                "averaging": bl.averaging()}
  res = ev.evaluate_predictors(predictors, task, SETTINGS, n_prompts=400, batch_size=200,
                               seed=7, distance_to="least_squares", n_bootstrap=200)
  return task, res


@pytest.mark.slow
def test_evaluate_predictors_curves(small_eval):
  task, res = small_eval
  json.dumps(res)  # JSON-serialisable as is
  std = res["standard"]["error"]
  assert std["zero"]["count"] == [400] * 9
  np.testing.assert_allclose(std["zero"]["mean"], 1.0, atol=0.2)
  ls = np.array(std["least_squares"]["mean"])
  np.testing.assert_allclose(ls[:5], (5 - np.arange(5)) / 5, atol=0.15)
  assert np.all(ls[6:] < 1e-8)
  # Orthogonal queries: least squares can only predict 0 there, like the zero predictor; and
  # only k < d is scored.
  orth = res["orthogonal_train_test"]["error"]
  assert orth["zero"]["count"] == [400] * 5 + [0] * 4 and orth["zero"]["mean"][5] is None
  np.testing.assert_allclose(orth["least_squares"]["mean"][:5], orth["zero"]["mean"][:5],
                             rtol=1e-6)
  # Overlapping queries repeat a seen point: least squares is exact from k = 1 on.
  over = res["overlapping_train_test"]["error"]
  assert over["least_squares"]["count"] == [400] * 9
  assert max(over["least_squares"]["mean"][1:]) < 1e-8
  assert over["zero"]["normaliser"] == task.normaliser == 5.0


@pytest.mark.slow
def test_distances_compare_predictions_on_the_same_prompts(small_eval):
  _, res = small_eval
  dist = res["standard"]["distance"]
  assert set(dist) == {"zero", "averaging"}
  # Past d least squares is exact, so its distance to zero equals zero's error there.
  zero_err = res["standard"]["error"]["zero"]["mean"]
  np.testing.assert_allclose(dist["zero"]["mean"][6:], zero_err[6:], rtol=1e-5)
  assert dist["averaging"]["mean"][0] == 0.0  # both predict 0 at position 0


def test_evaluate_suite_is_deterministic_and_guards_the_training_seed():
  task = tasks.get({"name": "linear_regression", "n_dims": 4, "n_points": 6})
  kw = dict(n_prompts=64, batch_size=64, seed=3, n_bootstrap=100)
  a = ev.evaluate_suite(bl.averaging(), task, ["standard"], **kw)
  b = ev.evaluate_suite(bl.averaging(), task, ["standard"], **kw)
  assert a == b
  c = ev.evaluate_suite(bl.averaging(), task, ["standard"], **{**kw, "seed": 4})
  assert a != c
  # A jax predictor (a model's apply) goes through the same path as a numpy baseline.
  model_like = jax.jit(lambda inputs: jnp.zeros(inputs.shape[:2] + (1,), jnp.float32))
  assert (ev.evaluate_suite(model_like, task, ["standard"], **kw)
          == ev.evaluate_suite(bl.zero(), task, ["standard"], **kw))
  with pytest.raises(ConfigError, match="training seed"):
    ev.evaluate_suite(bl.zero(), task, ["standard"], train_seed=3, **kw)
  with pytest.raises(ConfigError, match="unknown eval setting"):
    ev.evaluate_suite(bl.zero(), task, ["sideways"], **kw)


def test_plots_write_files(tmp_path, small_eval):
  _, res = small_eval
  err = res["standard"]["error"]
  fig = ev.plot_error_curves({"averaging": err["averaging"]},
                             {"least_squares": err["least_squares"], "zero": err["zero"]},
                             tmp_path / "curves.png", title="LR", logy=True)
  ax = fig.axes[0]
  assert len(ax.lines) == 3 and len(ax.collections) == 3  # a band per curve
  assert [line.get_linestyle() for line in ax.lines] == ["-", "--", "--"]
  assert (tmp_path / "curves.png").stat().st_size > 1000
  by_loops = {"looped": {1: err["zero"], 4: err["averaging"], 8: err["least_squares"]}}
  fig = ev.plot_error_vs_loops(by_loops, 3, tmp_path / "loops.png",
                               reference={"least_squares": err["least_squares"]})
  line = fig.axes[0].lines[0]
  np.testing.assert_array_equal(line.get_xdata(), [1, 4, 8])
  np.testing.assert_allclose(line.get_ydata(), [err[n]["mean"][3] for n in
                                                ("zero", "averaging", "least_squares")])
  assert (tmp_path / "loops.png").stat().st_size > 1000
