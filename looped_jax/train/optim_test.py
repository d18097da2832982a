"""Learning-rate schedules of the `train` config section."""

import numpy as np
import pytest

from looped_jax import config as config_lib
from looped_jax.errors import ConfigError
from looped_jax.train import optim


def _train(**overrides):
  t = config_lib.base_config().train
  t.update(learning_rate=1.0, num_steps=100, **overrides)
  return t


def test_warmup_stable_decay_warms_holds_then_falls_linearly_to_zero():
  lr = optim.learning_rate_schedule(
      _train(schedule="warmup_stable_decay", warmup_steps=10, decay_steps=20))
  steps = np.array([0, 5, 10, 50, 80, 90, 100])
  np.testing.assert_allclose([float(lr(s)) for s in steps],
                             [0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0], atol=1e-6)


def test_warmup_stable_decay_without_warmup_starts_at_the_peak():
  lr = optim.learning_rate_schedule(_train(schedule="warmup_stable_decay", decay_steps=25))
  np.testing.assert_allclose([float(lr(s)) for s in (0, 75, 95, 100)], [1.0, 1.0, 0.2, 0.0],
                             atol=1e-6)


@pytest.mark.parametrize("decay_steps", [0, 91])
def test_warmup_stable_decay_needs_decay_steps_inside_the_run(decay_steps):
  c = config_lib.base_config()
  c.train.update(schedule="warmup_stable_decay", num_steps=100, warmup_steps=10,
                 decay_steps=decay_steps)
  with pytest.raises(ConfigError, match=rf"decay_steps={decay_steps} must be in 1..90"):
    config_lib.validate(c)
