"""Tests of the SHIFT-vs-looped time-to-target numbers on hand-made records."""

import math

import pytest

from looped_jax.analysis import shift_compare


def run(accuracies, seconds_per_step):
  """Eval and log every 10 steps."""
  records = []
  for i, acc in enumerate(accuracies):
    step = 10 * (i + 1)
    records += [{"step": step, "loss": 1.0, "perf/train_seconds": seconds_per_step * step},
                {"step": step, "eval/acc": acc}]
  return records


def test_time_to_the_looped_runs_final_value_minus_the_points():
  looped = run([0.1, 0.5, 0.8, 0.9, 0.9], 1.0)  # final 0.9, 50 s
  shift = run([0.1, 0.2, 0.3, 0.85, 0.95], 0.5)
  got = shift_compare.compare(looped, shift, "eval/acc", points=0.05)
  assert got["target"] == pytest.approx(0.85)
  assert (got["shift_step"], got["looped_step"]) == (40, 40)
  assert got["time_ratio"] == pytest.approx(20 / 50)
  assert got["time_ratio_to_own"] == pytest.approx(20 / 40)
  assert got["gap"] == pytest.approx(0.05)


def test_a_shift_run_that_never_gets_there_takes_forever():
  got = shift_compare.compare(run([0.5, 0.9], 1.0), run([0.1, 0.2], 0.5), "eval/acc", 0.01)
  assert got["shift_step"] is None and math.isinf(got["time_ratio"])
  assert got["gap"] == pytest.approx(-0.7)


def test_a_loss_is_reached_from_above():
  looped = [{"step": 10, "perf/train_seconds": 10.0, "eval/loss": 3.0},
            {"step": 20, "perf/train_seconds": 20.0, "eval/loss": 2.0}]
  shift = [{"step": 10, "perf/train_seconds": 5.0, "eval/loss": 2.05},
           {"step": 20, "perf/train_seconds": 10.0, "eval/loss": 1.9}]
  got = shift_compare.compare(looped, shift, "eval/loss", points=0.1, lower=True)
  assert got["target"] == pytest.approx(2.1)
  assert (got["shift_step"], got["looped_step"]) == (10, 20)
  assert got["time_ratio"] == pytest.approx(5 / 20)
  assert got["gap"] == pytest.approx(-0.1)
