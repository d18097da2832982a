"""Per-example adaptive exit over a loop (Geiping et al.; Bansal's max-confidence oracle).

Model-agnostic: the loop is `step(h, x) -> h_next` and the head `readout(h) -> logits`, both
on ONE example (h: state of shape S, e.g. [n, D]; logits: [..., V], e.g. [n, V]). The batch
is handled with `jax.vmap` and masking, so everything jits; a stopped example's state is
frozen while the rest of the batch keeps looping.

Criteria, checked after loop t+1 has produced h_{t+1} from h_t:

  residual        ||h_{t+1} - h_t|| / ||h_t|| < threshold
  kl              mean over positions of KL(p_{t+1} || p_t) < threshold, p = softmax(logits)
  max_confidence  no threshold: run all loops, keep per example the loop whose prediction
                  has the highest mean (over positions) max-probability; earliest on ties.

`loops` counts applications of `step`: an example that stops right after computing h_k
reports k and returns h_k. With the residual criterion, loops = loops_to_converge + 1 from
`fixed_point.residual_curve` for converged examples. Examples that never meet the criterion
report max_loops. The threshold loops use `lax.while_loop` (ending once every example has
stopped), so they are forward-only (no reverse-mode gradients). `step` / `readout` may be
`jax.tree_util.Partial`s to trace their parameters (see `jit_callables`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from looped_jax import errors
from looped_jax.analysis.fixed_point import relative_residual
from looped_jax.analysis.jit_callables import jit_callables

Array = jax.Array
Step = Callable[[Array, Array], Array]
Readout = Callable[[Array], Array]

CRITERIA = ("residual", "kl", "max_confidence")


class ExitResult(NamedTuple):
  """Outputs of `adaptive_exit`."""
  states: Array  # [B, *S]   state at each example's exit
  logits: Array  # [B, *L]   readout of that state
  loops: Array   # int32 [B] loops applied, in [min_loops, max_loops]


def kl_between(logits_new: Array, logits_old: Array) -> Array:
  """KL(p_new || p_old) over the last axis, averaged over the others, for ONE example:
  logits [n, C] each -> scalar."""
  logp_new = jax.nn.log_softmax(logits_new, axis=-1)
  logp_old = jax.nn.log_softmax(logits_old, axis=-1)
  return jnp.mean(jnp.sum(jnp.exp(logp_new) * (logp_new - logp_old), axis=-1))


def mean_max_prob(logits: Array) -> Array:
  """Mean over positions of the max softmax probability, for ONE example: [n, C] -> scalar."""
  return jnp.mean(jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1))


def _select(mask: Array, a: Array, b: Array) -> Array:
  """where(mask, a, b) with mask [B] broadcast over a's trailing axes."""
  return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)


def _threshold_exit(step, readout, h0, x, threshold, max_loops, min_loops, criterion):
  step_b, readout_b = jax.vmap(step), jax.vmap(readout)
  batch = h0.shape[0]
  use_kl = criterion == "kl"

  def cond(carry):
    t, _, _, done, _ = carry
    return (t < max_loops) & ~jnp.all(done)

  def body(carry):
    t, h, logits, done, loops = carry
    h_new = step_b(h, x)
    if use_kl:
      logits_new = readout_b(h_new)
      crit = jax.vmap(kl_between)(logits_new, logits)
      logits = _select(done, logits, logits_new)
    else:
      crit = jax.vmap(relative_residual)(h, h_new)
    t = t + 1
    stop = ~done & (crit < threshold) & (t >= min_loops)
    h = _select(done, h, h_new)  # stopped examples keep their exit state
    loops = jnp.where(stop, t, loops)
    return t, h, logits, done | stop, loops

  # The residual criterion needs no logits inside the loop; carry a placeholder.
  logits0 = readout_b(h0) if use_kl else jnp.zeros((batch,), h0.dtype)
  init = (jnp.zeros((), jnp.int32), h0, logits0, jnp.zeros((batch,), bool),
          jnp.full((batch,), max_loops, jnp.int32))
  _, h, logits, _, loops = lax.while_loop(cond, body, init)
  return ExitResult(h, logits if use_kl else readout_b(h), loops)


def _max_confidence_exit(step, readout, h0, x, max_loops, min_loops):
  step_b, readout_b = jax.vmap(step), jax.vmap(readout)
  logits_shape = jax.eval_shape(readout_b, h0)
  batch = h0.shape[0]

  def body(carry, t):
    h, best_h, best_logits, best_conf, best_t = carry
    h = step_b(h, x)
    logits = readout_b(h)
    conf = jax.vmap(mean_max_prob)(logits).astype(jnp.float32)
    conf = jnp.where(jnp.isnan(conf), -jnp.inf, conf)
    # The first eligible loop always seeds the pick (so states, logits and loops agree even
    # for non-finite logits); later ones must be strictly better: earliest loop wins ties.
    better = (t == min_loops) | ((conf > best_conf) & (t > min_loops))
    return (h, _select(better, h, best_h), _select(better, logits, best_logits),
            jnp.where(better, conf, best_conf), jnp.where(better, t, best_t)), None

  init = (h0, h0, jnp.zeros(logits_shape.shape, logits_shape.dtype),
          jnp.full((batch,), -jnp.inf, jnp.float32), jnp.full((batch,), max_loops, jnp.int32))
  ts = jnp.arange(1, max_loops + 1, dtype=jnp.int32)
  (_, h, logits, _, loops), _ = lax.scan(body, init, ts)
  return ExitResult(h, logits, loops)


@jit_callables(("step", "readout"), ("max_loops", "criterion", "min_loops"))
def _adaptive_exit(step, readout, h0, x, threshold, max_loops, criterion, min_loops):
  if criterion == "max_confidence":
    return _max_confidence_exit(step, readout, h0, x, max_loops, min_loops)
  return _threshold_exit(step, readout, h0, x, threshold, max_loops, min_loops, criterion)


def adaptive_exit(step: Step, readout: Readout, h0: Array, x: Array, max_loops: int,
                  criterion: str = "kl", threshold: float = 1e-3,
                  min_loops: int = 1) -> ExitResult:
  """Loops each example until its exit criterion fires (or max_loops).

  Args:
    step: loop map of one example, (h [*S], x [*X]) -> h [*S].
    readout: head of one example, h [*S] -> logits [..., V].
    h0: [B, *S] initial states.
    x: [B, *X] inputs / injections.
    max_loops: loop budget.
    criterion: "residual", "kl" or "max_confidence" (see module docstring).
    threshold: exit threshold for residual / kl (traced: changing it does not recompile);
      ignored by max_confidence.
    min_loops: no example exits (or, for max_confidence, is picked) before this many loops.

  Returns:
    ExitResult(states [B, *S], logits [B, ..., V], loops int32 [B]).
  """
  errors.check_choice("criterion", criterion, CRITERIA)
  errors.check(max_loops >= 1, f"max_loops={max_loops} must be >= 1.")
  errors.check(1 <= min_loops <= max_loops,
               f"min_loops={min_loops} must be in [1, max_loops={max_loops}].")
  return _adaptive_exit(step, readout, h0, x, jnp.asarray(threshold, jnp.float32), max_loops,
                        criterion, min_loops)
