"""Per-step random loop counts: random depth (Geiping et al.) and progressive loss (Bansal et al.).

Every count is a pure function of (seed, step): `step_key(seed, step, tag)` folds the step into
the run's seed, so a resumed run draws exactly the counts of an uninterrupted one and no
sampler state is checkpointed. Counts are traced int32 scalars inside the jitted train step;
the model's `forward_dynamic` runs them without recompiling (see there for the cost model).

Why dynamic counts rather than one compiled step per count: a Poisson-LogNormal count is
unbounded, so a bounded set of compiled steps would need a cap and up to cap compilations
(tens of seconds each on CPU). With a dynamic count, the detached part runs in a
`lax.while_loop` (cost = the drawn count, forward only) and the gradient part in a masked scan
of the static backprop depth k, so one compilation serves all counts and the extra cost is at
most k - 1 masked loops when the draw is shorter than k.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

KINDS = ("none", "poisson_lognormal", "uniform")

# fold_in tags under the step key: the dropout key is the step key itself (unchanged from
# before these options existed), the others are derived from it.
STATE_TAG, COUNT_TAG, PROGRESSIVE_TAG = 1, 2, 3


def step_key(seed: int, step: jax.Array | int, tag: int | None = None) -> jax.Array:
  """fold_in(key(seed), step), optionally folded once more with `tag`."""
  key = jax.random.fold_in(jax.random.key(seed), step)
  return key if tag is None else jax.random.fold_in(key, tag)


def poisson_lognormal(key: jax.Array, mean: float, sigma: float) -> jax.Array:
  """r = Poisson(tau) + 1, tau ~ LogNormal(log(mean) - sigma^2 / 2, sigma) (Geiping).

  E[tau] = mean, so E[r] = mean + 1. Returns int32 [].
  """
  k_tau, k_r = jax.random.split(key)
  mu = math.log(mean) - sigma**2 / 2
  tau = jnp.exp(mu + sigma * jax.random.normal(k_tau, ()))
  return (jax.random.poisson(k_r, tau) + 1).astype(jnp.int32)


def uniform(key: jax.Array, low: int, high: int) -> jax.Array:
  """r ~ U{low, ..., high} (both inclusive). Returns int32 []."""
  return jax.random.randint(key, (), low, high + 1, jnp.int32)


def sample_count(key: jax.Array, kind: str, *, mean: float, sigma: float, low: int,
                 high: int) -> jax.Array:
  """One loop count of the given kind ("poisson_lognormal" or "uniform")."""
  if kind == "poisson_lognormal":
    return poisson_lognormal(key, mean, sigma)
  if kind == "uniform":
    return uniform(key, low, high)
  raise ValueError(f"kind={kind!r} must be one of {KINDS[1:]}")


def truncated_split(count: jax.Array, depth: int) -> tuple[jax.Array, jax.Array]:
  """(detached loops, loops with gradient) = (max(r - k, 0), min(k, r)) (Geiping)."""
  return jnp.maximum(count - depth, 0), jnp.minimum(count, depth)


def progressive_counts(key: jax.Array, max_loops: int) -> tuple[jax.Array, jax.Array]:
  """Bansal's (n, k): n ~ U{0..m-1} detached warm-start loops, then k ~ U{1..m-n} with gradient."""
  k_n, k_k = jax.random.split(key)
  n = jax.random.randint(k_n, (), 0, max_loops, jnp.int32)
  k = jax.random.randint(k_k, (), 1, max_loops - n + 1, jnp.int32)
  return n, k
