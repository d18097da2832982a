"""Markov language with per-sample Information Content (Gong et al., arXiv 2510.10089;
docs/papers.md, "Gong et al.").

A sequence x_1..x_{n+1} is drawn from an order-1 chain P (rows ~ Dirichlet(alpha)); the model
predicts x_{t+1} from x_1..x_t. Difficulty of a sample is its Information Content

    IC(x) = -(1/n) sum_t log P[x_t, x_{t+1}]      (mean surprisal under the true chain)

and samples are grouped "simple" (IC below the `simple_quantile` of the task's IC
distribution) or "complex" (IC above `complex_quantile`); the rest belong to neither group.

Variants (the generator is a reconstruction; the paper gives none):
  global      one fixed chain. Embeddings + read-out fit its bigrams; attention barely
              matters (docs/papers.md, "Pitfalls" 15), kept for ablations.
  mixture     `num_chains` fixed chains, half near-deterministic (alpha_simple), half
              high-entropy (alpha_complex); each sequence uses one, so the model must infer
              which from context. The default.
  in_context  a fresh chain per sequence (alpha_complex): the model must estimate the
              bigram table from the prompt itself.

Batch extras: `best_next` [B, n] is the argmax of the true row P[x_t] (what a model that
knew the chain would predict), `ic` [B] the Information Content.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from looped_jax.errors import check, check_choice
from looped_jax.tasks import register
from looped_jax.tasks.base import TokenTask, per_group

VARIANTS = ("global", "mixture", "in_context")
_CALIBRATION_SEQUENCES = 8192


@register("markov")
@dataclasses.dataclass(frozen=True, eq=False)
class MarkovLanguage(TokenTask):
  vocab: int = 16
  length: int = 32
  variant: str = "mixture"
  num_chains: int = 4
  alpha_simple: float = 0.1
  alpha_complex: float = 1.0
  chain_seed: int = 0
  simple_quantile: float = 1 / 3
  complex_quantile: float = 2 / 3

  group_names = ("simple", "complex")

  def __post_init__(self):
    check_choice("task.variant", self.variant, VARIANTS)
    check(self.vocab >= 2, f"task.vocab={self.vocab} must be >= 2.")
    check(self.length >= 2, f"task.length={self.length} must be >= 2.")
    check(self.num_chains >= 1, f"task.num_chains={self.num_chains} must be >= 1.")
    check(0 < self.simple_quantile <= self.complex_quantile < 1,
          "task.simple_quantile <= task.complex_quantile must both lie in (0, 1).")

  @property
  def seq_len(self) -> int:
    return self.length

  @property
  def vocab_size(self) -> int:
    return self.vocab

  @property
  def output_dim(self) -> int:
    return self.vocab

  @functools.cached_property
  def chains(self) -> np.ndarray:
    """Fixed transition tables [K, V, V] (float32) for the global and mixture variants."""
    rng = np.random.default_rng(self.chain_seed)
    if self.variant == "global":
      alphas = [self.alpha_complex]
    else:
      alphas = [self.alpha_simple if i % 2 == 0 else self.alpha_complex
                for i in range(self.num_chains)]
    tables = [rng.dirichlet(np.full(self.vocab, a), size=self.vocab) for a in alphas]
    return np.clip(np.stack(tables), 1e-12, None).astype(np.float32)

  @functools.cached_property
  def ic_thresholds(self) -> tuple[float, float]:
    """IC quantiles of a fixed calibration sample: per-sample groups, not per-batch ones."""
    # Concrete even when first needed while `sample` is being traced under jit.
    with jax.ensure_compile_time_eval():
      key = jax.random.key(self.chain_seed + 1_000_003)
      ic = np.asarray(self._sample_tokens(key, _CALIBRATION_SEQUENCES)[2])
    return float(np.quantile(ic, self.simple_quantile)), float(np.quantile(ic, self.complex_quantile))

  def _sample_tokens(self, key: jax.Array, batch_size: int):
    """-> tokens [B, n+1] int32, row tables [B, V, V], IC [B]."""
    k_chain, k_first, k_steps = jax.random.split(key, 3)
    v = self.vocab
    if self.variant == "in_context":
      tables = jax.random.dirichlet(k_chain, jnp.full((v,), self.alpha_complex), (batch_size, v))
      tables = jnp.clip(tables, 1e-12, None)
    else:
      chains = jnp.asarray(self.chains)
      tables = chains[jax.random.randint(k_chain, (batch_size,), 0, chains.shape[0])]
    logp = jnp.log(tables)  # [B, V, V]
    first = jax.random.randint(k_first, (batch_size,), 0, v)

    def step(x, key):
      nxt = jax.random.categorical(key, jnp.take_along_axis(logp, x[:, None, None], 1)[:, 0])
      return nxt, nxt

    _, rest = jax.lax.scan(step, first, jax.random.split(k_steps, self.length))
    tokens = jnp.concatenate([first[:, None], rest.T], axis=1).astype(jnp.int32)
    surprisal = -logp[jnp.arange(batch_size)[:, None], tokens[:, :-1], tokens[:, 1:]]
    return tokens, tables, jnp.mean(surprisal, axis=1)

  def sample(self, key, batch_size, step=0):
    del step  # no curriculum
    tokens, tables, ic = self._sample_tokens(key, batch_size)
    lo, hi = self.ic_thresholds
    groups = jnp.where(ic <= lo, 0, jnp.where(ic >= hi, 1, 2)).astype(jnp.int32)
    inputs = tokens[:, :-1]
    best_next = jnp.argmax(jnp.take_along_axis(tables, inputs[:, :, None], axis=1), axis=-1)
    return {
        "inputs": inputs,
        "targets": tokens[:, 1:],
        "weights": jnp.ones(inputs.shape, jnp.float32),
        "groups": groups,
        "best_next": best_next.astype(jnp.int32),
        "ic": ic,
    }

  def metrics(self, outputs, batch):
    out = super().metrics(outputs, batch)
    # Accuracy against the true row's argmax: a stochastic chain caps the sampled-token one.
    hit = (jnp.argmax(outputs, -1) == batch["best_next"]).astype(jnp.float32)
    out |= per_group("argmax_accuracy", hit, batch["weights"], batch, self.group_names)
    return out
