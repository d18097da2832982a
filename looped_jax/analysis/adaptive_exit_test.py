"""Tests for adaptive_exit: per-example exits against plain Python reference loops."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from looped_jax import errors
from looped_jax.analysis import adaptive_exit as ae
from looped_jax.analysis import fixed_point as fp

N, D, V = 3, 4, 5
RATES = np.array([0.3, 0.45, 0.65, 0.8, 0.9], np.float32)
MAX_LOOPS = 60


def contraction_step(h, x):
  """h -> a h + (1 - a) c per position; x: [N, 1 + D] holds the rate a and the target c."""
  a, c = x[:, :1], x[:, 1:]
  return a * h + (1 - a) * c


def linear_readout(w, h):
  """logits [N, V] = h [N, D] @ w [D, V]."""
  return h @ w


def _contraction_batch():
  rng = np.random.default_rng(0)
  c = rng.normal(size=(len(RATES), N, D)).astype(np.float32)
  a = np.broadcast_to(RATES[:, None, None], (len(RATES), N, 1))
  x = np.concatenate([a, c], axis=-1)
  w = rng.normal(size=(D, V)).astype(np.float32)
  return np.zeros_like(c), x, w


def _log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _reference_exit(h0, x, w, criterion, threshold, min_loops=1):
  """Python loop, one example at a time, float64. Returns loops, states, and the smallest
  relative distance |crit / threshold - 1| seen at any tested loop (a margin guard)."""
  loops, states, margin = [], [], np.inf
  for h, xi in zip(h0.astype(np.float64), x.astype(np.float64)):
    a, c = xi[:, :1], xi[:, 1:]
    t = 0
    while t < MAX_LOOPS:
      h_next = a * h + (1 - a) * c
      if criterion == "residual":
        size = np.linalg.norm(h)
        crit = np.inf if size == 0 else np.linalg.norm(h_next - h) / size
      else:
        lp_new, lp_old = _log_softmax(h_next @ w), _log_softmax(h @ w)
        crit = np.mean(np.sum(np.exp(lp_new) * (lp_new - lp_old), -1))
      h, t = h_next, t + 1
      if t >= min_loops:
        margin = min(margin, abs(crit / threshold - 1))
        if crit < threshold:
          break
    loops.append(t)
    states.append(h)
  return np.array(loops), np.stack(states), margin


@pytest.mark.parametrize("threshold", [1e-3, 1e-5])
def test_residual_exit_matches_reference_loop(threshold):
  h0, x, w = _contraction_batch()
  out = ae.adaptive_exit(contraction_step, Partial(linear_readout, jnp.asarray(w)), h0, x,
                         MAX_LOOPS, "residual", threshold)
  want_loops, want_states, margin = _reference_exit(h0, x, w, "residual", threshold)
  assert margin > 0.01, "a residual sits on the threshold: pick other rates"
  np.testing.assert_array_equal(out.loops, want_loops)
  np.testing.assert_allclose(out.states, want_states, atol=1e-5)
  np.testing.assert_allclose(out.logits, want_states @ w, atol=1e-4)
  # Faster contractions stop earlier, and each rate gets its own exit.
  assert np.all(np.diff(want_loops) > 0)
  if threshold == 1e-5:
    assert want_loops[-1] == MAX_LOOPS  # the slowest never gets there: budget used up
  # Same stopping rule as the residual curve: exit after loop loops_to_converge + 1.
  residuals, _ = fp.residual_curve(contraction_step, h0, x, MAX_LOOPS)
  first = np.asarray(fp.loops_to_converge(residuals, threshold))
  np.testing.assert_array_equal(out.loops, np.where(first >= 0, first + 1, MAX_LOOPS))


def test_kl_exit_matches_reference_loop_and_respects_min_loops():
  h0, x, w = _contraction_batch()
  readout = Partial(linear_readout, jnp.asarray(w))
  for threshold, min_loops in ((1e-4, 1), (1e-4, 12)):
    out = ae.adaptive_exit(contraction_step, readout, h0, x, MAX_LOOPS, "kl", threshold,
                           min_loops=min_loops)
    want_loops, want_states, margin = _reference_exit(h0, x, w, "kl", threshold, min_loops)
    assert margin > 0.01, "a KL value sits on the threshold: pick other rates"
    np.testing.assert_array_equal(out.loops, want_loops)
    np.testing.assert_allclose(out.states, want_states, atol=1e-5)
    np.testing.assert_allclose(out.logits, want_states @ w, atol=1e-4)
    assert np.all(np.asarray(out.loops) >= min_loops)
    assert len(set(want_loops.tolist())) > 1
  assert want_loops.min() == min_loops  # the floor binds for the fast examples


def rotation_step(h, x):
  """Rotate each position's 2-vector by the angle x[0] and shrink it slightly."""
  c, s = jnp.cos(x[0]), jnp.sin(x[0])
  return 0.99 * h @ jnp.array([[c, s], [-s, c]])


def test_max_confidence_picks_most_confident_loop():
  # Rotating states make the confidence oscillate, so the best loop is interior, per example.
  angles = np.array([[0.3], [0.7], [1.1], [2.0]], np.float32)
  h0 = np.tile(np.array([[1.0, 0.2], [0.4, -1.0]], np.float32), (len(angles), 1, 1))
  readout = lambda h: 3.0 * h
  max_loops, min_loops = 12, 4
  out = ae.adaptive_exit(rotation_step, readout, h0, angles, max_loops, "max_confidence",
                         min_loops=min_loops)

  want_loops, want_states, unconstrained = [], [], []
  for h, x in zip(h0, angles):
    h, confs, hist = jnp.asarray(h), [], []
    for _ in range(max_loops):
      h = rotation_step(h, jnp.asarray(x))
      hist.append(np.asarray(h))
      confs.append(float(ae.mean_max_prob(readout(h))))
    confs = np.array(confs)
    unconstrained.append(int(np.argmax(confs)) + 1)
    confs[:min_loops - 1] = -np.inf
    best = int(np.argmax(confs))
    top2 = np.sort(confs)[-2:]
    assert top2[1] - top2[0] > 1e-4, "near-tie: pick other angles"
    want_loops.append(best + 1)
    want_states.append(hist[best])
  np.testing.assert_array_equal(out.loops, want_loops)
  np.testing.assert_allclose(out.states, np.stack(want_states), atol=1e-5)
  np.testing.assert_allclose(out.logits, 3.0 * np.stack(want_states), atol=1e-4)
  assert len(set(want_loops)) > 1 and max(want_loops) < max_loops
  assert min(unconstrained) < min_loops and min_loops in want_loops  # the floor matters


def test_max_confidence_ties_go_to_the_earliest_allowed_loop():
  h0, x, _ = _contraction_batch()
  flat = Partial(linear_readout, jnp.zeros((D, V)))  # uniform predictions at every loop
  out = ae.adaptive_exit(contraction_step, flat, h0, x, 8, "max_confidence", min_loops=3)
  np.testing.assert_array_equal(out.loops, 3)
  np.testing.assert_allclose(out.states, (1 - RATES[:, None, None]**3) * x[..., 1:], rtol=1e-5)


def test_kl_between_and_mean_max_prob():
  logits_a = jnp.log(jnp.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
  logits_b = jnp.log(jnp.array([[0.25, 0.5, 0.25], [0.1, 0.8, 0.1]]))
  # KL(a || b) at position 0 is 0.25 ln 2, position 1 is 0: mean 0.125 ln 2.
  np.testing.assert_allclose(ae.kl_between(logits_a, logits_b), 0.125 * math.log(2), rtol=1e-5)
  np.testing.assert_allclose(ae.mean_max_prob(logits_a), 0.65, rtol=1e-5)


def test_bad_arguments_raise_config_error():
  h0, x, w = _contraction_batch()
  readout = Partial(linear_readout, jnp.asarray(w))
  with pytest.raises(errors.ConfigError):
    ae.adaptive_exit(contraction_step, readout, h0, x, 10, "entropy", 1e-3)
  with pytest.raises(errors.ConfigError):
    ae.adaptive_exit(contraction_step, readout, h0, x, 10, "kl", 1e-3, min_loops=11)
