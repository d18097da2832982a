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
at the second solution. `rate` counts its dead ends on the way to the solution, a
deterministic difficulty; `generate(..., min_rating=r)` keeps only puzzles rated >= r.

Also: `augment`, the validity-preserving shuffle of the TRM/HRM data pipeline in jax, and
`read_csv` / `write_csv` for the Sudoku-Extreme CSV format.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
import tempfile

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
  """Counts solutions of `grid` up to `limit`; returns (count, first solution or None,
  backtracks), backtracks = dead ends met (a blank with no candidate left).

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
      return 0, None, 0  # the givens already clash
    rows[_ROW[i]] |= bit
    cols[_COL[i]] |= bit
    boxes[_BOX[i]] |= bit
  if rng is not None:
    blanks = [blanks[j] for j in rng.permutation(len(blanks))]
  n = len(blanks)
  found = [0, None, 0]  # count, first solution, backtracks

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
      found[2] += 1  # a dead end: the search backs up
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
  return found[0], found[1], found[2]


def count_solutions(grid, limit: int = 2) -> int:
  """Number of solutions of `grid`, counting stops at `limit` (2 proves uniqueness)."""
  return _search(grid, limit)[0]


def solve(grid) -> np.ndarray | None:
  """A solution of `grid` with its shape and dtype int8, or None if it has none."""
  _, sol, _ = _search(grid, 1)
  if sol is None:
    return None
  return np.asarray(sol, np.int8).reshape(np.shape(grid))


def rate(grid) -> int:
  """Difficulty: the dead ends (backtracks) the deterministic MRV search meets before it
  finds the first solution. 0 = solved by forced moves and lucky guesses alone.

  Raises ValueError if `grid` has no solution.
  """
  count, _, backtracks = _search(grid, 1)
  if count == 0:
    raise ValueError("cannot rate a sudoku without a solution")
  return backtracks


def random_grid(rng: np.random.Generator) -> np.ndarray:
  """A random complete, valid grid [81] int8 (randomized backtracking from empty)."""
  _, sol, _ = _search(np.zeros(81, np.int8), 1, rng)
  return np.asarray(sol, np.int8)


def generate(rng: np.random.Generator, givens: int, max_attempts: int = 100,
             min_rating: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """A puzzle with exactly `givens` clues, a unique solution and `rate(puzzle) >= min_rating`.

  Returns (puzzle, solution), both int8 [81]. Each attempt draws a fresh grid; an attempt
  fails when removal stops above `givens` (a minimal puzzle) or the puzzle rates below
  `min_rating`. Raises RuntimeError after `max_attempts` failed attempts. min_rating=0
  never rates, so its output (and rng use) is that of the plain generator.
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
    if left == givens and (min_rating <= 0 or rate(puzzle) >= min_rating):
      return puzzle, solution
  if min_rating > 0:
    raise RuntimeError(f"no {givens}-given sudoku rated >= {min_rating} found in "
                       f"{max_attempts} attempts; raise max_attempts or lower min_rating")
  raise RuntimeError(f"no {givens}-given sudoku found in {max_attempts} attempts; "
                     "use more givens")


def _band_perm(u: jax.Array) -> jax.Array:
  """A permutation of 0..8 that keeps the three bands of three: the bands shuffled by
  u[:3], the lines within each by u[3:12] (argsorts of uniforms). [9] int32."""
  bands = jnp.argsort(u[:3])
  lines = jnp.argsort(u[3:12].reshape(3, 3), axis=1)
  return (bands[:, None] * 3 + lines).reshape(9).astype(jnp.int32)


def augment(key: jax.Array, puzzle: jax.Array,
            solution: jax.Array) -> tuple[jax.Array, jax.Array]:
  """A random validity-preserving transform applied to both grids, as the reference's
  `shuffle_sudoku` (TinyRecursiveModels, dataset/build_sudoku_dataset.py).

  puzzle, solution: int [81] (0 = blank, 1-9) -> same shapes and dtypes. Digits are
  relabelled by a permutation of 1..9 (0 stays 0); the grid is transposed with
  probability 1/2; then row r of the output is row `rows[r]` of the input, column c is
  column `cols[c]`, where rows and cols each permute the bands (stacks) and the lines
  within each. Pure jax: jit- and vmap-able (vmap over key and both grids for a batch).
  """
  # One uniform draw, permutations by argsort: jax.random.permutation per piece compiles
  # one threefry per call (seconds of XLA compile on CPU), this compiles one.
  u = jax.random.uniform(key, (34,))
  digit_map = jnp.concatenate([jnp.zeros(1, jnp.int32),
                               jnp.argsort(u[:9]).astype(jnp.int32) + 1])
  transpose = u[9] < 0.5
  rows, cols = _band_perm(u[10:22]), _band_perm(u[22:34])
  source = (rows[:, None] * 9 + cols[None, :]).reshape(81)  # output cell <- input cell

  def apply(grid):
    g = jnp.reshape(grid, (9, 9))
    g = jnp.where(transpose, g.T, g).reshape(81)
    return digit_map[g[source]].astype(grid.dtype)

  return apply(puzzle), apply(solution)


CSV_HEADER = ("source", "question", "answer", "rating")


def write_csv(path: str, puzzles, solutions, ratings, source: str = "looped_jax") -> None:
  """Writes puzzles in the Sudoku-Extreme CSV format (sapientinc/sudoku-extreme).

  puzzles, solutions: int [N, 81] (0 = blank); ratings: int [N]. Rows are
  `source,question,answer,rating` with question = 81 chars, '.' for a blank, and
  answer = 81 digits, under that header.
  """
  puzzles = np.asarray(puzzles).reshape(-1, 81)
  solutions = np.asarray(solutions).reshape(-1, 81)
  ratings = np.asarray(ratings).reshape(-1)
  if not len(puzzles) == len(solutions) == len(ratings):
    raise ValueError(f"{len(puzzles)} puzzles, {len(solutions)} solutions and "
                     f"{len(ratings)} ratings; expected one of each per row")
  with open(path, "w", newline="") as f:
    out = csv.writer(f, lineterminator="\n")
    out.writerow(CSV_HEADER)
    for p, a, r in zip(puzzles, solutions, ratings):
      question = "".join(str(int(v)) if v else "." for v in p)
      out.writerow([source, question, "".join(str(int(v)) for v in a), int(r)])


def read_csv(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Reads a Sudoku-Extreme CSV: (puzzles int8 [N, 81], solutions int8 [N, 81], ratings
  int32 [N]); puzzles use 0 for a blank ('.' or '0' in the file).

  Raises ValueError naming the file and line of the first malformed row: wrong header or
  field count, a question or answer not 81 characters long, characters other than
  '.', 0-9 (question) or 1-9 (answer), a non-integer rating, an answer that is not a
  valid sudoku, or a given that disagrees with the answer.
  """
  questions, answers, ratings, lines = [], [], [], []
  with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: skips a byte order mark
    rows = csv.reader(f)
    header = next(rows, None)
    if header is None or tuple(h.strip() for h in header) != CSV_HEADER:
      raise ValueError(f"{path}, line 1: header {header} is not {','.join(CSV_HEADER)}")
    for row in rows:
      where = f"{path}, line {rows.line_num}"
      if not row:
        continue  # a blank line
      if len(row) != 4:
        raise ValueError(f"{where}: {len(row)} fields; expected 4 ({','.join(CSV_HEADER)})")
      _, q, a, r = row
      for name, text in (("question", q), ("answer", a)):
        if len(text) != 81 or not text.isascii():
          raise ValueError(f"{where}: the {name} has {len(text)} characters; expected 81 "
                           "ASCII ones")
      try:
        ratings.append(int(r))
      except ValueError:
        raise ValueError(f"{where}: rating {r!r} is not an integer") from None
      questions.append(q)
      answers.append(a)
      lines.append(rows.line_num)
  n = len(questions)
  # Vectorized checks: one python pass above, numpy below (millions of rows). uint8
  # wraps below '0', so every bad character lands above 9.
  q = np.frombuffer("".join(questions).encode("ascii"), np.uint8).reshape(n, 81)
  a = np.frombuffer("".join(answers).encode("ascii"), np.uint8).reshape(n, 81)
  q = np.where(q == ord("."), ord("0"), q) - np.uint8(ord("0"))
  a = a - np.uint8(ord("0"))

  def fail(bad: np.ndarray, start: int, problem: str):
    rows = np.flatnonzero(bad)
    if rows.size:
      raise ValueError(f"{path}, line {lines[start + rows[0]]}: {problem}")

  for start in range(0, n, 1 << 16):  # in chunks: bounded temporaries
    qc, ac = q[start:start + (1 << 16)], a[start:start + (1 << 16)]
    fail(np.any(qc > 9, axis=1), start, "the question has a character other than '.' or 0-9")
    fail(np.any((ac < 1) | (ac > 9), axis=1), start,
         "the answer has a character other than 1-9")
    fail(~_valid_solutions(ac), start, "the answer is not a valid sudoku solution")
    fail(np.any((qc > 0) & (qc != ac), axis=1), start,
         "a given of the question disagrees with the answer")
  return q.astype(np.int8), a.astype(np.int8), np.asarray(ratings, np.int32).reshape(n)


def _valid_solutions(grids: np.ndarray) -> np.ndarray:
  """[N, 81] digits 1..9 -> [N] bool: every row, column and box holds each digit once."""
  bits = (np.int16(1) << grids.astype(np.int16)).reshape(-1, 9, 9)
  boxes = bits.reshape(-1, 3, 3, 3, 3).transpose(0, 1, 3, 2, 4).reshape(-1, 9, 9)
  ok = np.ones(len(grids), bool)
  for units in (bits, bits.transpose(0, 2, 1), boxes):
    ok &= np.all(np.bitwise_or.reduce(units, axis=2) == _ALL, axis=1)
  return ok


POOL_CACHE_VERSION = 1  # bump when the pool for the same name would change


@functools.lru_cache(maxsize=8)
def make_pool(seed: int, size: int, givens: int, min_rating: int = 0,
              data_dir: str = "") -> tuple[np.ndarray, np.ndarray]:
  """`size` puzzles from `np.random.default_rng(seed)`: (puzzles, solutions) int8 [size, 81].

  Deterministic in (seed, size, givens, min_rating); cached in memory so equal tasks share
  one pool, and with `data_dir` on disk (data_dir/sudoku_pools/*.npz, written atomically)
  so that other processes and later runs reuse it. The arrays are read-only. Each puzzle
  gets 100 attempts, 10,000 with `min_rating` (a rating filter rejects most grids).
  """
  def make():
    rng = np.random.default_rng(seed)
    attempts = 100 if min_rating <= 0 else 10_000
    pairs = [generate(rng, givens, attempts, min_rating) for _ in range(size)]
    return np.stack([p for p, _ in pairs]), np.stack([s for _, s in pairs])

  name = f"seed{seed}-n{size}-givens{givens}-rating{min_rating}"
  return _cached_pool(data_dir, name, make)


@functools.lru_cache(maxsize=8)
def _csv_pool(csv_dir: str, data_dir: str, split: str, min_rating: int, size: int,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(puzzles, solutions) int8 [n, 81] of one split of a Sudoku-Extreme CSV folder, read
  through the `sudoku_csv` TFDS dataset built into `data_dir`; `size` rows drawn without
  replacement with `seed` (all rows, in file order, if size is 0 or >= the split).

  The pool is also cached as .npz next to generated ones: TFDS decodes ~5,000 rows/s, so
  reading the full Sudoku-Extreme train split takes minutes, the .npz about a second.
  """
  # Imported here: the task registry imports this module and must not pull in TFDS.
  from looped_jax.tasks.tfds import builders, reader  # pylint: disable=import-outside-toplevel

  def make():
    source = reader.sudoku_csv_source(csv_dir, split, data_dir, min_rating=min_rating)
    n = len(source)
    idx = np.arange(n)
    if 0 < size < n:
      idx = np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
    rows = []
    for start in range(0, len(idx), 4096):  # batched reads: one array_record call each
      rows += source.__getitems__([int(i) for i in idx[start:start + 4096]])
    return (np.stack([r["inputs"] for r in rows]),
            np.stack([r["targets"] for r in rows]) + 1)

  name = (f"csv{builders.csv_digest(csv_dir)}-{split}-n{size}-seed{seed}"
          f"-rating{min_rating}")
  return _cached_pool(data_dir, name, make)


def _cached_pool(data_dir: str, name: str, make) -> tuple[np.ndarray, np.ndarray]:
  """make() -> (puzzles, solutions), read from / written to
  data_dir/sudoku_pools/sudoku-v<version>-<name>.npz when data_dir is set; int8, read-only."""
  path = ""
  if data_dir:
    path = os.path.join(data_dir, "sudoku_pools", f"sudoku-v{POOL_CACHE_VERSION}-{name}.npz")
  if path and os.path.exists(path):
    with np.load(path) as f:
      puzzles, solutions = f["puzzles"], f["solutions"]
  else:
    puzzles, solutions = make()
    if path:
      _save_atomically(path, puzzles=puzzles.astype(np.int8),
                       solutions=solutions.astype(np.int8))
  puzzles = puzzles.astype(np.int8)
  solutions = solutions.astype(np.int8)
  puzzles.flags.writeable = False
  solutions.flags.writeable = False
  return puzzles, solutions


def _save_atomically(path: str, **arrays) -> None:
  """np.savez to a temporary file in the target folder, then os.replace: a concurrent
  reader sees no file or the complete one, never a partial one."""
  folder = os.path.dirname(path)
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


SPLITS = ("train", "test")


@register("sudoku")
@dataclasses.dataclass(frozen=True)
class Sudoku(TokenTask):
  """Solve a 9x9 sudoku with a unique solution, all cells at once.

  Generated pool (`csv` empty): `pool_size` puzzles with exactly `givens` clues, each
  rated >= `min_rating` (`rate`: dead ends of the MRV solver, not the tdoku scale of
  Sudoku-Extreme), generated at construction from `seed` in pure python on one core:
  ~12 ms per puzzle at 30 givens, ~50 ms at 24, ~1 s at 22; a rating filter multiplies
  this by the inverse of the share of puzzles that pass (at 24 givens about 1/2 rate
  >= 10 and 1/10 >= 50). Equal tasks in one process share the pool; with `data_dir` it
  is also cached on disk (see `make_pool`). The key picks pool indices uniformly with
  replacement. For large sets use the TFDS datasets (looped_jax.tasks.tfds).

  CSV pool (`csv` = a folder holding train.csv and test.csv in the Sudoku-Extreme
  format): the split is read through the `sudoku_csv` TFDS dataset, built into
  `data_dir` on first use (required); rows rated below `min_rating` are skipped and
  `pool_size` rows are drawn from the rest with `seed` (`test_seed` for test; 0 or more
  than the split: all rows, in file order). `givens` is ignored (puzzles keep their own
  clue counts). The first build reads the CSV (~1 s per 100k rows) and writes the TFDS
  dataset (~4,000 rows/s); the pool read from it is cached as .npz in data_dir.

  split: "train" draws the pool with `seed` (train.csv); "test" with `test_seed`
    (test.csv). `held_out()` is this task with split "test" and no augmentation, so
    evaluation never sees a training puzzle.
  augment: every example gets its own random `augment` (digits, transpose, bands and
    lines), keyed by a split of the sample key.

  inputs  int32 [B, 81]  row-major cells, 0 = blank, 1-9 = given digit (vocab 10)
  targets int32 [B, 81]  solution digit - 1, classes 0..8 (output_dim 9)
  weights float32 [B, 81] 1 on blanks, 0 on givens; 1 everywhere if `score_all`
  Attention: needs bidirectional attention (a cell depends on givens after it).
  """

  givens: int = 30
  pool_size: int = 256
  seed: int = 0
  score_all: bool = False
  min_rating: int = 0
  augment: bool = False
  test_seed: int = 1_000_003
  split: str = "train"
  data_dir: str = ""
  csv: str = ""

  def __post_init__(self):
    if not 17 <= self.givens <= 81:
      raise ValueError(f"givens={self.givens} must be in 17..81")
    if self.pool_size < (0 if self.csv else 1):
      raise ValueError(f"pool_size={self.pool_size} must be >= 1 "
                       "(>= 0 with csv, 0 = every row)")
    if self.min_rating < 0:
      raise ValueError(f"min_rating={self.min_rating} must be >= 0")
    if self.test_seed == self.seed:
      raise ValueError(f"test_seed={self.test_seed} must differ from seed={self.seed} "
                       "(held-out puzzles must not be training puzzles)")
    if self.split not in SPLITS:
      raise ValueError(f"split={self.split!r} must be one of {', '.join(SPLITS)}")
    pool_seed = self.seed if self.split == "train" else self.test_seed
    if self.csv:
      if not self.data_dir:
        raise ValueError(f"csv={self.csv!r} needs a data_dir to build the sudoku_csv "
                         "dataset into; set data_dir to a writable folder")
      missing = [f for f in ("train.csv", "test.csv")
                 if not os.path.isfile(os.path.join(self.csv, f))]
      if missing:
        raise ValueError(f"csv={self.csv!r} must be a folder holding train.csv and test.csv "
                         f"(missing: {', '.join(missing)})")
      puzzles, solutions = _csv_pool(os.path.abspath(self.csv), self.data_dir, self.split,
                                     self.min_rating, self.pool_size, pool_seed)
    else:
      puzzles, solutions = make_pool(pool_seed, self.pool_size, self.givens,
                                     self.min_rating, self.data_dir)
    # Not fields: equality and hashing stay defined by the config alone.
    object.__setattr__(self, "puzzles", puzzles)
    object.__setattr__(self, "solutions", solutions)

  def held_out(self) -> Sudoku:
    return dataclasses.replace(self, split="test", augment=False)

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
    if self.augment:
      key, aug_key = jax.random.split(key)
    idx = jax.random.randint(key, (batch_size,), 0, len(self.puzzles))
    # Indexed as int8 and widened after: a large pool stays a 1-byte-per-cell constant.
    inputs = jnp.asarray(self.puzzles)[idx].astype(jnp.int32)
    solutions = jnp.asarray(self.solutions)[idx].astype(jnp.int32)
    if self.augment:
      keys = jax.random.split(aug_key, batch_size)
      inputs, solutions = jax.vmap(augment)(keys, inputs, solutions)
    targets = solutions - 1
    if self.score_all:
      weights = jnp.ones(inputs.shape, jnp.float32)
    else:
      weights = (inputs == 0).astype(jnp.float32)
    return {"inputs": inputs, "targets": targets, "weights": weights}
