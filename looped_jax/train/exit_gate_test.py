"""Ouro's entropy-regularised exit-gate objective (`step.exit_gate_loss`).

Reference: the objective written out in float64 NumPy with explicit Python loops over the
loops t, from the model's own per-loop states (`loop_states`), read-outs and exit logits:
lambda_t = sigmoid(exit logit), p(t) = lambda_t prod_{j<t} (1 - lambda_j) for t < L,
p(L) = prod_{j<L} (1 - lambda_j), loss = weighted mean over positions of
sum_t p(t) CE_t - beta H(p); `last_loop_loss` against the cross-entropy of `models.apply`.
"""


import jax
import jax.numpy as jnp
import numpy as np

from looped_jax import models
from looped_jax.models.testing import TinyTokenTask, random_model
from looped_jax.train import step as step_lib

LOOPS = 3


TASK = TinyTokenTask(seq_len=8)


def build():
  """A tiny model with an exit gate, every parameter random (so lambda_t varies)."""
  return random_model((("injection", "add"), ("exit_gate", True)), scale=0.5, task=TASK)


def batch():
  rng = np.random.default_rng(1)
  shape = (2, TASK.seq_len)
  weights = rng.uniform(0.5, 2.0, shape).astype(np.float32)
  weights[0, :3] = 0.0
  weights[1, -2:] = 0.0
  return {"inputs": jnp.asarray(rng.integers(0, 17, shape), jnp.int32),
          "targets": jnp.asarray(rng.integers(0, 17, shape), jnp.int32),
          "weights": jnp.asarray(weights)}


def cross_entropy(logits, targets):
  """float64 [B, n, V], int [B, n] -> [B, n]."""
  logits = logits - logits.max(-1, keepdims=True)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  return -np.take_along_axis(logp, targets[..., None], -1)[..., 0]


def reference(graphdef, params, b, beta):
  """(loss, exit distribution p [L, B, n], expected exit loop, last loop's loss)."""
  model = models.merge(graphdef, params)
  with jax.disable_jit():
    states = model.loop_states(b["inputs"], LOOPS)
    logits = [np.asarray(model.readout(h), np.float64) for h in states]
    lam = [1.0 / (1.0 + np.exp(-np.asarray(model.exit_logits(h), np.float64))) for h in states]
  targets, w = np.asarray(b["targets"]), np.asarray(b["weights"], np.float64)
  ce = [cross_entropy(z, targets) for z in logits]
  p = []
  for t in range(LOOPS):
    stay = np.ones_like(lam[0])
    for j in range(t):
      stay = stay * (1.0 - lam[j])
    p.append(stay * lam[t] if t < LOOPS - 1 else stay)
  per_position = sum(p[t] * ce[t] for t in range(LOOPS))
  entropy = -sum(p[t] * np.log(p[t]) for t in range(LOOPS))
  depth = sum((t + 1) * p[t] for t in range(LOOPS))

  def mean(v):
    return float((v * w).sum() / w.sum())

  return (mean(per_position - beta * entropy), np.stack(p), mean(depth), mean(ce[-1]))


def test_loss_and_metrics_equal_the_written_out_objective():
  graphdef, params = build()
  b = batch()
  fn = jax.jit(step_lib.exit_gate_loss, static_argnames=("graphdef", "loops"))
  for beta in (0.0, 0.3):
    loss, metrics = fn(params, b, graphdef=graphdef, loops=LOOPS, beta=beta)
    want, p, depth, last = reference(graphdef, params, b, beta)
    np.testing.assert_allclose(p.sum(0), 1.0, rtol=1e-12)
    assert p.min() > 1e-3 and np.ptp(p[0]) > 0.05  # lambda_t varies: a wrong p would show
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["expected_exit_loop"]), depth, rtol=1e-5)
    assert 1.0 <= depth <= LOOPS
    np.testing.assert_allclose(float(metrics["last_loop_loss"]), last, rtol=1e-5)
  # beta = 0 is the plain expected loss; the entropy bonus lowers it.
  plain = fn(params, b, graphdef=graphdef, loops=LOOPS, beta=0.0)[0]
  assert float(loss) < float(plain)
  # The last loop's loss is the task loss of the ordinary forward pass at L loops.
  out = np.asarray(models.apply(graphdef, params, b["inputs"], LOOPS), np.float64)
  w = np.asarray(b["weights"], np.float64)
  task_loss = (cross_entropy(out, np.asarray(b["targets"])) * w).sum() / w.sum()
  np.testing.assert_allclose(float(metrics["last_loop_loss"]), task_loss, rtol=1e-5)


def test_gradient_reaches_the_exit_head():
  graphdef, params = build()
  grad = jax.jit(jax.grad(lambda p, b: step_lib.exit_gate_loss(
      p, b, graphdef=graphdef, loops=LOOPS, beta=0.1)[0]))(params, batch())
  for g in jax.tree.leaves(grad["exit_head"]):
    assert np.isfinite(g).all() and np.abs(g).max() > 1e-6
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grad))
