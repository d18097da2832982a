"""Mazes: mark the shortest path from S to G on a grid, the `maze` task (the Maze-Hard task
of HRM/TRM, generated here rather than downloaded).

Grids are square, side = 2 * cells + 1: cell (i, j) of a cells x cells lattice is square
(2i + 1, 2j + 1), the squares between two neighbouring cells are walls or passages, the
border is wall. Moves are up, down, left, right between open squares.

Generation (`generate`, numpy on one core, about a millisecond per maze at cells = 5):
a randomized depth-first search carves a spanning tree of the lattice, a perfect maze
with exactly one path between any two open squares; `extra_openings` random inter-cell
walls are then removed, which makes loops. S is drawn uniformly among the open squares
and G uniformly among those at least `min_path` moves away (BFS distance) whose shortest
path from S is unique (shortest paths counted by BFS dynamic programming), so the target
is well defined; a maze without such a G is redrawn.

Tokens: the reference's charset "# SGo" shifted by one, 0 = pad (never used here):
  1 WALL '#', 2 OPEN ' ', 3 START 'S', 4 GOAL 'G', 5 PATH 'o'.
`shortest_path` is a plain BFS oracle, independent of the generator's counting BFS.
"""

from __future__ import annotations

import collections
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from looped_jax.tasks import register
from looped_jax.tasks.base import TokenTask

PAD, WALL, OPEN, START, GOAL, PATH = range(6)
CHARSET = "# SGo"  # token t >= 1 prints as CHARSET[t - 1]
_MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))


def carve(rng: np.random.Generator, cells: int, extra_openings: int = 0) -> np.ndarray:
  """A maze [side, side] int8 of WALL / OPEN: a randomized-DFS spanning tree of the
  cells x cells lattice plus `extra_openings` inter-cell walls removed at random."""
  side = 2 * cells + 1
  grid = np.full((side, side), WALL, np.int8)
  grid[1::2, 1::2] = OPEN
  seen = np.zeros((cells, cells), bool)
  start = (int(rng.integers(cells)), int(rng.integers(cells)))
  seen[start] = True
  stack = [start]
  while stack:
    i, j = stack[-1]
    nexts = [(i + di, j + dj) for di, dj in _MOVES
             if 0 <= i + di < cells and 0 <= j + dj < cells and not seen[i + di, j + dj]]
    if not nexts:
      stack.pop()
      continue
    ni, nj = nexts[int(rng.integers(len(nexts)))]
    grid[i + ni + 1, j + nj + 1] = OPEN  # the wall square between the two cells
    seen[ni, nj] = True
    stack.append((ni, nj))
  if extra_openings:
    # Inter-cell wall squares: odd row and even column or vice versa, off the border.
    r, c = np.nonzero(grid == WALL)
    inner = (r > 0) & (r < side - 1) & (c > 0) & (c < side - 1) & ((r + c) % 2 == 1)
    walls = np.stack([r[inner], c[inner]], axis=1)
    for w in rng.choice(len(walls), extra_openings, replace=False):
      grid[tuple(walls[w])] = OPEN
  return grid


def _bfs_counts(open_: np.ndarray, start: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """BFS from `start` over True squares of `open_` [side, side]: (distance in moves, -1 if
  unreachable; number of shortest paths, capped at 2) both [side, side] int32."""
  side = open_.shape[0]
  dist = np.full((side, side), -1, np.int32)
  count = np.zeros((side, side), np.int32)
  dist[start], count[start] = 0, 1
  queue = collections.deque([start])
  while queue:
    r, c = queue.popleft()
    for dr, dc in _MOVES:
      n = (r + dr, c + dc)
      if not (0 <= n[0] < side and 0 <= n[1] < side and open_[n]):
        continue
      if dist[n] < 0:
        dist[n] = dist[r, c] + 1
        queue.append(n)
      if dist[n] == dist[r, c] + 1:  # (r, c) is a predecessor of n on a shortest path
        count[n] = min(2, count[n] + count[r, c])
  return dist, count


def shortest_path(grid, start: tuple[int, int],
                  goal: tuple[int, int]) -> list[tuple[int, int]] | None:
  """A shortest path [start, ..., goal] over non-WALL squares of `grid` [side, side] by
  breadth-first search with parent links, or None if goal is unreachable."""
  grid = np.asarray(grid)
  parent = {tuple(start): None}
  queue = collections.deque([tuple(start)])
  while queue:
    here = queue.popleft()
    if here == tuple(goal):
      path = []
      while here is not None:
        path.append(here)
        here = parent[here]
      return path[::-1]
    for dr, dc in _MOVES:
      n = (here[0] + dr, here[1] + dc)
      if (0 <= n[0] < grid.shape[0] and 0 <= n[1] < grid.shape[1] and n not in parent
          and grid[n] != WALL):
        parent[n] = here
        queue.append(n)
  return None


def generate(rng: np.random.Generator, cells: int, extra_openings: int = 0,
             min_path: int = 0, max_attempts: int = 100) -> tuple[np.ndarray, np.ndarray]:
  """A maze with S, G and its unique shortest path: (inputs, targets) int8 [side * side].

  inputs: WALL / OPEN / START / GOAL; targets: inputs with the squares strictly between
  S and G on the path set to PATH. The path has at least max(min_path, 1) moves. Raises
  RuntimeError if `max_attempts` mazes (each with up to 8 draws of S) offer no such G.
  """
  for _ in range(max_attempts):
    grid = carve(rng, cells, extra_openings)
    open_ = grid == OPEN
    squares = np.argwhere(open_)
    for _ in range(8):
      s = tuple(int(v) for v in squares[rng.integers(len(squares))])
      dist, count = _bfs_counts(open_, s)
      ok = np.argwhere((dist >= max(min_path, 1)) & (count == 1))
      if len(ok):
        break
    else:
      continue
    g = tuple(int(v) for v in ok[rng.integers(len(ok))])
    inputs = grid.copy()
    inputs[s], inputs[g] = START, GOAL
    targets = inputs.copy()
    here = g  # walk back: the predecessor one move closer is unique (count == 1)
    while dist[here] > 1:
      here = next(n for n in ((here[0] + dr, here[1] + dc) for dr, dc in _MOVES)
                  if open_[n] and dist[n] == dist[here] - 1)
      targets[here] = PATH
    return inputs.reshape(-1), targets.reshape(-1)
  raise RuntimeError(f"no {cells}-cell maze with a unique shortest path of >= {min_path} "
                     f"moves in {max_attempts} attempts; lower min_path")


@functools.lru_cache(maxsize=8)
def dihedral_perms(side: int) -> np.ndarray:
  """[8, side * side] int32: out.flat = x.flat[perms[t]] is the reference's
  dihedral_transform(x, t): identity, rot90 k = 1, 2, 3, flip left-right, flip up-down,
  transpose, anti-transpose."""
  idx = np.arange(side * side, dtype=np.int32).reshape(side, side)
  images = [idx, np.rot90(idx, 1), np.rot90(idx, 2), np.rot90(idx, 3), np.fliplr(idx),
            np.flipud(idx), idx.T, np.fliplr(np.rot90(idx, 1))]
  perms = np.stack([im.reshape(-1) for im in images])
  perms.flags.writeable = False
  return perms


def canonical(inputs: np.ndarray, side: int) -> bytes:
  """The smallest of the 8 dihedral images of `inputs` [side * side] as bytes: equal for
  mazes that are rotations or reflections of each other."""
  x = np.asarray(inputs, np.int8).reshape(-1)
  return min(x[p].tobytes() for p in dihedral_perms(side))


@functools.lru_cache(maxsize=8)
def make_pool(seed: int, size: int, cells: int, extra_openings: int = 0, min_path: int = 0,
              avoid_seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """`size` mazes from `np.random.default_rng(seed)`: (inputs, targets) int8
  [size, side * side], read-only, deterministic in the arguments and cached in memory.

  avoid_seed: skip mazes equal, up to rotation and reflection, to one of the pool of
  `avoid_seed` with the same other arguments (held-out pools; tiny lattices repeat).
  """
  side = 2 * cells + 1
  avoid = set()
  if avoid_seed is not None:
    avoid = {canonical(x, side)
             for x in make_pool(avoid_seed, size, cells, extra_openings, min_path)[0]}
  rng = np.random.default_rng(seed)
  pairs, skipped = [], 0
  while len(pairs) < size:
    inputs, targets = generate(rng, cells, extra_openings, min_path, max_attempts=1000)
    if avoid and canonical(inputs, side) in avoid:
      skipped += 1
      if skipped > 100 * size:
        raise RuntimeError(f"cannot find {size} {cells}-cell mazes outside the training "
                           "pool; use more cells or a smaller pool")
      continue
    pairs.append((inputs, targets))
  inputs = np.stack([x for x, _ in pairs])
  targets = np.stack([t for _, t in pairs])
  inputs.flags.writeable = False
  targets.flags.writeable = False
  return inputs, targets


SPLITS = ("train", "test")


@register("maze")
@dataclasses.dataclass(frozen=True)
class Maze(TokenTask):
  """Mark the unique shortest path from S to G in a maze, all squares at once.

  A deterministic pool of `pool_size` mazes is generated at construction (`generate`,
  ~1 ms per maze at cells = 5; equal tasks in one process share it); the key picks pool
  indices uniformly with replacement.

  cells: lattice size; the grid has side 2 * cells + 1 (cells = 5: 11 x 11, 121 tokens).
  extra_openings: inter-cell walls removed after carving (0: a perfect maze; more: loops,
    so the model must find the shortest of several paths); at most (cells - 1)**2.
  min_path: the path has at least this many moves (the hardness knob; 0 = any S != G).
  split: "train" draws the pool with `seed`, "test" with `test_seed` and skips mazes of
    the training pool up to rotation and reflection. `held_out()` is this task with
    split "test" and no augmentation.
  augment: each example gets one of the 8 dihedral transforms, drawn from the key.

  inputs  int32 [B, side * side]  row-major tokens WALL 1, OPEN 2, START 3, GOAL 4 (vocab 6)
  targets int32 [B, side * side]  inputs with the path squares between S and G set to
                                  PATH 5 (S and G keep their tokens); classes 0..5
  weights float32 [B, side * side] 1 on every non-wall square (S and G included); 1
                                  everywhere if `score_all` (as the reference scores)
  Attention: needs bidirectional attention.
  """

  cells: int = 5
  extra_openings: int = 0
  min_path: int = 0
  pool_size: int = 1000
  seed: int = 0
  test_seed: int = 1_000_003
  split: str = "train"
  augment: bool = False
  score_all: bool = False

  def __post_init__(self):
    if self.cells < 2:
      raise ValueError(f"cells={self.cells} must be >= 2")
    most = (self.cells - 1)**2
    if not 0 <= self.extra_openings <= most:
      raise ValueError(f"extra_openings={self.extra_openings} must be in 0..{most} (the "
                       f"inner walls a {self.cells}-cell perfect maze keeps)")
    longest = 2 * self.cells**2 - 2 + self.extra_openings  # every open square on the path
    if not 0 <= self.min_path <= longest:
      raise ValueError(f"min_path={self.min_path} must be in 0..{longest} (a path visits "
                       "each open square at most once)")
    if self.pool_size < 1:
      raise ValueError(f"pool_size={self.pool_size} must be >= 1")
    if self.test_seed == self.seed:
      raise ValueError(f"test_seed={self.test_seed} must differ from seed={self.seed} "
                       "(held-out mazes must not be training mazes)")
    if self.split not in SPLITS:
      raise ValueError(f"split={self.split!r} must be one of {', '.join(SPLITS)}")
    if self.split == "train":
      pool = make_pool(self.seed, self.pool_size, self.cells, self.extra_openings,
                       self.min_path)
    else:
      pool = make_pool(self.test_seed, self.pool_size, self.cells, self.extra_openings,
                       self.min_path, avoid_seed=self.seed)
    # Not fields: equality and hashing stay defined by the config alone.
    object.__setattr__(self, "inputs", pool[0])
    object.__setattr__(self, "targets", pool[1])

  def held_out(self) -> Maze:
    return dataclasses.replace(self, split="test", augment=False)

  @property
  def side(self) -> int:
    return 2 * self.cells + 1

  @property
  def seq_len(self) -> int:
    return self.side**2

  @property
  def vocab_size(self) -> int:
    return 6

  @property
  def output_dim(self) -> int:
    return 6

  def sample(self, key, batch_size, step=0):
    del step
    if self.augment:
      key, aug_key = jax.random.split(key)
    idx = jax.random.randint(key, (batch_size,), 0, self.pool_size)
    inputs = jnp.asarray(self.inputs)[idx].astype(jnp.int32)
    targets = jnp.asarray(self.targets)[idx].astype(jnp.int32)
    if self.augment:
      transform = jax.random.randint(aug_key, (batch_size,), 0, 8)
      perm = jnp.asarray(dihedral_perms(self.side))[transform]  # [B, side * side]
      inputs = jnp.take_along_axis(inputs, perm, axis=1)
      targets = jnp.take_along_axis(targets, perm, axis=1)
    if self.score_all:
      weights = jnp.ones(inputs.shape, jnp.float32)
    else:
      weights = (inputs != WALL).astype(jnp.float32)
    return {"inputs": inputs, "targets": targets, "weights": weights}


def render(tokens, side: int) -> str:
  """Rows of CHARSET characters, for debugging and docs."""
  rows = np.asarray(tokens).reshape(side, side)
  return "\n".join("".join(CHARSET[t - 1] if t else "_" for t in row) for row in rows)
