"""Tests of seed grouping and bands."""

import numpy as np

from looped_jax.analysis import seeds


def test_names_group_by_model_and_only_seed_suffixes_count():
  names = ["looped_s0", "single_s0", "looped_s1", "shift_s10", "base", "s1", "x_s"]
  assert seeds.group(names) == {"looped": ["looped_s0", "looped_s1"], "single": ["single_s0"],
                                "shift": ["shift_s10"], "base": ["base"], "s1": ["s1"],
                                "x_s": ["x_s"]}
  assert seeds.has_seeds(names)
  assert not seeds.has_seeds(["looped_s0", "single_s0", "base"])


def test_band_is_mean_min_max_at_steps_every_run_logged():
  runs = [[{"step": 1, "a": 1.0}, {"step": 2, "a": 2.0}, {"step": 3, "a": 3.0}],
          [{"step": 1, "a": 3.0}, {"step": 2, "b": 0.0}, {"step": 3, "a": 6.0}],
          [{"step": 1, "a": 2.0}, {"step": 3, "a": 0.0}, {"step": 3, "a": 9.0}]]  # last wins
  b = seeds.band(runs, "a")
  np.testing.assert_array_equal(b.steps, [1, 3])
  np.testing.assert_allclose(b.mean, [2.0, 6.0])
  np.testing.assert_array_equal(b.low, [1.0, 3.0])
  np.testing.assert_array_equal(b.high, [3.0, 9.0])
  assert b.num_seeds == 3
  assert len(seeds.band(runs, "missing").steps) == 0
