"""Depth tasks against brute-force python references.

Each reference labels position t from inputs[:t + 1] only (targets, weights and every
step's target and weight), so passing also shows the tasks are answerable with causal
attention. The references rebuild the token conventions from the docstrings: groups as
permutation tuples, graphs as sets, circuits as python ints.
"""

import dataclasses
import functools
import itertools
import math

import jax
import numpy as np
import pytest

from looped_jax import tasks
from looped_jax.errors import ConfigError
from looped_jax.tasks import depth

B = 24


@functools.cache
def _sampler(task):
  """task.sample jitted once per task config (tasks are hashable frozen dataclasses)."""
  return jax.jit(task.sample, static_argnums=1)


def _key(seed):
  # rbg keys: the labels do not depend on the generator, and each threefry sampler takes
  # seconds to compile on CPU; test_default_key covers the default (threefry) keys.
  return jax.random.key(seed, impl="rbg")


@functools.cache
def _batch(task, seed=0):
  return jax.device_get(_sampler(task)(_key(seed), B))


def _check_against(task, batch, label_fn):
  """label_fn(prefix, t) -> (target, weight, [step targets], [step weights]) of position t
  from prefix = inputs[b, :t + 1]; compares every array exactly."""
  s = task.num_steps
  for b in range(B):
    x = [int(v) for v in batch["inputs"][b]]
    for t in range(len(x)):
      target, weight, step_t, step_w = label_fn(x[:t + 1], t)
      assert len(step_t) == len(step_w) == s
      got = (int(batch["targets"][b, t]), float(batch["weights"][b, t]),
             [int(v) for v in batch["step_targets"][b, :, t]],
             [float(v) for v in batch["step_weights"][b, :, t]])
      assert got == (target, weight, list(step_t), list(step_w)), (b, t, x)


def _check_contract(task, batch):
  n, s = task.seq_len, task.num_steps
  assert batch["inputs"].shape == batch["targets"].shape == batch["weights"].shape == (B, n)
  assert batch["step_targets"].shape == batch["step_weights"].shape == (B, s, n)
  for k in ("inputs", "targets", "step_targets"):
    assert batch[k].dtype == np.int32, k
  for k in ("weights", "step_weights"):
    assert batch[k].dtype == np.float32 and np.all(np.isin(batch[k], (0.0, 1.0))), k
  assert 0 <= batch["inputs"].min() and batch["inputs"].max() < task.vocab_size
  for k in ("targets", "step_targets"):
    assert 0 <= batch[k].min() and batch[k].max() < task.output_dim, k
  # The last step is the final answer wherever the answer is scored.
  scored = batch["weights"] > 0
  assert np.all(batch["step_weights"][:, -1][scored] == 1.0)
  np.testing.assert_array_equal(batch["step_targets"][:, -1][scored], batch["targets"][scored])
  assert np.all(batch["weights"].sum(1) > 0)


# --- word problem --------------------------------------------------------------------

def _compose(p, q):
  """p then q."""
  return tuple(q[k] for k in p)


def _even(p):
  """Parity from the cycle count (the module counts inversions)."""
  seen, cycles = set(), 0
  for i in range(len(p)):
    if i not in seen:
      cycles += 1
      while i not in seen:
        seen.add(i)
        i = p[i]
  return (len(p) - cycles) % 2 == 0


REF_ELEMENTS = {
    "s5": list(itertools.permutations(range(5))),
    "a5": [p for p in itertools.permutations(range(5)) if _even(p)],
    "s3": list(itertools.permutations(range(3))),
    "z2": [(0, 1), (1, 0)],
}


def test_group_tables():
  sizes = {"s5": 120, "a5": 60, "s3": 6, "z2": 2}
  assert set(depth.GROUPS) == set(sizes)
  for name, size in sizes.items():
    table, elems = depth.TABLES[name], REF_ELEMENTS[name]
    assert table.shape == (size, size) and len(depth.ELEMENTS[name]) == size
    assert list(depth.ELEMENTS[name]) == elems
    g = np.arange(size)
    # Closed, associative, identity 0, inverses (every row and column a permutation).
    assert table.min() == 0 and table.max() == size - 1
    np.testing.assert_array_equal(table[table[:, :, None], g], table[g[:, None, None], table[:, g]])
    np.testing.assert_array_equal(table[0], g)
    np.testing.assert_array_equal(table[:, 0], g)
    assert all(sorted(row) == list(g) for row in table)
    assert all(sorted(col) == list(g) for col in table.T)
    assert all((table[a] == 0).sum() == 1 and (table[:, a] == 0).sum() == 1 for a in g)
    for a, b in itertools.product(range(min(size, 12)), range(size)):
      assert elems[table[a, b]] == _compose(elems[a], elems[b])
  np.testing.assert_array_equal(depth.TABLES["z2"], [[0, 1], [1, 0]])  # addition mod 2
  assert not np.array_equal(depth.TABLES["a5"], depth.TABLES["a5"].T)  # non-abelian


def _product(elems, tokens):
  out = elems[0]
  for tok in tokens:
    out = _compose(out, elems[tok])
  return elems.index(out)


WORD_TASKS = [
    depth.WordProblem(length=7, group="s5"),
    depth.WordProblem(length=9, group="a5", answer="final", pad_factor=1),
    depth.WordProblem(length=5, group="s3", pad_factor=1, pad_degree=2),
    depth.WordProblem(length=8, group="z2", answer="final"),
    depth.WordProblem(length=1, group="s3", answer="final", pad_factor=2),
    depth.WordProblem(length=6, group="s3", scan="linear"),
    depth.WordProblem(length=5, group="a5", answer="final", scan="linear", pad_factor=1),
]


@pytest.mark.parametrize("task", WORD_TASKS, ids=str)
def test_word_problem_labels(task):
  batch = _batch(task)
  _check_contract(task, batch)
  elems, n, s = REF_ELEMENTS[task.group], task.length, task.num_steps
  size = len(elems)
  assert s == (n if task.scan == "linear" else max(1, math.ceil(math.log2(n))))
  window = (lambda k: k + 1) if task.scan == "linear" else (lambda k: 2**(k + 1))
  assert task.pad == size and task.vocab_size == size + 1 and task.output_dim == size
  assert task.seq_len == n + task.pad_factor * n**task.pad_degree

  def label(prefix, t):
    problem = [tok for tok in prefix if tok != size]
    assert all(tok < size for tok in problem)
    assert (t < n) == (prefix[-1] != size) and len(problem) == min(t + 1, n)
    answer_slot = task.answer == "final" and t == task.seq_len - 1
    if t < n:  # window products ending at x_t
      step_t = [_product(elems, problem[max(0, t + 1 - window(k)):]) for k in range(s)]
      step_w = [1.0] * s
    elif answer_slot:  # the answer read at the last pad: windows ending at x_{n-1}
      step_t = [_product(elems, problem[max(0, n - window(k)):]) for k in range(s)]
      step_w = [1.0] * s
    else:
      step_t, step_w = [0] * s, [0.0] * s
    scored = t < n if task.answer == "prefix" else answer_slot
    if not scored:
      return 0, 0.0, step_t, step_w
    return _product(elems, problem), 1.0, step_t, step_w
  _check_against(task, batch, label)
  if task.group == "z2":  # parity
    np.testing.assert_array_equal(batch["targets"][:, -1], batch["inputs"][:, :n].sum(1) % 2)
  if task.group == "s5":
    assert len(set(batch["inputs"].ravel())) > 60


def test_word_problem_num_steps():
  for n in (1, 2, 3, 4, 5, 8, 9, 16, 17, 100):
    s = depth.WordProblem(length=n).num_steps
    assert 2**s >= n and (s == 1 or 2**(s - 1) < n)


# --- reachability --------------------------------------------------------------------

def _ref_pairs(v):
  return [(a, b) for a in range(v) for b in range(a + 1, v)]


REACH_TASKS = [
    depth.Reachability(nodes=6, edges=5),
    depth.Reachability(nodes=5, edges=4, pad_factor=1),
    depth.Reachability(nodes=2, edges=1),
]


@pytest.mark.parametrize("task", REACH_TASKS, ids=str)
def test_reachability_labels(task):
  batch = _batch(task)
  _check_contract(task, batch)
  v, e, s = task.nodes, task.edges, task.num_steps
  pairs = _ref_pairs(v)
  assert task.query_base == len(pairs) and task.pad == len(pairs) + v and s == v - 1
  assert task.problem_size == e + v and task.output_dim == 2
  assert task.seq_len == e + v + task.pad_factor * (e + v)**task.pad_degree

  def label(prefix, t):
    if not e <= t < e + v:
      if t >= e + v:
        assert prefix[-1] == task.pad
      return 0, 0.0, [0] * s, [0.0] * s
    j = prefix[-1] - task.query_base
    assert j == t - e
    graph = {a: set() for a in range(v)}
    for tok in prefix[:e]:
      a, b = pairs[tok]
      graph[a].add(b)
      graph[b].add(a)
    hops, frontier = {0: 0}, [0]  # BFS layers from node 0
    while frontier:
      nxt = []
      for a in frontier:
        for b in graph[a] - set(hops):
          hops[b] = hops[a] + 1
          nxt.append(b)
      frontier = nxt
    step_t = [int(j in hops and hops[j] <= k + 1) for k in range(s)]
    return int(j in hops), 1.0, step_t, [1.0] * s
  _check_against(task, batch, label)
  if v > 2:  # both answers occur
    assert set(batch["targets"][batch["weights"] > 0]) == {0, 1}


# --- circuit evaluation --------------------------------------------------------------

def _parse_circuit(task, tokens):
  """Nodes of the complete 4-token groups in `tokens`: [(op, a, b)] with op "leaf"
  (a = b = value), "+" or "*" (a, b node indices); checks the layout."""
  m, base = task.modulus, task.node_base
  ops = {m: "leaf", m + 1: "+", m + 2: "*"}
  nodes = []
  for k in range(len(tokens) // 4):
    op, a, b, slot = tokens[4 * k:4 * k + 4]
    assert slot == task.slot
    level = k // task.width
    if level == 0:
      assert ops[op] == "leaf" and a == b and 0 <= a < m
      nodes.append(("leaf", a, a))
    else:
      a, b = a - base, b - base
      # Arguments come from the previous level: every node's depth is its level.
      assert ops[op] in "+*" and all(level - 1 == c // task.width for c in (a, b))
      nodes.append((ops[op], a, b))
  return nodes


def _evaluate(task, nodes):
  values, depths = [], []
  for op, a, b in nodes:
    if op == "leaf":
      values.append(a)
      depths.append(0)
    else:
      x, y = values[a], values[b]
      values.append((x + y if op == "+" else x * y) % task.modulus)
      depths.append(1 + max(depths[a], depths[b]))
  return values, depths


DAG_LOOP = [
    depth.DagEval(width=3, depth=3, modulus=5),
    depth.DagEval(width=2, depth=4, modulus=7, pad_factor=1),
    depth.DagEval(width=1, depth=1, modulus=2),
]


@pytest.mark.parametrize("task", DAG_LOOP, ids=str)
def test_dag_loop_labels(task):
  batch = _batch(task)
  _check_contract(task, batch)
  n_nodes, s = task.width * (task.depth + 1), task.num_steps
  assert task.problem_size == 4 * n_nodes and s == task.depth
  assert task.seq_len == 4 * n_nodes + task.pad_factor * (4 * n_nodes)**task.pad_degree
  assert task.output_dim == task.modulus and task.num_values == task.width * task.depth

  def label(prefix, t):
    if t >= 4 * n_nodes:
      assert prefix[-1] == task.pad
      return 0, 0.0, [0] * s, [0.0] * s
    if t % 4 != 3:
      return 0, 0.0, [0] * s, [0.0] * s
    values, depths = _evaluate(task, _parse_circuit(task, prefix))
    k = t // 4
    assert depths[k] == k // task.width
    scored = 1.0 if depths[k] >= 1 else 0.0
    step_w = [1.0 if 1 <= depths[k] <= i + 1 else 0.0 for i in range(s)]
    return values[k], scored, [values[k]] * s, step_w
  _check_against(task, batch, label)
  assert batch["weights"].sum(1).tolist() == [task.num_values] * B
  # Both ops and all values occur.
  ops = batch["inputs"][:, 4 * task.width:4 * n_nodes:4]
  if ops.size > 10:
    assert set(ops.ravel()) == {task.add_op, task.mul_op}
    assert set(batch["targets"][batch["weights"] > 0]) == set(range(task.modulus))


DAG_COT = [
    depth.DagEval(width=3, depth=3, modulus=5, fmt="cot"),
    depth.DagEval(width=2, depth=2, modulus=3, fmt="cot", pad_factor=1),
]


@pytest.mark.parametrize("task", DAG_COT, ids=str)
def test_dag_cot_labels(task):
  batch = _batch(task)
  _check_contract(task, batch)
  n_nodes, k = task.width * (task.depth + 1), task.num_values
  prompt_len = task.prompt_len
  assert prompt_len == 4 * n_nodes + task.pad_factor * (4 * n_nodes)**task.pad_degree + 1
  assert task.seq_len == prompt_len + k - 1 and task.num_steps == 1

  def oracle(seq):
    """The next token after `seq` (a prompt plus some emitted values): the next
    non-leaf value, computed from the description alone."""
    values, _ = _evaluate(task, _parse_circuit(task, seq[:4 * n_nodes]))
    return values[task.width + len(seq) - prompt_len]

  def label(prefix, t):
    if t < prompt_len - 1:
      return 0, 0.0, [0], [0.0]
    assert prefix[prompt_len - 1] == task.sep
    assert all(tok == task.pad for tok in prefix[4 * n_nodes:prompt_len - 1])
    target = oracle(prefix)
    return target, 1.0, [target], [1.0]
  _check_against(task, batch, label)

  for b in range(B):
    x = [int(v) for v in batch["inputs"][b]]
    # Greedy decoding with a perfect model reproduces the teacher-forced inputs and targets.
    seq = x[:prompt_len]
    for _ in range(k):
      seq.append(oracle(seq))
    assert seq[:-1] == x
    scored = np.flatnonzero(batch["weights"][b]).tolist()
    assert scored == list(range(prompt_len - 1, prompt_len - 1 + k))  # value-predicting
    assert [int(batch["targets"][b, t]) for t in scored] == seq[prompt_len:]
    # The description keeps SLOT placeholders; values appear only after SEP.
    assert x[3:4 * n_nodes:4] == [task.slot] * n_nodes


def test_cot_and_loop_share_circuits():
  loop, cot = DAG_LOOP[0], DAG_COT[0]
  assert dataclasses.replace(loop, fmt="cot") == cot
  a, c = _batch(loop), _batch(cot)
  d = loop.problem_size
  np.testing.assert_array_equal(a["inputs"], c["inputs"][:, :d])
  values = a["targets"][:, 4 * loop.width + 3::4]  # non-leaf slots, node order
  np.testing.assert_array_equal(values, c["targets"][:, d:])
  assert loop.vocab_size == cot.vocab_size and loop.output_dim == cot.output_dim


# --- shared --------------------------------------------------------------------------

ALL = [WORD_TASKS[1], REACH_TASKS[1], DAG_LOOP[1], DAG_COT[1]]


@pytest.mark.parametrize("task", ALL, ids=str)
def test_deterministic_in_key(task):
  sample = _sampler(task)
  a, c = sample(_key(0), B), sample(_key(1), B)
  for k in a:
    np.testing.assert_array_equal(a[k], _batch(task)[k])
  assert not np.array_equal(a["inputs"], c["inputs"])


def test_default_key():
  # The default (threefry) keys give a valid, key-determined batch too.
  task = WORD_TASKS[1]
  sample = _sampler(task)
  a, c = sample(jax.random.key(0), B), sample(jax.random.key(0), B)
  for k in a:
    np.testing.assert_array_equal(a[k], c[k])
  _check_contract(task, jax.device_get(a))
  assert not np.array_equal(a["inputs"], _batch(task)["inputs"])


def test_metrics_on_generated_batch():
  # Perfect logits score 1 under the TokenTask metrics; constant logits do not.
  task = WORD_TASKS[1]
  batch = _batch(task)
  perfect = 10.0 * jax.nn.one_hot(batch["targets"], task.output_dim)
  metrics = jax.jit(task.metrics)
  m = metrics(perfect, batch)
  assert float(m["sequence_accuracy"][0] / m["sequence_accuracy"][1]) == 1.0
  m = metrics(0.0 * perfect, batch)
  assert float(m["sequence_accuracy"][0] / m["sequence_accuracy"][1]) < 1.0


@pytest.mark.parametrize("name,cls", [("word_problem", depth.WordProblem),
                                      ("reachability", depth.Reachability),
                                      ("dag_eval", depth.DagEval)])
def test_default_config(name, cls):
  config = tasks.default_config(name)
  assert config["pad_factor"] == 0 and config["pad_degree"] == 1
  task = tasks.get(config)
  assert task == cls() and task.name == name
  assert tasks.get(tasks.default_config(name, pad_factor=2)).num_pads == 2 * task.problem_size


@pytest.mark.parametrize("config,words", [
    ({"name": "word_problem", "group": "s4"}, ("s5", "a5", "s3", "z2")),
    ({"name": "word_problem", "answer": "all"}, ("prefix", "final")),
    ({"name": "word_problem", "scan": "tree"}, ("doubling", "linear")),
    ({"name": "dag_eval", "fmt": "scratchpad"}, ("loop", "cot")),
    ({"name": "word_problem", "length": 0}, ("length",)),
    ({"name": "word_problem", "pad_factor": -1}, ("pad_factor",)),
    ({"name": "reachability", "nodes": 1}, ("nodes",)),
    ({"name": "reachability", "edges": 0}, ("edges",)),
    ({"name": "reachability", "pad_degree": -1}, ("pad_degree",)),
    ({"name": "dag_eval", "width": 0}, ("width",)),
    ({"name": "dag_eval", "depth": 0}, ("depth",)),
    ({"name": "dag_eval", "modulus": 1}, ("modulus",)),
    ({"name": "dag_eval", "widht": 2}, ("width",)),
])
def test_bad_configs(config, words):
  with pytest.raises(ConfigError) as info:
    tasks.get(config)
  assert all(w in str(info.value) for w in words), str(info.value)
