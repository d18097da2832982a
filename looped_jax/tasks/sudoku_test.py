"""Sudoku generator, solver and task, checked against an independent solution counter."""

import jax
import numpy as np
import pytest

from looped_jax import tasks
from looped_jax.errors import ConfigError
from looped_jax.tasks import sudoku

# Arto Inkala's "world's hardest sudoku" (2012): a known unique puzzle, 21 givens.
INKALA = "800000000003600000070090200050007000000045700000100030001000068008500010090000400"


def _ref_count(flat, limit=2):
  """Independent DFS counter on a 9x9 list of lists with python sets (stops at `limit`)."""
  g = [list(map(int, flat[9 * r:9 * r + 9])) for r in range(9)]

  def options(r, c):
    used = set(g[r]) | {g[i][c] for i in range(9)}
    br, bc = 3 * (r // 3), 3 * (c // 3)
    used |= {g[i][j] for i in range(br, br + 3) for j in range(bc, bc + 3)}
    return [d for d in range(1, 10) if d not in used]

  for r in range(9):  # givens must not clash
    for c in range(9):
      if g[r][c]:
        d, g[r][c] = g[r][c], 0
        ok = d in options(r, c)
        g[r][c] = d
        if not ok:
          return 0

  def count():
    blanks = [(r, c) for r in range(9) for c in range(9) if g[r][c] == 0]
    if not blanks:
      return 1
    r, c = min(blanks, key=lambda rc: len(options(*rc)))
    total = 0
    for d in options(r, c):
      g[r][c] = d
      total += count()
      g[r][c] = 0
      if total >= limit:
        break
    return total

  return min(count(), limit)


def _is_solution(grid):
  g = np.asarray(grid).reshape(9, 9)
  units = [g[r] for r in range(9)] + [g[:, c] for c in range(9)]
  units += [g[r:r + 3, c:c + 3].ravel() for r in (0, 3, 6) for c in (0, 3, 6)]
  return all(sorted(u.tolist()) == list(range(1, 10)) for u in units)


@pytest.mark.parametrize("givens", [45, 32, 26])
def test_generated_puzzles_are_unique(givens):
  rng = np.random.default_rng(givens)
  for _ in range(3):
    puzzle, solution = sudoku.generate(rng, givens)
    assert puzzle.shape == solution.shape == (81,)
    assert int(np.sum(puzzle > 0)) == givens
    assert _is_solution(solution)
    given = puzzle > 0
    np.testing.assert_array_equal(puzzle[given], solution[given])
    assert _ref_count(puzzle) == 1
    np.testing.assert_array_equal(sudoku.solve(puzzle), solution)


def test_solver_on_known_hard_puzzle():
  puzzle = np.array([int(ch) for ch in INKALA]).reshape(9, 9)
  solution = sudoku.solve(puzzle)
  assert solution.shape == (9, 9) and _is_solution(solution)
  given = puzzle > 0
  np.testing.assert_array_equal(solution[given], puzzle[given])
  assert sudoku.count_solutions(puzzle) == 1


def test_counter_agrees_with_reference_on_ambiguous_grids():
  rng = np.random.default_rng(7)
  counts = []
  for blanks in (30, 45, 55, 60, 64, 81):
    full = sudoku.random_grid(rng)
    assert _is_solution(full)
    partial = full.copy()
    partial[rng.permutation(81)[:blanks]] = 0
    mine = sudoku.count_solutions(partial, limit=2)
    assert mine == _ref_count(partial, limit=2), blanks
    counts.append(mine)
    sol = sudoku.solve(partial)
    assert _is_solution(sol)
    np.testing.assert_array_equal(sol[partial > 0], partial[partial > 0])
  assert 1 in counts and 2 in counts  # both outcomes exercised


def test_unsolvable_and_clashing_grids():
  clash = np.zeros(81, np.int8)
  clash[0] = clash[1] = 5  # same row
  assert sudoku.solve(clash) is None and sudoku.count_solutions(clash) == 0
  # No clash among givens, yet cell (0, 0) has no candidate left.
  dead = np.zeros((9, 9), np.int8)
  dead[0, 1:9] = [1, 2, 3, 4, 5, 6, 7, 8]
  dead[1, 0] = 9
  assert sudoku.solve(dead) is None and _ref_count(dead.ravel()) == 0
  with pytest.raises(ValueError):
    sudoku.count_solutions(np.zeros(80))


def test_random_grid_is_seeded():
  a = sudoku.random_grid(np.random.default_rng(1))
  b = sudoku.random_grid(np.random.default_rng(1))
  c = sudoku.random_grid(np.random.default_rng(2))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_task_batches():
  task = tasks.get({"name": "sudoku", "givens": 34, "pool_size": 5, "seed": 3})
  assert (task.seq_len, task.vocab_size, task.output_dim) == (81, 10, 9)
  sample = jax.jit(task.sample, static_argnums=1)
  batch = jax.device_get(sample(jax.random.key(0), 16))
  pool = {p.tobytes(): s for p, s in zip(task.puzzles.astype(np.int32), task.solutions)}
  for b in range(16):
    x = batch["inputs"][b]
    assert x.tobytes() in pool  # drawn from the pool
    np.testing.assert_array_equal(batch["targets"][b] + 1, pool[x.tobytes()])
    np.testing.assert_array_equal(batch["weights"][b], (x == 0).astype(np.float32))
    assert int(np.sum(x > 0)) == 34 and _ref_count(x) == 1
  assert batch["targets"].min() >= 0 and batch["targets"].max() <= 8
  # Determinism in the key and in the pool seed.
  again = jax.device_get(sample(jax.random.key(0), 16))
  np.testing.assert_array_equal(batch["inputs"], again["inputs"])
  other = jax.device_get(sample(jax.random.key(1), 16))
  assert not np.array_equal(batch["inputs"], other["inputs"])
  same = tasks.get({"name": "sudoku", "givens": 34, "pool_size": 5, "seed": 3})
  np.testing.assert_array_equal(same.puzzles, task.puzzles)
  assert same == task and hash(same) == hash(task)
  reseeded = tasks.get({"name": "sudoku", "givens": 34, "pool_size": 5, "seed": 4})
  assert not np.array_equal(reseeded.puzzles, task.puzzles)


def test_score_all():
  task = sudoku.Sudoku(givens=34, pool_size=5, seed=3, score_all=True)
  batch = jax.device_get(jax.jit(task.sample, static_argnums=1)(jax.random.key(0), 4))
  assert batch["weights"].min() == 1.0


@pytest.mark.parametrize("config", [{"givens": 16}, {"pool_size": 0}, {"givens": 82}])
def test_bad_configs(config):
  with pytest.raises(ConfigError):
    tasks.get({"name": "sudoku", **config})
