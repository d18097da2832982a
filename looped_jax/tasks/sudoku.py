"""Sudoku: a uniqueness-proving numpy/python generator, an exact solver, and the `sudoku` task.

Grids are flat length-81 arrays in row-major order (cell i is row i // 9, column i % 9);
0 = blank, 1-9 = digits. Any array with 81 entries (e.g. [9, 9]) is accepted.

Generation (`generate`): fill an empty grid by randomized backtracking, then visit the
cells in random order and blank each one unless that makes the puzzle ambiguous
(`count_solutions(puzzle, limit=2) != 1`), until exactly `givens` clues remain. The
difficulty knob is the number of givens: fewer givens, harder puzzle. Random removal
rarely gets below ~22 givens, so low targets cost retries (`max_attempts`).

The solver is a depth-first search over bitmasks that always branches on the blank cell
with the fewest candidates (minimum remaining values); it proves uniqueness by stopping
at the second solution.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from looped_jax.tasks import register
from looped_jax.tasks.base import TokenTask

_ROW = tuple(i // 9 for i in range(81))
_COL = tuple(i % 9 for i in range(81))
_BOX = tuple((i // 27) * 3 + (i % 9) // 3 for i in range(81))
_ALL = 0b1111111110  # bit d set <=> digit d (1..9) is still possible


def _search(grid, limit: int, rng: np.random.Generator | None = None):
  """Counts solutions of `grid` up to `limit`; returns (count, first solution or None).

  With `rng`, blanks are scanned and candidates tried in random order (grid sampling).
  """
  cells = [int(v) for v in np.asarray(grid).reshape(-1)]
  if len(cells) != 81 or any(not 0 <= v <= 9 for v in cells):
    raise ValueError("a sudoku grid needs 81 entries in 0..9")
  rows, cols, boxes = [0] * 9, [0] * 9, [0] * 9
  blanks = []
  for i, v in enumerate(cells):
    if v == 0:
      blanks.append(i)
      continue
    bit = 1 << v
    if (rows[_ROW[i]] | cols[_COL[i]] | boxes[_BOX[i]]) & bit:
      return 0, None  # the givens already clash
    rows[_ROW[i]] |= bit
    cols[_COL[i]] |= bit
    boxes[_BOX[i]] |= bit
  if rng is not None:
    blanks = [blanks[j] for j in rng.permutation(len(blanks))]
  n = len(blanks)
  found = [0, None]

  def dfs(k: int) -> bool:
    """Fills blanks[k:]; returns True once `limit` solutions are found."""
    if k == n:
      found[0] += 1
      if found[1] is None:
        found[1] = list(cells)
      return found[0] >= limit
    # Minimum remaining values: branch on the most constrained blank.
    best_j, best_c, best_m = k, 0, 10
    for j in range(k, n):
      i = blanks[j]
      c = _ALL & ~(rows[_ROW[i]] | cols[_COL[i]] | boxes[_BOX[i]])
      m = c.bit_count()
      if m < best_m:
        best_j, best_c, best_m = j, c, m
        if m <= 1:
          break
    if best_m == 0:
      return False
    blanks[k], blanks[best_j] = blanks[best_j], blanks[k]
    i = blanks[k]
    r, c, b = _ROW[i], _COL[i], _BOX[i]
    digits = [d for d in range(1, 10) if best_c >> d & 1]
    if rng is not None and len(digits) > 1:
      digits = [digits[j] for j in rng.permutation(len(digits))]
    for d in digits:
      bit = 1 << d
      rows[r] |= bit
      cols[c] |= bit
      boxes[b] |= bit
      cells[i] = d
      stop = dfs(k + 1)
      rows[r] ^= bit
      cols[c] ^= bit
      boxes[b] ^= bit
      if stop:
        break
    cells[i] = 0
    return stop

  dfs(0)
  return found[0], found[1]


def count_solutions(grid, limit: int = 2) -> int:
  """Number of solutions of `grid`, counting stops at `limit` (2 proves uniqueness)."""
  return _search(grid, limit)[0]


def solve(grid) -> np.ndarray | None:
  """A solution of `grid` with its shape and dtype int8, or None if it has none."""
  _, sol = _search(grid, 1)
  if sol is None:
    return None
  return np.asarray(sol, np.int8).reshape(np.shape(grid))


def random_grid(rng: np.random.Generator) -> np.ndarray:
  """A random complete, valid grid [81] int8 (randomized backtracking from empty)."""
  _, sol = _search(np.zeros(81, np.int8), 1, rng)
  return np.asarray(sol, np.int8)


def generate(rng: np.random.Generator, givens: int,
             max_attempts: int = 100) -> tuple[np.ndarray, np.ndarray]:
  """A puzzle with exactly `givens` clues and a unique solution.

  Returns (puzzle, solution), both int8 [81]. Raises RuntimeError if `max_attempts`
  random grids all reach a minimal puzzle (no clue removable) above `givens`.
  """
  if not 17 <= givens <= 81:
    raise ValueError(f"givens={givens} must be in 17..81 (no 16-clue sudoku exists)")
  for _ in range(max_attempts):
    solution = random_grid(rng)
    puzzle = solution.copy()
    left = 81
    for i in rng.permutation(81):
      if left == givens:
        break
      puzzle[i] = 0
      if count_solutions(puzzle, 2) == 1:
        left -= 1
      else:
        puzzle[i] = solution[i]
    if left == givens:
      return puzzle, solution
  raise RuntimeError(f"no {givens}-given sudoku found in {max_attempts} attempts; "
                     "use more givens")


@functools.lru_cache(maxsize=8)
def make_pool(seed: int, size: int, givens: int) -> tuple[np.ndarray, np.ndarray]:
  """`size` puzzles from `np.random.default_rng(seed)`: (puzzles, solutions) int8 [size, 81].

  Deterministic in (seed, size, givens); cached so equal tasks share one pool. The
  arrays are read-only.
  """
  rng = np.random.default_rng(seed)
  pairs = [generate(rng, givens) for _ in range(size)]
  puzzles = np.stack([p for p, _ in pairs])
  solutions = np.stack([s for _, s in pairs])
  puzzles.flags.writeable = False
  solutions.flags.writeable = False
  return puzzles, solutions


@register("sudoku")
@dataclasses.dataclass(frozen=True)
class Sudoku(TokenTask):
  """Solve a 9x9 sudoku with a unique solution, all cells at once.

  A deterministic pool of `pool_size` puzzles with exactly `givens` clues is generated at
  construction from `seed` (pure python on one core: ~20 ms per puzzle at 30 givens,
  ~0.15 s at 24, seconds at 22; equal tasks in one process share the pool). The key picks
  pool indices uniformly with replacement. For large training sets use the
  `looped_sudoku` TFDS dataset (looped_jax.tasks.tfds).

  inputs  int32 [B, 81]  row-major cells, 0 = blank, 1-9 = given digit (vocab 10)
  targets int32 [B, 81]  solution digit - 1, classes 0..8 (output_dim 9)
  weights float32 [B, 81] 1 on blanks, 0 on givens; 1 everywhere if `score_all`
  Attention: needs bidirectional attention (a cell depends on givens after it).
  """

  givens: int = 30
  pool_size: int = 256
  seed: int = 0
  score_all: bool = False

  def __post_init__(self):
    if not 17 <= self.givens <= 81:
      raise ValueError(f"givens={self.givens} must be in 17..81")
    if self.pool_size < 1:
      raise ValueError(f"pool_size={self.pool_size} must be >= 1")
    puzzles, solutions = make_pool(self.seed, self.pool_size, self.givens)
    # Not fields: equality and hashing stay defined by the config alone.
    object.__setattr__(self, "puzzles", puzzles)
    object.__setattr__(self, "solutions", solutions)

  @property
  def seq_len(self) -> int:
    return 81

  @property
  def vocab_size(self) -> int:
    return 10

  @property
  def output_dim(self) -> int:
    return 9

  def sample(self, key, batch_size, step=0):
    del step
    idx = jax.random.randint(key, (batch_size,), 0, self.pool_size)
    inputs = jnp.asarray(self.puzzles, jnp.int32)[idx]
    targets = jnp.asarray(self.solutions, jnp.int32)[idx] - 1
    if self.score_all:
      weights = jnp.ones(inputs.shape, jnp.float32)
    else:
      weights = (inputs == 0).astype(jnp.float32)
    return {"inputs": inputs, "targets": targets, "weights": weights}
