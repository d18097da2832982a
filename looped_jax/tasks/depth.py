"""Where depth goes: problems whose natural parallel algorithms need depth growing with the
input length, with padding tokens and loop-aligned supervision.

The three tasks are log-depth problems: the word problem of a group (a prefix scan of
ceil(log2 n) combining steps; S5's word problem is NC^1-complete by Barrington's theorem),
undirected reachability (log2 V squarings of the adjacency matrix) and arithmetic circuit
evaluation (one step per circuit level). They are meant for looped models whose loop count
grows with log n, e.g. ceil(c * log2(problem_size)), run with padding tokens: Merrill &
Sabharwal, "Exact Expressive Power of Transformers with Padding" (arXiv 2505.18948), show
that padded transformers looped O(log^k n) times express exactly TC^k. `dag_eval` also has a
chain-of-thought format for the comparison of "To CoT or to Loop? A Formal Comparison
Between Chain-of-Thought and Looped Transformers" (arXiv 2505.19245): a loop needs one
iteration per circuit level, a CoT one emitted token per node.

Every batch holds, with n = seq_len and S = num_steps,

  inputs        int32   [B, n]     token ids: the problem, then p PAD tokens
  targets       int32   [B, n]     the final answer (0 where not scored unless stated)
  weights       float32 [B, n]     1 on the scored answer positions, 0 elsewhere
  step_targets  int32   [B, S, n]  loop-aligned targets: step s (0-based) is what the
  step_weights  float32 [B, S, n]  iterative algorithm knows after s + 1 steps

for per-iteration supervision as in RELAY (Yu et al., "Enhancing Auto-regressive
Chain-of-Thought through Loop-Aligned Reasoning", arXiv 2502.08482): supervise loop
iteration s with step s. The last step equals the final answer on every position that
`weights` scores.

Padding (fields shared by all three tasks): p = pad_factor * problem_size**pad_degree PAD
tokens follow the problem (pad_degree = 0 gives a constant pad_factor pads); seq_len
includes them. problem_size is the unpadded input length that loop counts should scale
with. Pads are never scored except where an answer is read at the last pad
(`word_problem` with answer="final"). With causal attention a position sees only the pads
before it, so pads add width only to positions after them: the answer at the last pad, and
the CoT values of `dag_eval`; the other answer positions precede the pads and gain from
them only with bidirectional attention.

Every label of position t is a function of the tokens at positions <= t, so each task is
answerable with causal attention.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from looped_jax.tasks import register
from looped_jax.tasks.base import TokenTask


def _require(condition: bool, message: str) -> None:
  # ValueError: the registry turns it into a ConfigError naming the task.
  if not condition:
    raise ValueError(message)


def _is_even(perm: tuple[int, ...]) -> bool:
  inversions = sum(a > b for a, b in itertools.combinations(perm, 2))
  return inversions % 2 == 0


# Groups as permutations of range(k) in itertools.permutations order (lexicographic), so
# element 0 is always the identity; "a5" keeps the even permutations of S5 in that order.
# "z2" is S2: element 1 is the swap and the product is addition mod 2 (parity).
ELEMENTS: dict[str, tuple[tuple[int, ...], ...]] = {
    "s5": tuple(itertools.permutations(range(5))),
    "a5": tuple(p for p in itertools.permutations(range(5)) if _is_even(p)),
    "s3": tuple(itertools.permutations(range(3))),
    "z2": tuple(itertools.permutations(range(2))),
}
GROUPS = tuple(ELEMENTS)


def _table(elements: tuple[tuple[int, ...], ...]) -> np.ndarray:
  """[|G|, |G|] int32: table[a, b] = a * b = "apply a, then b", (a * b)[k] = b[a[k]]."""
  index = {p: i for i, p in enumerate(elements)}
  table = np.array([[index[tuple(q[k] for k in p)] for q in elements] for p in elements],
                   np.int32)
  table.flags.writeable = False
  return table


TABLES: dict[str, np.ndarray] = {name: _table(e) for name, e in ELEMENTS.items()}


def _ceil_log2(n: int) -> int:
  return (n - 1).bit_length()


def _pad_positions(x: jax.Array, pads: int, value: int = 0) -> jax.Array:
  """Appends `pads` entries equal to `value` along the last axis."""
  widths = [(0, 0)] * (x.ndim - 1) + [(0, pads)]
  return jnp.pad(x, widths, constant_values=value)


class _DepthTask(TokenTask):
  """Shared by the tasks here: the PAD count from `pad_factor`, `pad_degree` (dataclass
  fields of each task) and `problem_size`."""

  @property
  def problem_size(self) -> int:
    raise NotImplementedError

  @property
  def num_steps(self) -> int:
    raise NotImplementedError

  @property
  def num_pads(self) -> int:
    return self.pad_factor * self.problem_size**self.pad_degree

  def _check_padding(self) -> None:
    _require(self.pad_factor >= 0, f"pad_factor={self.pad_factor} must be >= 0")
    _require(self.pad_degree >= 0, f"pad_degree={self.pad_degree} must be >= 0")


def scan_steps(x: jax.Array, table: jax.Array, num_steps: int) -> jax.Array:
  """Hillis-Steele prefix scan of group elements.

  x: int [B, n] element ids; table [G, G] with identity 0 -> [B, num_steps, n] where step s
  at position i is x_{i-k+1} * ... * x_i with k = min(2^(s+1), i + 1). With
  num_steps >= ceil(log2 n) the last step is the prefix product x_0 * ... * x_i.
  """
  n = x.shape[1]
  cur, out = x, []
  for s in range(num_steps):
    shift = min(2**s, n)
    # Left neighbour at distance 2^s; the identity (0) where it would fall before x_0.
    left = jnp.pad(cur[:, :n - shift], ((0, 0), (shift, 0)))
    cur = table[left, cur]
    out.append(cur)
  return jnp.stack(out, axis=1)


def linear_scan_steps(x: jax.Array, table: jax.Array, num_steps: int) -> jax.Array:
  """Sequential prefix scan: one element more per step, the same operation every step.

  x: int [B, n]; table [G, G] with identity 0 -> [B, num_steps, n] where step s at position
  i is x_{i-k+1} * ... * x_i with k = min(s + 1, i + 1): step s = step s-1 of the left
  neighbour times x_i. With num_steps >= n the last step is the prefix product.
  """
  cur, out = x, [x]
  for _ in range(num_steps - 1):
    cur = table[jnp.pad(cur[:, :-1], ((0, 0), (1, 0))), x]
    out.append(cur)
  return jnp.stack(out, axis=1)


@register("word_problem")
@dataclasses.dataclass(frozen=True)
class WordProblem(_DepthTask):
  """The word problem of a finite group: prefix products (or the full product) of a word.

  Tokens: 0 .. |G|-1 = group elements (`ELEMENTS[group]`, permutations in itertools order,
  0 = identity); PAD = |G|. Groups: "s5" (120, non-solvable: NC^1-complete), "a5" (60, the
  even permutations of 5, non-solvable), "s3" (6, solvable), "z2" (2, parity). Products are
  left to right, product_i = x_0 * x_1 * ... * x_i with a * b = "apply a, then b"
  (`TABLES[group][a, b]`).

  inputs [B, length + p] = x_0 .. x_{n-1} PAD x p, x_i uniform over the group.
  answer="prefix": the target at i < n is product_i, all n problem positions scored (pads
    are not).
  answer="final": one scored position, the last one (the last PAD, or x_{n-1} when
    p = 0), with target product_{n-1}.
  Classes: 0 .. |G|-1. problem_size = length.

  Steps, scan="doubling" (the log-depth Hillis-Steele scan, `scan_steps`): S = max(1,
  ceil(log2 length)); step s at position i < n is the product of the last
  w_s = min(2^(s+1), i + 1) elements ending at x_i, weight 1 on the n problem positions.
  scan="linear" (`linear_scan_steps`, the sequential chain of thought that RELAY aligns with
  loops): S = length, w_s = min(s + 1, i + 1): every step applies the same operation (the
  left neighbour's previous step times x_i), so more loops continue it on longer words.
  With answer="final" the scored last position also gets, at every step, the product of the
  last w_s elements of the whole word (weight 1). Pads: 0.
  """

  length: int = 16
  group: str = "s5"
  answer: str = "prefix"
  scan: str = "doubling"
  pad_factor: int = 0
  pad_degree: int = 1

  ANSWERS = ("prefix", "final")
  SCANS = ("doubling", "linear")

  def __post_init__(self):
    _require(self.group in GROUPS,
             f"group={self.group!r} must be one of {', '.join(GROUPS)}")
    _require(self.answer in self.ANSWERS,
             f"answer={self.answer!r} must be one of {', '.join(self.ANSWERS)}")
    _require(self.scan in self.SCANS,
             f"scan={self.scan!r} must be one of {', '.join(self.SCANS)}")
    _require(self.length >= 1, f"length={self.length} must be >= 1")
    self._check_padding()

  @property
  def order(self) -> int:
    return len(ELEMENTS[self.group])

  @property
  def pad(self) -> int:
    return self.order

  @property
  def problem_size(self) -> int:
    return self.length

  @property
  def num_steps(self) -> int:
    return self.length if self.scan == "linear" else max(1, _ceil_log2(self.length))

  @property
  def seq_len(self) -> int:
    return self.length + self.num_pads

  @property
  def vocab_size(self) -> int:
    return self.order + 1

  @property
  def output_dim(self) -> int:
    return self.order

  def sample(self, key, batch_size, step=0):
    del step
    b, n, p, s = batch_size, self.length, self.num_pads, self.num_steps
    x = jax.random.randint(key, (b, n), 0, self.order, jnp.int32)
    scan = linear_scan_steps if self.scan == "linear" else scan_steps
    steps = scan(x, jnp.asarray(TABLES[self.group]), s)  # [B, S, n]
    inputs = _pad_positions(x, p, self.pad)
    step_targets = _pad_positions(steps, p)
    step_weights = _pad_positions(jnp.ones((b, s, n), jnp.float32), p)
    if self.answer == "prefix":
      targets = _pad_positions(steps[:, -1], p)
      weights = _pad_positions(jnp.ones((b, n), jnp.float32), p)
    else:
      last = n + p - 1
      targets = jnp.zeros((b, n + p), jnp.int32).at[:, last].set(steps[:, -1, n - 1])
      weights = jnp.zeros((b, n + p), jnp.float32).at[:, last].set(1.0)
      step_targets = step_targets.at[:, :, last].set(steps[:, :, n - 1])
      step_weights = step_weights.at[:, :, last].set(1.0)
    return {"inputs": inputs, "targets": targets, "weights": weights,
            "step_targets": step_targets, "step_weights": step_weights}


def pairs(nodes: int) -> tuple[np.ndarray, np.ndarray]:
  """The unordered node pairs (u, v), u < v, in lexicographic order: (u [P], v [P]) int32,
  P = nodes * (nodes - 1) / 2; pair index k encodes the edge (u[k], v[k])."""
  u, v = np.triu_indices(nodes, k=1)  # row-major: lexicographic in (u, v)
  return u.astype(np.int32), v.astype(np.int32)


@register("reachability")
@dataclasses.dataclass(frozen=True)
class Reachability(_DepthTask):
  """Which nodes of a random undirected graph are reachable from node 0.

  The graph has V = `nodes` nodes and `edges` edge slots, each an unordered pair drawn
  uniformly from the P = V (V - 1) / 2 pairs, independently (with replacement: a repeated
  slot repeats an edge, so a graph may have fewer than `edges` distinct edges).

  Tokens: 0 .. P-1 = edges (pair index, `pairs`: lexicographic in (u, v), u < v);
  P + j = "node j" (query), j < V; PAD = P + V.
  inputs [B, edges + V + p] = e_1 .. e_E  "node 0" .. "node V-1"  PAD x p.
  The target at node j's query is 1 if j is reachable from node 0 (node 0 always is),
  else 0; the V queries are scored. Classes {0, 1}. problem_size = edges + V.
  Queries follow all edges, so causal attention suffices.

  Steps (BFS layers): S = V - 1; step s at node j's query is 1 if j is within s + 1 hops of
  node 0 (weight 1 on the queries). Step 2^k - 1 is what k squarings of the adjacency
  matrix know, for loops that double the hop count.
  """

  nodes: int = 8
  edges: int = 8
  pad_factor: int = 0
  pad_degree: int = 1

  def __post_init__(self):
    _require(self.nodes >= 2, f"nodes={self.nodes} must be >= 2")
    _require(self.edges >= 1, f"edges={self.edges} must be >= 1")
    self._check_padding()

  @property
  def num_pairs(self) -> int:
    return self.nodes * (self.nodes - 1) // 2

  @property
  def query_base(self) -> int:
    return self.num_pairs

  @property
  def pad(self) -> int:
    return self.num_pairs + self.nodes

  @property
  def problem_size(self) -> int:
    return self.edges + self.nodes

  @property
  def num_steps(self) -> int:
    return self.nodes - 1

  @property
  def seq_len(self) -> int:
    return self.problem_size + self.num_pads

  @property
  def vocab_size(self) -> int:
    return self.num_pairs + self.nodes + 1

  @property
  def output_dim(self) -> int:
    return 2

  def sample(self, key, batch_size, step=0):
    del step
    b, v, e, p, s = batch_size, self.nodes, self.edges, self.num_pads, self.num_steps
    edge = jax.random.randint(key, (b, e), 0, self.num_pairs, jnp.int32)
    pu, pv = (jnp.asarray(a) for a in pairs(v))
    hot_u = jax.nn.one_hot(pu[edge], v, dtype=jnp.int32)  # [B, E, V]
    hot_v = jax.nn.one_hot(pv[edge], v, dtype=jnp.int32)
    adj = jnp.einsum("beu,bev->buv", hot_u, hot_v)
    adj = (adj + jnp.swapaxes(adj, 1, 2)) > 0  # [B, V, V] symmetric

    def hop(reach, _):
      reach = reach | jnp.any(reach[:, :, None] & adj, axis=1)
      return reach, reach

    start = jnp.zeros((b, v), bool).at[:, 0].set(True)
    _, layers = jax.lax.scan(hop, start, None, length=s)  # [S, B, V]
    layers = jnp.swapaxes(layers, 0, 1).astype(jnp.int32)  # [B, S, V]

    queries = jnp.broadcast_to(self.query_base + jnp.arange(v, dtype=jnp.int32), (b, v))
    inputs = _pad_positions(jnp.concatenate([edge, queries], axis=1), p, self.pad)

    def place(x):  # [..., V] on the query positions -> [..., n]
      return _pad_positions(jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(e, 0)]), p)

    return {"inputs": inputs, "targets": place(layers[:, -1]),
            "weights": place(jnp.ones((b, v), jnp.float32)),
            "step_targets": place(layers),
            "step_weights": place(jnp.ones((b, s, v), jnp.float32))}


@register("dag_eval")
@dataclasses.dataclass(frozen=True)
class DagEval(_DepthTask):
  """Evaluate a layered arithmetic circuit mod `modulus`.

  Nodes k = 0 .. N-1, N = width * (depth + 1), in level order: node k is at level
  k // width. Level 0 holds `width` leaves with values uniform in Z_modulus; a node at level
  l >= 1 is op(a, b) mod modulus, op uniform in {+, *}, a and b drawn uniformly (and
  independently, so a = b is possible) from the nodes of level l - 1. Every node's depth
  (longest path down to a leaf) is therefore exactly its level, and the circuit has depth
  `depth`.

  Tokens (m = modulus): 0 .. m-1 = values; m = LEAF, m+1 = ADD, m+2 = MUL, m+3 = SLOT,
  m+4 = PAD, m+5 = SEP (cot only); m+6+k = "node k". Each node is 4 tokens,
    leaf:     LEAF  value     value     SLOT
    non-leaf: op    "node a"  "node b"  SLOT      (op = ADD or MUL, a, b global indices)
  so the description is 4N tokens; problem_size = 4N. Arguments precede the nodes that use
  them, so causal attention suffices.

  fmt="loop": inputs [B, 4N + p] = description PAD x p. Every SLOT's target is its node's
  value (leaves too); only the width * depth non-leaf SLOTs are scored (leaf values are in
  the input). Classes 0 .. m-1. Steps (one circuit level per step): S = depth; step s has
  the same targets, with weight 1 on the SLOTs of non-leaf nodes at level <= s + 1.

  fmt="cot" (the chain-of-thought baseline on the same circuits): the sequence
    description PAD x p SEP y_1 .. y_K,  K = num_values = width * depth,
  y_i the values of the non-leaf nodes in node order, as value tokens. Next-token format:
  inputs [B, prompt_len + K - 1] drop y_K, prompt_len = 4N + p + 1 (through SEP), and the
  target at t is the token at t + 1, scored only where that token is a value y_i (the SEP
  position and the y_1 .. y_{K-1} positions; 0 and unscored elsewhere). Training is
  teacher-forced; evaluating CoT needs greedy decoding of the K values after the prompt,
  each prediction fed back as the next input. Steps: S = 1, the final targets and weights.
  """

  width: int = 4
  depth: int = 4
  modulus: int = 5
  fmt: str = "loop"
  pad_factor: int = 0
  pad_degree: int = 1

  FORMATS = ("loop", "cot")

  def __post_init__(self):
    _require(self.fmt in self.FORMATS,
             f"fmt={self.fmt!r} must be one of {', '.join(self.FORMATS)}")
    _require(self.width >= 1, f"width={self.width} must be >= 1")
    _require(self.depth >= 1, f"depth={self.depth} must be >= 1")
    _require(self.modulus >= 2, f"modulus={self.modulus} must be >= 2")
    self._check_padding()

  @property
  def num_nodes(self) -> int:
    return self.width * (self.depth + 1)

  @property
  def num_values(self) -> int:
    """Non-leaf nodes: the answer symbols (the CoT length after SEP)."""
    return self.width * self.depth

  @property
  def leaf_op(self) -> int:
    return self.modulus

  @property
  def add_op(self) -> int:
    return self.modulus + 1

  @property
  def mul_op(self) -> int:
    return self.modulus + 2

  @property
  def slot(self) -> int:
    return self.modulus + 3

  @property
  def pad(self) -> int:
    return self.modulus + 4

  @property
  def sep(self) -> int:
    return self.modulus + 5

  @property
  def node_base(self) -> int:
    return self.modulus + 6

  @property
  def problem_size(self) -> int:
    return 4 * self.num_nodes

  @property
  def prompt_len(self) -> int:
    """cot: description, pads and SEP; loop: the whole input."""
    return self.problem_size + self.num_pads + (self.fmt == "cot")

  @property
  def num_steps(self) -> int:
    return self.depth if self.fmt == "loop" else 1

  @property
  def seq_len(self) -> int:
    if self.fmt == "loop":
      return self.problem_size + self.num_pads
    return self.prompt_len + self.num_values - 1

  @property
  def vocab_size(self) -> int:
    return self.node_base + self.num_nodes

  @property
  def output_dim(self) -> int:
    return self.modulus

  def _circuit(self, key, b):
    """(description int32 [B, 4N], values int32 [B, N])."""
    w, d, m, k = self.width, self.depth, self.modulus, self.num_values
    # One randint call with per-column bounds: leaf values, ops (0 = +, 1 = *), arguments.
    widths, highs = (w, k, 2 * k), (m, 2, w)
    maxval = jnp.concatenate([jnp.full((n,), h, jnp.int32) for n, h in zip(widths, highs)])
    draws = jax.random.randint(key, (b, sum(widths)), 0, maxval, jnp.int32)
    leaves, ops, args = jnp.split(draws, np.cumsum(widths)[:-1], axis=1)
    ops, args = ops.reshape(b, d, w), args.reshape(b, d, w, 2)

    level_values = [leaves]
    for i in range(d):  # level i + 1 reads level i only
      lhs = jnp.take_along_axis(level_values[-1], args[:, i, :, 0], axis=1)
      rhs = jnp.take_along_axis(level_values[-1], args[:, i, :, 1], axis=1)
      level_values.append(jnp.where(ops[:, i] == 0, lhs + rhs, lhs * rhs) % m)
    values = jnp.concatenate(level_values, axis=1)  # [B, N]

    # Global node index of each argument: level l + 1 reads nodes l * w + (0 .. w-1).
    refs = self.node_base + w * jnp.arange(d, dtype=jnp.int32)[None, :, None, None] + args
    inner = jnp.concatenate([
        jnp.where(ops == 0, self.add_op, self.mul_op)[..., None], refs,
        jnp.full((b, d, w, 1), self.slot, jnp.int32)], axis=-1).reshape(b, k, 4)
    leaf = jnp.stack([jnp.full((b, w), self.leaf_op, jnp.int32), leaves, leaves,
                      jnp.full((b, w), self.slot, jnp.int32)], axis=-1)
    description = jnp.concatenate([leaf, inner], axis=1).reshape(b, 4 * self.num_nodes)
    return description, values

  def sample(self, key, batch_size, step=0):
    del step
    b, w, p, k = batch_size, self.width, self.num_pads, self.num_values
    description, values = self._circuit(key, b)
    pads = jnp.full((b, p), self.pad, jnp.int32)
    if self.fmt == "cot":
      sep = jnp.full((b, 1), self.sep, jnp.int32)
      answer = values[:, w:]  # non-leaf values in node order
      inputs = jnp.concatenate([description, pads, sep, answer[:, :-1]], axis=1)
      lead = self.prompt_len - 1  # positions before SEP predict no value
      targets = jnp.pad(answer, ((0, 0), (lead, 0)))
      weights = jnp.pad(jnp.ones((b, k), jnp.float32), ((0, 0), (lead, 0)))
      return {"inputs": inputs, "targets": targets, "weights": weights,
              "step_targets": targets[:, None], "step_weights": weights[:, None]}

    # loop: values on the SLOT (4th) token of each node; levels score step by step.
    slots = jnp.zeros((b, self.num_nodes, 4), jnp.int32).at[:, :, 3].set(values)
    targets = _pad_positions(slots.reshape(b, -1), p)
    level = np.arange(self.num_nodes) // w
    step_w = np.zeros((self.depth, self.num_nodes, 4), np.float32)
    step_w[..., 3] = (level[None] >= 1) & (level[None] <= np.arange(1, self.depth + 1)[:, None])
    step_w = np.pad(step_w.reshape(self.depth, -1), ((0, 0), (0, p)))
    step_weights = jnp.broadcast_to(jnp.asarray(step_w), (b, *step_w.shape))
    return {"inputs": jnp.concatenate([description, pads], axis=1), "targets": targets,
            "weights": step_weights[:, -1],
            "step_targets": jnp.broadcast_to(targets[:, None], step_weights.shape),
            "step_weights": step_weights}
