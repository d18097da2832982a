"""The train loop's metric averaging: plain means, and (sum, weight) pairs as ratios that
survive the JSON of a checkpoint taken between log steps."""

import json

import numpy as np

from looped_jax.train import trainer


def test_pairs_average_over_examples_and_survive_a_checkpoint():
  steps = [{"loss": np.float32(1.0), "halt/steps": (np.float32(0.0), np.float32(0.0))},
           {"loss": np.float32(3.0), "halt/steps": (np.float32(12.0), np.float32(4.0))},
           {"loss": np.float32(2.0), "halt/steps": (np.float32(2.0), np.float32(1.0))}]
  out = trainer._mean_metrics(steps, 3)
  assert out == {"loss": 2.0, "halt/steps": 14.0 / 5.0}  # not the mean of per-step ratios
  saved = json.loads(json.dumps([{k: (list(map(float, v)) if isinstance(v, tuple) else float(v))
                                  for k, v in r.items()} for r in steps]))
  assert trainer._mean_metrics(trainer._restored_pending({trainer.PENDING: saved}), 3) == out
  # a window in which no example ended leaves the ratio out instead of logging 0 / 0
  assert trainer._mean_metrics(steps[:1], 1) == {"loss": 1.0}
