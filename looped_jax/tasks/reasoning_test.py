"""Reasoning task generators against brute-force python references.

Each reference reads only inputs[:t + 1] to label position t, so passing also shows the
task is answerable with causal attention.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from looped_jax import tasks
from looped_jax.errors import ConfigError
from looped_jax.tasks import reasoning

B = 96


@functools.cache
def _sampler(task):
  """task.sample jitted once per task config (tasks are hashable frozen dataclasses)."""
  return jax.jit(task.sample, static_argnums=1)


@functools.cache
def _batch(task, seed=0):
  return jax.device_get(_sampler(task)(jax.random.key(seed), B))


def _scored(batch, b):
  return [int(t) for t in np.flatnonzero(batch["weights"][b])]


def _check_against(batch, label_fn):
  """label_fn(prefix, t) -> the label of position t from prefix = inputs[b, :t + 1]."""
  for b in range(B):
    x = [int(v) for v in batch["inputs"][b]]
    scored = _scored(batch, b)
    assert np.all(np.isin(batch["weights"][b], (0.0, 1.0)))
    for t in range(len(x)):
      if t in scored:
        assert batch["targets"][b, t] == label_fn(x[:t + 1], t), (b, t, x)
      else:
        assert batch["targets"][b, t] == 0


def test_parity_labels():
  task = reasoning.Parity(n_bits=7)
  batch = _batch(task)
  def label(prefix, t):
    assert t == 7 and prefix[-1] == task.EQ and set(prefix[:-1]) <= {0, 1}
    total = 0
    for bit in prefix[:-1]:
      total ^= bit
    return total
  _check_against(batch, label)
  assert all(_scored(batch, b) == [7] for b in range(B))


def test_copy_labels():
  task = reasoning.Copy(length=5, alphabet=3)
  batch = _batch(task)
  def label(prefix, t):
    assert prefix[5] == task.sep and all(v == task.blank for v in prefix[6:])
    return prefix[t - 6]
  _check_against(batch, label)
  assert all(_scored(batch, b) == list(range(6, 11)) for b in range(B))


def _parse_sum(prefix, base, lsb_first):
  """Adds the operands written before "=" with python ints; returns the sum's digits in
  display order, zero-padded by the caller's slicing."""
  plus, eq = base, base + 1
  end = prefix.index(eq)
  numbers, current = [], []
  for tok in prefix[:end] + [plus]:
    if tok == plus:
      digits = current[::-1] if lsb_first else current
      value = 0
      for d in digits:
        assert 0 <= d < base
        value = value * base + d
      numbers.append(value)
      current = []
    else:
      current.append(tok)
  return sum(numbers), end, len(numbers)


def _digit(total, k, width, base, lsb_first):
  """k-th displayed digit of `total` written with `width` digits."""
  power = k if lsb_first else width - 1 - k
  return (total // base**power) % base


@pytest.mark.parametrize("task", [
    reasoning.Addition(digits=3),
    reasoning.Addition(digits=4, base=2, lsb_first=False),
    reasoning.NaryAddition(operands=4, digits=2),
])
@pytest.mark.slow
def test_addition_labels(task):
  batch = _batch(task)
  base, lsb = task.base, task.lsb_first
  width = task.answer_len
  operands = getattr(task, "operands", 2)
  def label(prefix, t):
    total, end, count = _parse_sum(prefix, base, lsb)
    assert count == operands and end == operands * (task.digits + 1) - 1
    assert all(v == base + 2 for v in prefix[end + 1:])
    assert total < base**width
    return _digit(total, t - end - 1, width, base, lsb)
  _check_against(batch, label)
  assert batch["inputs"].shape == (B, task.seq_len)
  assert all(len(_scored(batch, b)) == width for b in range(B))


def test_answer_digits():
  for m, d, base in [(2, 1, 10), (2, 3, 10), (8, 2, 10), (32, 2, 10), (3, 4, 2), (11, 1, 10)]:
    assert reasoning.answer_digits(m, d, base) == len(np.base_repr(m * (base**d - 1), base))


def test_prefix_sums_labels():
  batch = _batch(reasoning.PrefixSums(n_bits=9))
  def label(prefix, t):
    total = 0
    for bit in prefix:
      total = (total + bit) % 2
    return total
  _check_against(batch, label)
  assert batch["weights"].min() == 1.0


def _hop_chain(x, p):
  """i_0 = n - 1, i_k = (last j < i_{k-1} with x_j = x_{i_{k-1}}) + 1; None if missing."""
  chain = [len(x) - 1]
  for _ in range(p):
    i = chain[-1]
    prev = [j for j in range(i) if x[j] == x[i]]
    if not prev:
      return None
    chain.append(prev[-1] + 1)
  return chain


@pytest.mark.parametrize("length,p,alphabet", [(16, 4, 3), (7, 3, 2)])
def test_p_hop_labels(length, p, alphabet):
  task = reasoning.PHop(length=length, p=p, alphabet=alphabet)
  batch = _batch(task)
  def label(prefix, t):
    assert t == length - 1
    chain = _hop_chain(prefix, p)
    assert chain is not None, prefix
    assert all(a > b for a, b in zip(chain, chain[1:])), chain  # every hop moves left
    return prefix[chain[-1]]
  _check_against(batch, label)
  for b in range(B):
    assert _hop_chain(list(batch["inputs"][b]), p) == list(batch["hops"][b])
  # Target and tokens cover the alphabet (no degenerate construction).
  assert set(batch["targets"][:, -1]) == set(range(alphabet))
  assert set(batch["inputs"].ravel()) == set(range(alphabet))


ALL = [reasoning.Parity(7), reasoning.Copy(5, 3), reasoning.Addition(3),
       reasoning.NaryAddition(4, 2), reasoning.PrefixSums(9), reasoning.PHop(16, 4, 3)]


@pytest.mark.parametrize("task", ALL, ids=lambda t: t.name)
def test_contract(task):
  batch = _batch(task)
  n = task.seq_len
  assert batch["inputs"].shape == batch["targets"].shape == batch["weights"].shape == (B, n)
  assert batch["inputs"].dtype == np.int32 and batch["targets"].dtype == np.int32
  assert batch["weights"].dtype == np.float32
  assert 0 <= batch["inputs"].min() and batch["inputs"].max() < task.vocab_size
  assert 0 <= batch["targets"].min() and batch["targets"].max() < task.output_dim


@pytest.mark.slow
def test_metrics_on_generated_batch():
  # Perfect logits score 1; constant logits do not (targets/weights agree with TokenTask).
  task = reasoning.Addition(3)
  batch = jax.tree.map(jnp.asarray, _batch(task))
  perfect = 10.0 * jax.nn.one_hot(batch["targets"], task.output_dim)
  m = task.metrics(perfect, batch)
  assert float(m["accuracy"][0] / m["accuracy"][1]) == 1.0
  assert float(m["sequence_accuracy"][0] / m["sequence_accuracy"][1]) == 1.0
  assert float(m["sequence_accuracy"][1]) == B
  m = task.metrics(jnp.zeros_like(perfect), batch)
  assert float(m["sequence_accuracy"][0] / m["sequence_accuracy"][1]) < 1.0


@pytest.mark.parametrize("task", ALL, ids=lambda t: t.name)
def test_deterministic_in_key(task):
  sample = _sampler(task)
  a, b = sample(jax.random.key(0), B), sample(jax.random.key(0), B)
  c = sample(jax.random.key(1), B)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(a[k], _batch(task)[k])
  assert not np.array_equal(a["inputs"], c["inputs"])


def test_longer_instance_of_same_class():
  short, long = tasks.get({"name": "p_hop", "p": 2}), tasks.get({"name": "p_hop", "p": 8})
  assert type(short) is type(long) and long.p == 8 and short.seq_len == long.seq_len
  assert tasks.get({"name": "prefix_sums", "n_bits": 64}).seq_len == 64


@pytest.mark.parametrize("config", [
    {"name": "p_hop", "length": 6, "p": 3},
    {"name": "p_hop", "alphabet": 1},
    {"name": "addition", "digits": 0},
    {"name": "nary_addition", "operands": 1},
    {"name": "copy", "lenght": 3},
])
def test_bad_configs(config):
  with pytest.raises(ConfigError):
    tasks.get(config)
