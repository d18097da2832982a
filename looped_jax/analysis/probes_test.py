"""Linear probes: the ridge read-out against least squares, and the probe of a real model."""

import jax
import numpy as np
import pytest

from looped_jax import tasks
from looped_jax.analysis import probes
from looped_jax.config import base_config
from looped_jax.errors import ConfigError
from looped_jax.train import build


def test_ridge_read_out_tends_to_least_squares_and_r2_scores_it():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 6)) * np.arange(1, 7)
  w, b = rng.normal(size=(6, 3)), rng.normal(size=3)
  y = x @ w + b
  fit = probes.ridge_fit(x, y, 1e-9)
  np.testing.assert_allclose(probes.ridge_predict(fit, x), y, atol=1e-6)
  # The same as least squares on [x, 1] with a little noise (the exact reference).
  y_noisy = y + 0.1 * rng.normal(size=y.shape)
  z = np.concatenate([x, np.ones((200, 1))], 1)
  lstsq = z @ np.linalg.lstsq(z, y_noisy, rcond=None)[0]
  np.testing.assert_allclose(probes.ridge_predict(probes.ridge_fit(x, y_noisy, 1e-9), x), lstsq,
                             atol=1e-6)
  assert probes.r_squared(y, y) == 1.0
  assert probes.r_squared(y, np.broadcast_to(y.mean(0), y.shape)) == pytest.approx(0.0)
  # Held-out R^2 of a read-out of pure noise is about 0 or below, never near 1.
  noise = rng.normal(size=(200, 3))
  fit = probes.ridge_fit(x[:100], noise[:100], 1.0)
  assert probes.r_squared(noise[100:], probes.ridge_predict(fit, x[100:])) < 0.1


def test_probe_of_an_icl_model_reads_the_weights_per_loop():
  config = base_config()
  config.task = tasks.default_config("linear_regression", n_dims=3, n_points=6)
  config.model.update(d_model=16, num_heads=2, num_loops=2, injection="add", init_state="zeros")
  config.eval.update(probes=("answer", "w"), probe_prompts=64)
  exp = build.Experiment.build(config, devices=jax.devices()[:1])
  result = probes.probe(exp, exp.params)
  assert result["loops"] == [0, 1, 2]
  for name in ("answer", "w"):
    r2 = result["targets"][name]["r2"]
    assert len(r2) == 3 and all(np.isfinite(r2)) and max(r2) <= 1.0
  # h_0 = 0 carries nothing: its probe predicts the training mean (R^2 <= 0 held out).
  assert result["targets"]["w"]["r2"][0] <= 1e-6
  config.eval.probes = ("steps",)
  with pytest.raises(ConfigError, match="eval.probes names 'steps'.*allowed for it: answer, w"):
    build.Experiment.build(config, devices=jax.devices()[:1])
