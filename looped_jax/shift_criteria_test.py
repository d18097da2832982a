"""Tests for the SHIFT switch criteria: exact firing steps and JSON round trips."""

import json
import math

import numpy as np
import pytest

from looped_jax import errors
from looped_jax import shift_criteria as sc


def first_fire(criterion, signals, steps, start=1):
  """Feeds steps start..steps; returns (first step that fired or None, final criterion)."""
  fired = None
  for t in range(start, steps + 1):
    criterion, fire = criterion.update(t, signals(t))
    if fire and fired is None:
      fired = t
  return fired, criterion


def plateau_loss(t):
  """Falls linearly from 2 to 1 over 300 steps, then flat."""
  return 2.0 - t / 300 if t <= 300 else 1.0


def test_fixed_step_and_budget_fraction_fire_at_their_step():
  assert first_fire(sc.FixedStep(step=7), lambda t: {}, 20)[0] == 7
  assert first_fire(sc.BudgetFraction(fraction=0.3, total_steps=1000), lambda t: {}, 999)[0] == 300
  assert first_fire(sc.BudgetFraction(fraction=0.25, total_steps=10), lambda t: {}, 10)[0] == 3


def test_scp_fires_after_patience_flat_checks():
  # Checks every 50 steps. The 350 check still sees the last falling window (r = 0.076);
  # 400, 450, 500 see r = 0 < delta1: the third consecutive pass is at 500.
  scp = sc.Scp(every=50, patience=3, delta1=0.01)
  fired, scp = first_fire(scp, lambda t: {"train_loss": np.float32(plateau_loss(t))}, 600)
  assert fired == 500
  assert scp.last_r == 0.0 and json.dumps(scp.to_dict())


def test_scp_streak_must_be_consecutive():
  # A one-window dip at 451..500 (r = 0.1) resets the streak; the rise after it counts as
  # no improvement, so passes at 550, 600, 650.
  loss = lambda t: 0.9 if 450 < t <= 500 else plateau_loss(t)
  fired, _ = first_fire(sc.Scp(every=50, patience=3, delta1=0.01),
                        lambda t: {"train_loss": loss(t)}, 800)
  assert fired == 650


def test_scp_gradient_gate():
  # The EMA of the gradient norm (decay 0.9) is 1 at the 400 check, ~0.04 at 450.
  grad = lambda t: 1.0 if t <= 420 else 0.001
  signals = lambda t: {"train_loss": plateau_loss(t), "grad_norm": grad(t)}
  scp = sc.Scp(every=50, patience=3, delta1=0.01, delta2=0.1)
  assert first_fire(scp, signals, 800)[0] == 550
  stuck = lambda t: {"train_loss": plateau_loss(t), "grad_norm": 1.0}
  assert first_fire(scp, stuck, 2000)[0] is None
  with pytest.raises(ValueError, match="grad_norm"):
    first_fire(scp, lambda t: {"train_loss": plateau_loss(t)}, 200)


def test_scp_does_not_fire_while_still_improving():
  # 2.5 % relative improvement per 50-step window, above delta1 = 1 %.
  loss = lambda t: 2.0 * math.exp(-t / 2000)
  assert first_fire(sc.Scp(every=50, patience=3, delta1=0.01),
                    lambda t: {"train_loss": loss(t)}, 3000)[0] is None


def test_scp_on_sparse_eval_loss_and_on_accuracy():
  eval_only = lambda t: {"eval_loss": plateau_loss(t)} if t % 25 == 0 else {}
  assert first_fire(sc.Scp(signal="eval_loss", every=50, patience=3, delta1=0.01),
                    eval_only, 600)[0] == 500
  # Windows with no value are skipped: eval every 100 steps, checks every 50.
  eval_100 = lambda t: {"eval_loss": plateau_loss(t)} if t % 100 == 0 else {}
  assert first_fire(sc.Scp(signal="eval_loss", every=50, patience=3, delta1=0.01),
                    eval_100, 900)[0] == 600  # checks with data: 100, 200, 300, then 400-600 flat
  acc = lambda t: {"simple_acc": min(1.0, t / 300)}  # higher is better
  assert first_fire(sc.Scp(signal="simple_acc", every=50, patience=3, delta1=0.01),
                    acc, 600)[0] == 500


def test_simple_acc_fires_when_flat():
  acc = lambda t: {"simple_acc": min(1.0, t / 300)}
  assert first_fire(sc.SimpleAcc(every=50, patience=3, tol=0.002), acc, 600)[0] == 500
  rising = lambda t: {"simple_acc": t / 3000}  # +0.0167 per window
  assert first_fire(sc.SimpleAcc(every=50, patience=3, tol=0.002), rising, 2000)[0] is None


def test_grad_alignment_fires_below_threshold():
  # Window mean at check 100k is 1 - (100k - 49.5)/1000: first below 0.5 at k = 6.
  cos = lambda t: {"grad_cosine": 1.0 - t / 1000}
  assert first_fire(sc.GradAlignment(every=100, threshold=0.5), cos, 1000)[0] == 600
  assert first_fire(sc.GradAlignment(every=100, threshold=0.5, patience=2), cos, 1000)[0] == 700


def test_measures_at_is_true_at_check_steps_of_a_reader_only():
  ga = sc.GradAlignment(every=50)
  assert [t for t in range(1, 201) if sc.measures_at(ga, sc.GRAD_COSINE, t)] == [50, 100, 150, 200]
  assert sc.measures_at(sc.Scp(every=10, grad_signal=sc.GRAD_COSINE), sc.GRAD_COSINE, 20)
  assert not sc.measures_at(sc.Scp(every=10), sc.GRAD_COSINE, 20)
  assert not sc.measures_at(sc.FixedStep(step=5), sc.GRAD_COSINE, 5)
  assert not sc.measures_at(None, sc.GRAD_COSINE, 100)


@pytest.mark.parametrize("make, signals, fire_step", [
    (lambda: sc.Scp(every=50, patience=3, delta1=0.01, delta2=0.1),
     lambda t: {"train_loss": plateau_loss(t), "grad_norm": 1.0 if t <= 420 else 0.001}, 550),
    (lambda: sc.SimpleAcc(every=50, patience=3), lambda t: {"simple_acc": min(1.0, t / 300)},
     500),
    (lambda: sc.GradAlignment(every=100, patience=2), lambda t: {"grad_cosine": 1 - t / 1000},
     700),
    (lambda: sc.FixedStep(step=500), lambda t: {}, 500),
    (lambda: sc.BudgetFraction(fraction=0.5, total_steps=1000), lambda t: {}, 500),
])
def test_state_round_trips_through_json_and_continues_identically(make, signals, fire_step):
  fired, half = first_fire(make(), signals, 430)  # stop mid-window, mid-streak
  assert fired is None
  restored = sc.from_dict(json.loads(json.dumps(half.to_dict())))
  assert restored == half and type(restored) is type(half)
  assert first_fire(restored, signals, 900, start=431)[0] == fire_step
  assert first_fire(half, signals, 900, start=431)[0] == fire_step


def test_settings_are_validated():
  with pytest.raises(errors.ConfigError, match=r"scp\.delta1=nan"):
    sc.Scp(delta1=float("nan"))
  with pytest.raises(errors.ConfigError, match=r"simple_acc\.every=0 must be an integer >= 1"):
    sc.SimpleAcc(every=0)
  with pytest.raises(errors.ConfigError, match=r"grad_alignment\.threshold=2"):
    sc.GradAlignment(threshold=2)
  with pytest.raises(errors.ConfigError, match=r"grad_alignment\.params='w'.*'qk', 'all'"):
    sc.GradAlignment(params="w")
  with pytest.raises(errors.ConfigError, match=r"criterion\.kind=None"):
    sc.from_dict({"step": 3})
  assert sc.Scp.settings() == ("signal", "every", "patience", "delta1", "delta2",
                               "grad_signal", "ema")
