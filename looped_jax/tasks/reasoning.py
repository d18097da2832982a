"""Algorithmic reasoning tasks generated on the fly: parity, copy, addition, n-ary addition,
prefix sums and p-hop induction (docs/papers.md: "Bansal et al.", "Saunshi et al.",
"Other papers").

Each task is a frozen dataclass whose `sample(key, batch_size, step)` is a pure, jit-able
function of `key` (`step` is unused: no curriculum). A size field (`n_bits`, `length`,
`digits`, `operands`, `p`) makes a training task and a longer test task two instances of one
class, e.g. `PrefixSums(n_bits=16)` and `PrefixSums(n_bits=64)`.

Answers use a fill-in format: the question comes first and every answer position holds a
marker token whose target is the answer symbol, so the model emits all answer symbols in
one forward pass (no teacher forcing, nothing to leak). Because answers follow the question,
every task here can be solved with causal attention; bidirectional attention also works.

Batches: inputs int32 [B, n], targets int32 [B, n] (0 where not scored), weights float32
[B, n] (1 on answer positions, 0 elsewhere; all positions for prefix sums).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from looped_jax.tasks import register
from looped_jax.tasks.base import Batch, TokenTask


def _require(condition: bool, message: str) -> None:
  # ValueError: the registry turns it into a ConfigError naming the task.
  if not condition:
    raise ValueError(message)


def _answer_batch(question: jax.Array, answer: jax.Array, blank: int) -> Batch:
  """Appends one `blank` slot per answer symbol and scores exactly those slots.

  question: int [B, q]; answer: int [B, a] -> inputs/targets/weights [B, q + a].
  """
  b, q = question.shape
  a = answer.shape[1]
  inputs = jnp.concatenate([question, jnp.full((b, a), blank, question.dtype)], axis=1)
  targets = jnp.concatenate([jnp.zeros_like(question), answer.astype(question.dtype)], axis=1)
  weights = jnp.concatenate([jnp.zeros((b, q), jnp.float32), jnp.ones((b, a), jnp.float32)],
                            axis=1)
  return {"inputs": inputs.astype(jnp.int32), "targets": targets.astype(jnp.int32),
          "weights": weights}


@register("parity")
@dataclasses.dataclass(frozen=True)
class Parity(TokenTask):
  """Parity of a bit string.

  Tokens: 0, 1 = bits; 2 = "=" (the answer slot). inputs [B, n_bits + 1] =
  x_1 .. x_n "="; the target at "=" is (sum_i x_i) mod 2, classes {0, 1}; only "=" is scored.
  Attention: causal suffices (the answer slot is last).
  """

  n_bits: int = 16

  EQ = 2

  def __post_init__(self):
    _require(self.n_bits >= 1, f"n_bits={self.n_bits} must be >= 1")

  @property
  def seq_len(self) -> int:
    return self.n_bits + 1

  @property
  def vocab_size(self) -> int:
    return 3

  @property
  def output_dim(self) -> int:
    return 2

  def sample(self, key, batch_size, step=0):
    del step
    bits = jax.random.bernoulli(key, 0.5, (batch_size, self.n_bits)).astype(jnp.int32)
    parity = jnp.sum(bits, axis=1, keepdims=True) % 2
    return _answer_batch(bits, parity, self.EQ)


@register("copy")
@dataclasses.dataclass(frozen=True)
class Copy(TokenTask):
  """Copy a random string.

  Tokens: 0 .. alphabet-1 = symbols; alphabet = SEP; alphabet + 1 = BLANK (answer slot).
  inputs [B, 2 * length + 1] = x_1 .. x_L SEP BLANK x L; the k-th BLANK has target x_k,
  classes 0 .. alphabet-1; only BLANKs are scored.
  Attention: causal suffices (answers follow the string).
  """

  length: int = 8
  alphabet: int = 8

  def __post_init__(self):
    _require(self.length >= 1, f"length={self.length} must be >= 1")
    _require(self.alphabet >= 2, f"alphabet={self.alphabet} must be >= 2")

  @property
  def sep(self) -> int:
    return self.alphabet

  @property
  def blank(self) -> int:
    return self.alphabet + 1

  @property
  def seq_len(self) -> int:
    return 2 * self.length + 1

  @property
  def vocab_size(self) -> int:
    return self.alphabet + 2

  @property
  def output_dim(self) -> int:
    return self.alphabet

  def sample(self, key, batch_size, step=0):
    del step
    x = jax.random.randint(key, (batch_size, self.length), 0, self.alphabet, jnp.int32)
    question = jnp.concatenate([x, jnp.full((batch_size, 1), self.sep, jnp.int32)], axis=1)
    return _answer_batch(question, x, self.blank)


def answer_digits(operands: int, digits: int, base: int) -> int:
  """Digits needed for the largest possible sum, operands * (base**digits - 1)."""
  top, n = operands * (base**digits - 1), 0
  while top:
    top, n = top // base, n + 1
  return max(n, 1)


def _column_sum(d: jax.Array, n_out: int, base: int) -> jax.Array:
  """Schoolbook addition of least-significant-first digits.

  d: int [B, m, digits] -> sum digits [B, n_out], least significant first. Works digit by
  digit so it never overflows int32, whatever the number of digits.
  """
  cols = jnp.sum(d, axis=1)  # [B, digits]; at most m * (base - 1), no overflow
  cols = jnp.pad(cols, ((0, 0), (0, n_out - cols.shape[1])))

  def add_column(carry, col):
    s = col + carry
    return s // base, s % base

  _, out = jax.lax.scan(add_column, jnp.zeros(d.shape[0], d.dtype), cols.T)
  return out.T


def _addition_batch(key, batch_size, operands, digits, base, lsb_first) -> Batch:
  """op_1 + op_2 + ... + op_m = BLANK x answer_digits (see `NaryAddition`)."""
  d = jax.random.randint(key, (batch_size, operands, digits), 0, base, jnp.int32)
  total = _column_sum(d, answer_digits(operands, digits, base), base)
  if not lsb_first:
    d, total = d[..., ::-1], total[..., ::-1]
  plus, eq, blank = base, base + 1, base + 2
  # One separator after each operand: "+" after all but the last, "=" after the last.
  sep = jnp.full((batch_size, operands, 1), plus, jnp.int32).at[:, -1, 0].set(eq)
  question = jnp.concatenate([d, sep], axis=2).reshape(batch_size, operands * (digits + 1))
  return _answer_batch(question, total, blank)


@register("nary_addition")
@dataclasses.dataclass(frozen=True)
class NaryAddition(TokenTask):
  """Sum of `operands` numbers with exactly `digits` digits each (leading zeros allowed).

  Tokens: 0 .. base-1 = digits; base = "+"; base + 1 = "="; base + 2 = BLANK (answer slot).
  inputs [B, operands * (digits + 1) + A] =
    a_1 "+" a_2 "+" ... "+" a_m "=" BLANK x A,   A = answer_digits(operands, digits, base),
  every number (operands and sum) written with the least significant digit first when
  `lsb_first` (the default), most significant first otherwise; the sum is zero-padded to A
  digits. The k-th BLANK has target the k-th digit of the sum, classes 0 .. base-1; only
  BLANKs are scored. Attention: causal suffices (answers follow the question).
  """

  operands: int = 8
  digits: int = 2
  base: int = 10
  lsb_first: bool = True

  def __post_init__(self):
    _require(self.operands >= 2, f"operands={self.operands} must be >= 2")
    _require(self.digits >= 1, f"digits={self.digits} must be >= 1")
    _require(self.base >= 2, f"base={self.base} must be >= 2")

  @property
  def answer_len(self) -> int:
    return answer_digits(self.operands, self.digits, self.base)

  @property
  def seq_len(self) -> int:
    return self.operands * (self.digits + 1) + self.answer_len

  @property
  def vocab_size(self) -> int:
    return self.base + 3

  @property
  def output_dim(self) -> int:
    return self.base

  def sample(self, key, batch_size, step=0):
    del step
    return _addition_batch(key, batch_size, self.operands, self.digits, self.base,
                           self.lsb_first)


@register("addition")
@dataclasses.dataclass(frozen=True)
class Addition(TokenTask):
  """Sum of two numbers with exactly `digits` digits each: `NaryAddition` with 2 operands.

  inputs [B, 3 * digits + 3] = a "+" b "=" BLANK x (digits + 1); same tokens, digit order
  and scoring as `NaryAddition` (base = 2 gives binary sums). Attention: causal suffices.
  """

  digits: int = 8
  base: int = 10
  lsb_first: bool = True

  def __post_init__(self):
    _require(self.digits >= 1, f"digits={self.digits} must be >= 1")
    _require(self.base >= 2, f"base={self.base} must be >= 2")

  @property
  def answer_len(self) -> int:
    return answer_digits(2, self.digits, self.base)

  @property
  def seq_len(self) -> int:
    return 2 * (self.digits + 1) + self.answer_len

  @property
  def vocab_size(self) -> int:
    return self.base + 3

  @property
  def output_dim(self) -> int:
    return self.base

  def sample(self, key, batch_size, step=0):
    del step
    return _addition_batch(key, batch_size, 2, self.digits, self.base, self.lsb_first)


@register("prefix_sums")
@dataclasses.dataclass(frozen=True)
class PrefixSums(TokenTask):
  """Prefix parities of a bit string (Bansal et al.).

  Tokens: 0, 1 = bits. inputs [B, n_bits] = x_0 .. x_{n-1}; target at i is
  (sum_{j<=i} x_j) mod 2, classes {0, 1}; every position is scored.
  Attention: causal suffices (target i depends on x_0 .. x_i only).
  """

  n_bits: int = 32

  def __post_init__(self):
    _require(self.n_bits >= 1, f"n_bits={self.n_bits} must be >= 1")

  @property
  def seq_len(self) -> int:
    return self.n_bits

  @property
  def vocab_size(self) -> int:
    return 2

  @property
  def output_dim(self) -> int:
    return 2

  def sample(self, key, batch_size, step=0):
    del step
    bits = jax.random.bernoulli(key, 0.5, (batch_size, self.n_bits)).astype(jnp.int32)
    return {"inputs": bits, "targets": jnp.cumsum(bits, axis=1) % 2,
            "weights": jnp.ones(bits.shape, jnp.float32)}


@register("p_hop")
@dataclasses.dataclass(frozen=True)
class PHop(TokenTask):
  """p-hop induction (Saunshi et al.; Sanford et al.).

  Tokens: 0 .. alphabet-1. inputs [B, length] = x_0 .. x_{n-1}, n = length (0-indexed).

    prev(i)  = max{j < i : x_j = x_i}        (undefined when x_i has no earlier occurrence)
    hop_1(i) = prev(i) + 1                   (the position right after that occurrence)
    i_0 = n - 1,  i_k = hop_1(i_{k-1}),  target = x_{i_p}.

  A missing previous occurrence makes the chain undefined; the generator never produces
  one: every sequence is built so that all p hops exist and move strictly left
  (n - 1 = i_0 > i_1 > ... > i_p >= 1), so no hop is a no-op self-loop. Construction: the
  positions [i_k, i_{k-1}) form segment S_k, which must not contain v_k = x_{i_{k-1}}
  while x_{i_k - 1} = v_k; so S_k starts with v_{k+1}, ends with v_{k-1} (k >= 2; hence
  |S_k| >= 2, |S_1| >= 1), and its other tokens are uniform over the alphabet minus v_k.
  v_1 is uniform and v_{k+1} uniform over the alphabet minus v_k. The free prefix
  [0, i_p) (length >= 1) is uniform except that it ends with v_p. The slack
  length - 1 - 2p is split over the prefix and the p segments as a uniform random
  composition. The target x_{i_p} = v_{p+1} is uniform over the alphabet.

  Only the last position is scored (classes 0 .. alphabet-1). Extra array:
  `hops` int32 [B, p + 1] = (i_0, ..., i_p). Attention: causal suffices (the answer is read
  at the last position, which sees the whole sequence).
  """

  length: int = 32
  p: int = 4
  alphabet: int = 4

  def __post_init__(self):
    _require(self.p >= 1, f"p={self.p} must be >= 1")
    _require(self.alphabet >= 2, f"alphabet={self.alphabet} must be >= 2")
    _require(self.length >= 2 * self.p + 1,
             f"length={self.length} must be >= 2 * p + 1 = {2 * self.p + 1} for p={self.p} hops")

  @property
  def seq_len(self) -> int:
    return self.length

  @property
  def vocab_size(self) -> int:
    return self.alphabet

  @property
  def output_dim(self) -> int:
    return self.alphabet

  def sample(self, key, batch_size, step=0):
    del step
    n, p, a, b = self.length, self.p, self.alphabet, batch_size
    slack = n - 1 - 2 * p
    # One randint call with per-column bounds (each threefry draw costs compile time):
    # v_1, the p steps between consecutive v's, free tokens in segments and in the prefix,
    # and sort keys for the composition of the slack.
    widths = (1, p, n, n, slack + p)
    highs = (a, a - 1, a - 1, a, 2**30)
    maxval = jnp.concatenate([jnp.full((w,), h, jnp.int32) for w, h in zip(widths, highs)])
    draws = jax.random.randint(key, (b, sum(widths)), 0, maxval, jnp.int32)
    v0, dv, mid, pre, sort_keys = jnp.split(draws, np.cumsum(widths)[:-1], axis=1)

    # v[:, k] = v_k for k = 1 .. p+1; columns 0 and p+2 pad for safe indexing.
    # Steps in 1 .. a-1 make consecutive v's differ.
    v = (v0 + jnp.concatenate([jnp.zeros((b, 1), jnp.int32), jnp.cumsum(dv + 1, 1)], 1)) % a
    v = jnp.pad(v, ((0, 0), (1, 1)))

    # Uniform composition of the slack into p + 1 parts (stars and bars): p distinct bar
    # slots among slack + p, taken as the first p of a random permutation (argsort of
    # 30-bit keys; a tie, probability < (slack + p)^2 / 2^31, falls back to slot order).
    bars = jnp.sort(jnp.argsort(sort_keys, axis=1)[:, :p], axis=1)
    edges = jnp.concatenate([jnp.full((b, 1), -1), bars, jnp.full((b, 1), slack + p)], 1)
    extra = jnp.diff(edges, axis=1) - 1  # [B, p + 1], sums to slack
    min_len = jnp.array([1] + [2] * (p - 1), jnp.int32)  # |S_1| >= 1, |S_k| >= 2
    seg_len = min_len + extra[:, 1:]  # [B, p]; extra[:, 0] goes to the prefix
    hops = (n - 1) - jnp.concatenate(
        [jnp.zeros((b, 1), jnp.int32), jnp.cumsum(seg_len, 1)], 1)  # i_0 .. i_p
    bounds = jnp.pad(hops, ((0, 0), (0, 1)))  # bounds[:, p + 1] = 0: the prefix start

    t = jnp.arange(n)[None, :]
    # Segment of position t: k with i_k <= t < i_{k-1}; k = p + 1 for the prefix.
    seg = p + 1 - jnp.sum(hops[:, 1:, None] <= t[:, None, :], axis=1)  # [B, n]

    def take(arr, idx):
      return jnp.take_along_axis(arr, idx, axis=1)

    v_k, v_next, v_prev = take(v, seg), take(v, seg + 1), take(v, seg - 1)
    in_prefix = seg == p + 1
    is_first = (t == take(bounds, seg)) & ~in_prefix
    is_last = (t == take(bounds, seg - 1) - 1) & (seg >= 2)
    # Free tokens: uniform over the alphabet minus v_k inside segments, all of it in the prefix.
    free = jnp.where(in_prefix, pre, (v_k + 1 + mid) % a)
    x = jnp.where(is_first, v_next, jnp.where(is_last, v_prev, free))
    x = x.at[:, n - 1].set(v[:, 1]).astype(jnp.int32)

    target = v[:, p + 1]
    return {"inputs": x,
            "targets": jnp.zeros((b, n), jnp.int32).at[:, n - 1].set(target),
            "weights": jnp.zeros((b, n), jnp.float32).at[:, n - 1].set(1.0),
            "hops": hops.astype(jnp.int32)}
