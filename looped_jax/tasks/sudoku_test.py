"""Sudoku generator, solver and task, checked against an independent solution counter."""

import jax
import jax.numpy as jnp
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


def test_rating():
  inkala = np.array([int(ch) for ch in INKALA])
  assert sudoku.rate(inkala) == sudoku.rate(inkala.reshape(9, 9)) > 100  # deterministic
  full = sudoku.random_grid(np.random.default_rng(0))
  easy = full.copy()
  easy[[0, 40, 80]] = 0
  assert sudoku.rate(easy) == 0  # forced moves only
  clash = np.zeros(81, np.int8)
  clash[0] = clash[1] = 5
  with pytest.raises(ValueError):
    sudoku.rate(clash)


def test_generate_min_rating():
  rng = np.random.default_rng(3)
  for _ in range(2):
    puzzle, solution = sudoku.generate(rng, 26, min_rating=10)
    assert int(np.sum(puzzle > 0)) == 26 and sudoku.rate(puzzle) >= 10
    assert _is_solution(solution) and sudoku.count_solutions(puzzle) == 1
  with pytest.raises(RuntimeError, match="rated >= 100000"):
    sudoku.generate(rng, 30, max_attempts=2, min_rating=100_000)


@jax.jit
def _probe(key):
  """augment(key) on grids that are not sudokus: constant grids 1..9 [9, 81], then a grid
  of row numbers and one of column numbers (1-based) [81] each."""
  const = jnp.repeat(jnp.arange(1, 10, dtype=jnp.int32), 81).reshape(9, 81)
  by_digit = jax.vmap(sudoku.augment, (None, 0, 0))(key, const, const)[0]
  by_row = jnp.repeat(jnp.arange(1, 10, dtype=jnp.int32), 9)  # cell (r, c) = r + 1
  by_col = jnp.tile(jnp.arange(1, 10, dtype=jnp.int32), 9)  # cell (r, c) = c + 1
  return by_digit, *sudoku.augment(key, by_row, by_col)


def _transform(key):
  """The parameters `augment(key, ...)` drew, read off its outputs on probe grids:
  (digit map [10], transposed, rows [9], cols [9]) with output cell (r, c) =
  digit_map[input'[rows[r], cols[c]]], input' = input transposed or not."""
  by_digit, row_out, col_out = jax.device_get(_probe(key))
  digit_map = np.zeros(10, np.int64)
  digit_map[1:] = by_digit[:, 0]
  inverse = np.argsort(digit_map)  # digit_map is a permutation of 0..9
  out_r, out_c = (inverse[g].reshape(9, 9) - 1 for g in (row_out, col_out))
  transposed = bool(np.all(out_r == out_r[:1]))  # rows came from input columns
  if transposed:
    out_r, out_c = out_c, out_r
  assert np.all(out_r == out_r[:, :1]) and np.all(out_c == out_c[:1])
  return digit_map, transposed, out_r[:, 0], out_c[0]


def _shuffle_sudoku(grid, digit_map, transposed, rows, cols):
  """The reference's apply_transformation with given parameters (numpy)."""
  x = np.asarray(grid).reshape(9, 9)
  x = x.T if transposed else x
  mapping = np.array([rows[i // 9] * 9 + cols[i % 9] for i in range(81)])
  return digit_map[x.flatten()[mapping]]


def test_augment_matches_reference_and_preserves_validity():
  rng = np.random.default_rng(5)
  pairs = [sudoku.generate(rng, 28) for _ in range(3)]
  seen = {"transposed": set(), "digits_moved": set(), "bands_moved": set(),
          "lines_moved": set()}
  aug = jax.jit(sudoku.augment)
  for i in range(24):
    key = jax.random.key(i)
    puzzle, solution = pairs[i % 3]
    digit_map, transposed, rows, cols = _transform(key)
    assert digit_map[0] == 0 and sorted(digit_map[1:]) == list(range(1, 10))
    for perm in (rows, cols):  # band-preserving: each output band is one input band
      assert sorted(perm) == list(range(9))
      assert all(len({int(v) // 3 for v in perm[3 * b:3 * b + 3]}) == 1 for b in range(3))
    p, s = jax.device_get(aug(key, puzzle, solution))
    assert p.dtype == puzzle.dtype and p.shape == (81,)
    np.testing.assert_array_equal(p, _shuffle_sudoku(puzzle, digit_map, transposed, rows, cols))
    np.testing.assert_array_equal(s, _shuffle_sudoku(solution, digit_map, transposed, rows, cols))
    assert _is_solution(s)
    assert np.sum(p == 0) == np.sum(puzzle == 0)
    np.testing.assert_array_equal(p[p > 0], s[p > 0])
    assert sudoku.count_solutions(p) == 1
    seen["transposed"].add(transposed)
    seen["digits_moved"].add(bool(np.any(digit_map != np.arange(10))))
    seen["bands_moved"].add(bool(np.any(rows // 3 != np.arange(9) // 3)))
    seen["lines_moved"].add(bool(np.any(cols % 3 != np.arange(9) % 3)))
  # Identity digit maps or band orders are too rare (1/9!, 1/6^4) to insist on.
  assert seen["transposed"] == {False, True} and all(True in v for v in seen.values()), seen
  # vmap over a batch gives the per-example results.
  keys = jax.random.split(jax.random.key(9), 3)
  ps = np.stack([p for p, _ in pairs])
  ss = np.stack([s for _, s in pairs])
  bp, bs = jax.jit(jax.vmap(sudoku.augment))(keys, ps, ss)
  for i in range(3):
    one = aug(keys[i], ps[i], ss[i])
    np.testing.assert_array_equal(bp[i], one[0])
    np.testing.assert_array_equal(bs[i], one[1])


def test_csv_round_trip(tmp_path):
  rng = np.random.default_rng(1)
  pairs = [sudoku.generate(rng, 36) for _ in range(3)]
  puzzles = np.stack([p for p, _ in pairs])
  solutions = np.stack([s for _, s in pairs])
  path = str(tmp_path / "x.csv")
  sudoku.write_csv(path, puzzles, solutions, [0, 7, 123])
  lines = (tmp_path / "x.csv").read_text().splitlines()
  assert lines[0] == "source,question,answer,rating" and len(lines) == 4
  source, question, answer, rating = lines[1].split(",")
  assert source == "looped_jax" and len(question) == len(answer) == 81 and rating == "0"
  assert question.count(".") == 81 - 36 and answer.isdigit()
  p, s, r = sudoku.read_csv(path)
  assert p.dtype == s.dtype == np.int8 and r.dtype == np.int32
  np.testing.assert_array_equal(p, puzzles)
  np.testing.assert_array_equal(s, solutions)
  np.testing.assert_array_equal(r, [0, 7, 123])


def test_csv_errors_name_file_and_line(tmp_path):
  rng = np.random.default_rng(2)
  puzzle, solution = sudoku.generate(rng, 36)
  q = "".join(str(v) if v else "." for v in puzzle)
  a = "".join(str(v) for v in solution)
  wrong_given = q.replace(".", str(solution[np.flatnonzero(puzzle == 0)[0]] % 9 + 1), 1)
  swapped = a[1] + a[0] + a[2:]  # two cells swapped: rows still complete, columns not
  bad = {
      "header": ("source,question,solution,rating\n", "header"),
      "fields": (f"x,{q},{a}\n", "3 fields"),
      "short": (f"x,{q[:80]},{a},1\n", "question has 80 characters"),
      "char": (f"x,{q[:80]}x,{a},1\n", "question has a character"),
      "answer": (f"x,{q},{a[:80]}0,1\n", "answer has a character"),
      "rating": (f"x,{q},{a},hard\n", "rating 'hard'"),
      "invalid": (f"x,{'.' * 81},{swapped},1\n", "not a valid sudoku"),
      "disagree": (f"x,{wrong_given},{a},1\n", "disagrees"),
  }
  for name, (row, message) in bad.items():
    path = tmp_path / f"{name}.csv"
    header = "" if name == "header" else "source,question,answer,rating\n"
    path.write_text(header + f"ok,{q},{a},3\n" + row)
    line = 1 if name == "header" else 3
    with pytest.raises(ValueError, match=rf"{name}\.csv, line {line}: .*{message}"):
      sudoku.read_csv(str(path))


def test_held_out_pool_is_disjoint():
  task = sudoku.Sudoku(givens=34, pool_size=8, seed=3)
  test = task.held_out()
  assert (test.split, test.seed, test.augment) == ("test", 3, False)
  assert test.held_out() == test
  np.testing.assert_array_equal(test.puzzles, sudoku.make_pool(task.test_seed, 8, 34)[0])
  train = {p.tobytes() for p in task.puzzles}
  assert not train & {p.tobytes() for p in test.puzzles}
  aug = sudoku.Sudoku(givens=34, pool_size=8, seed=3, augment=True)
  assert aug.held_out() == test


def test_augmented_batches():
  task = sudoku.Sudoku(givens=34, pool_size=4, seed=3, augment=True)
  sample = jax.jit(task.sample, static_argnums=1)
  batch = jax.device_get(sample(jax.random.key(0), 8))
  plain = jax.device_get(jax.jit(sudoku.Sudoku(givens=34, pool_size=4, seed=3).sample,
                                 static_argnums=1)(jax.random.key(0), 8))
  pool = {p.tobytes() for p in task.puzzles.astype(np.int32)}
  assert not any(x.tobytes() in pool for x in batch["inputs"])  # all transformed
  for x, t, w in zip(batch["inputs"], batch["targets"], batch["weights"]):
    assert _is_solution(t + 1) and int(np.sum(x > 0)) == 34
    np.testing.assert_array_equal(t[x > 0] + 1, x[x > 0])
    np.testing.assert_array_equal(w, (x == 0).astype(np.float32))
    assert sudoku.count_solutions(x) == 1
  assert not np.array_equal(batch["inputs"], plain["inputs"])
  again = jax.device_get(sample(jax.random.key(0), 8))
  np.testing.assert_array_equal(again["inputs"], batch["inputs"])


def test_min_rating_pool_and_disk_cache(tmp_path, monkeypatch):
  task = sudoku.Sudoku(givens=30, pool_size=3, seed=5, min_rating=3, data_dir=str(tmp_path))
  assert all(sudoku.rate(p) >= 3 for p in task.puzzles)
  files = list((tmp_path / "sudoku_pools").iterdir())
  assert [f.name for f in files] == ["sudoku-v1-seed5-n3-givens30-rating3.npz"]
  # Another process (here: a cleared in-memory cache) reads the file, generating nothing.
  sudoku.make_pool.cache_clear()
  def no_generation(*args, **kwargs):
    raise AssertionError("regenerated a cached pool")
  monkeypatch.setattr(sudoku, "generate", no_generation)
  again = sudoku.Sudoku(givens=30, pool_size=3, seed=5, min_rating=3, data_dir=str(tmp_path))
  np.testing.assert_array_equal(again.puzzles, task.puzzles)
  np.testing.assert_array_equal(again.solutions, task.solutions)
  assert not again.puzzles.flags.writeable
  # Without data_dir the pool is the same, generated.
  monkeypatch.undo()
  np.testing.assert_array_equal(
      sudoku.Sudoku(givens=30, pool_size=3, seed=5, min_rating=3).puzzles, task.puzzles)


@pytest.mark.parametrize("config", [{"seed": 7, "test_seed": 7}, {"split": "valid"},
                                    {"min_rating": -1}, {"csv": "somewhere"}])
def test_bad_new_fields(config):
  with pytest.raises(ConfigError):
    tasks.get({"name": "sudoku", "pool_size": 1, **config})


def test_csv_folder_must_hold_both_files(tmp_path):
  (tmp_path / "train.csv").write_text("source,question,answer,rating\n")
  with pytest.raises(ConfigError, match="test.csv"):
    tasks.get({"name": "sudoku", "csv": str(tmp_path), "data_dir": str(tmp_path / "d")})
