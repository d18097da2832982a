"""Builds the TFDS datasets into a tmp dir and reads them back with grain, without TensorFlow."""

import sys

import jax
import numpy as np
import pytest


def test_tensorflow_is_not_installed():
  # Everything below must work without TensorFlow; this guards the premise.
  with pytest.raises(ImportError):
    import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import


# Imported after the check above so a failure there is reported first.
import tensorflow_datasets as tfds  # noqa: E402

from looped_jax import tasks  # noqa: E402
from looped_jax.errors import ConfigError  # noqa: E402
from looped_jax.tasks import sudoku  # noqa: E402
from looped_jax.tasks.sudoku_test import _is_solution, _ref_count  # noqa: E402
from looped_jax.tasks.tfds import builders, reader  # noqa: E402

tfds.disable_progress_bar()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _stack(source):
  return {k: np.stack([source[i][k] for i in range(len(source))]) for k in source[0]}


@pytest.mark.slow
def test_reasoning_build_and_read(data_dir):
  cfg = builders.reasoning_config("prefix_sums", "n_bits", (6, 11), examples_per_size=10)
  assert cfg.seed == builders.TEST_SEED
  for size in cfg.sizes:
    source = reader.data_source("looped_reasoning", cfg.split(size), data_dir, config=cfg)
    assert len(source) == 10
    task = cfg.make_task(size)
    key = jax.random.fold_in(jax.random.key(cfg.seed), size)
    want = jax.device_get(jax.jit(task.sample, static_argnums=1)(key, 10))
    got = _stack(source)
    assert set(got) == set(want)
    for k in want:
      assert got[k].dtype == want[k].dtype
      np.testing.assert_array_equal(got[k], want[k])
    # Batches in the task format, every example once, last batch kept.
    seen = list(reader.batches(source, 4))
    assert [b["inputs"].shape for b in seen] == [(4, size), (4, size), (2, size)]
    for k in want:
      np.testing.assert_array_equal(np.concatenate([b[k] for b in seen]), want[k])
  assert "tensorflow" not in sys.modules


def test_batches_shuffle_and_epochs(data_dir):
  cfg = builders.reasoning_config("prefix_sums", "n_bits", (6, 11), examples_per_size=10)
  source = reader.data_source("looped_reasoning", "n_bits_6", data_dir, config=cfg)
  plain = _stack(source)["inputs"]
  shuffled = [b["inputs"] for b in reader.batches(source, 5, shuffle_seed=0, num_epochs=2)]
  assert len(shuffled) == 4
  epochs = [np.concatenate(shuffled[:2]), np.concatenate(shuffled[2:])]
  for epoch in epochs:  # each epoch is a permutation of the split
    assert sorted(map(bytes, epoch)) == sorted(map(bytes, plain))
  again = [b["inputs"] for b in reader.batches(source, 5, shuffle_seed=0, num_epochs=2)]
  np.testing.assert_array_equal(np.concatenate(again), np.concatenate(shuffled))
  dropped = list(reader.batches(source, 4, drop_remainder=True))
  assert len(dropped) == 2


def test_load_checks_seeds(data_dir):
  cfg = builders.reasoning_config("prefix_sums", "n_bits", (6, 11), examples_per_size=10)
  assert reader.dataset_seed("looped_reasoning", data_dir, config=cfg) == builders.TEST_SEED
  batch = next(reader.load("looped_reasoning", "n_bits_11", data_dir, 10, config=cfg,
                           train_seed=0))
  assert batch["inputs"].shape == (10, 11)
  with pytest.raises(ConfigError):
    reader.load("looped_reasoning", "n_bits_11", data_dir, 10, config=cfg,
                train_seed=builders.TEST_SEED)
  with pytest.raises(ConfigError):
    builders.SudokuConfig(name="bad", train_seed=5, test_seed=5)


def test_sudoku_build_and_read(data_dir):
  cfg = builders.SudokuConfig(name="tiny", givens=36, num_train=3, num_test=4)
  train = reader.data_source("looped_sudoku", "train", data_dir, config=cfg)
  test = reader.data_source("looped_sudoku", "test", data_dir, config=cfg)
  assert (len(train), len(test)) == (3, 4)
  train_puzzles = {train[i]["inputs"].tobytes() for i in range(3)}
  for ex in (test[i] for i in range(4)):
    x = ex["inputs"]
    assert x.dtype == np.int32 and x.shape == (81,)
    assert int(np.sum(x > 0)) == 36 and _ref_count(x) == 1
    assert _is_solution(ex["targets"] + 1)
    np.testing.assert_array_equal(ex["targets"][x > 0] + 1, x[x > 0])
    np.testing.assert_array_equal(ex["weights"], (x == 0).astype(np.float32))
    assert x.tobytes() not in train_puzzles
  # The test split is exactly what the seeded generator makes under the test seed.
  rng = np.random.default_rng(builders.TEST_SEED)
  np.testing.assert_array_equal(test[0]["inputs"], sudoku.generate(rng, 36)[0])
  batch = next(reader.batches(test, 4))
  assert batch["inputs"].shape == (4, 81) and batch["weights"].dtype == np.float32
  assert reader.dataset_seed("looped_sudoku", data_dir, config=cfg) == builders.TEST_SEED
  assert "tensorflow" not in sys.modules


def test_held_out_split_names_default_configs():
  names = {c.name for c in builders.REASONING_CONFIGS}
  assert names == {"parity", "copy", "addition", "nary_addition", "prefix_sums", "p_hop"}
  assert builders.held_out_split(tasks.get({"name": "prefix_sums", "n_bits": 64})) == (
      "looped_reasoning/prefix_sums", "n_bits_64")
  assert builders.held_out_split(
      tasks.get({"name": "p_hop", "p": 8, "length": 32, "alphabet": 4})) == (
          "looped_reasoning/p_hop", "p_8")
  with pytest.raises(ConfigError):  # a size no default config holds
    builders.held_out_split(tasks.get({"name": "prefix_sums", "n_bits": 17}))
  with pytest.raises(ConfigError):  # a non-default fixed field
    builders.held_out_split(tasks.get({"name": "p_hop", "p": 4, "alphabet": 3}))
  with pytest.raises(ConfigError):  # p = 16 needs a longer sequence than the default
    builders.held_out_split(tasks.get({"name": "p_hop", "p": 16, "length": 40}))
  for cfg in builders.REASONING_CONFIGS:  # every default split is a valid task
    for size in cfg.sizes:
      assert getattr(cfg.make_task(size), cfg.size_field) == size


@pytest.fixture(scope="module")
def csv_dir(tmp_path_factory):
  """train.csv (6 puzzles) and test.csv (3) from our generator, 40 givens, true ratings."""
  folder = tmp_path_factory.mktemp("csv")
  rng = np.random.default_rng(11)
  for split, n in (("train", 6), ("test", 3)):
    pairs = [sudoku.generate(rng, 40) for _ in range(n)]
    puzzles = np.stack([p for p, _ in pairs])
    ratings = [sudoku.rate(p) + 10 * i for i, p in enumerate(puzzles)]  # distinct
    sudoku.write_csv(str(folder / f"{split}.csv"), puzzles, np.stack([s for _, s in pairs]),
                     ratings)
  return str(folder)


def _check_example(ex):
  x, t = ex["inputs"], ex["targets"]
  assert x.dtype == t.dtype == np.int32 and x.shape == t.shape == (81,)
  assert _is_solution(t + 1)
  np.testing.assert_array_equal(t[x > 0] + 1, x[x > 0])
  np.testing.assert_array_equal(ex["weights"], (x == 0).astype(np.float32))
  assert sudoku.count_solutions(x) == 1


def test_sudoku_csv_build_and_read(csv_dir, data_dir):
  rows = {split: sudoku.read_csv(f"{csv_dir}/{split}.csv") for split in ("train", "test")}
  train = reader.sudoku_csv_source(csv_dir, "train", data_dir, num_aug=2)
  test = reader.sudoku_csv_source(csv_dir, "test", data_dir, num_aug=2)
  assert (len(train), len(test)) == (6 * 3, 3)
  got = {split: [b for b in reader.batches(src, 4)] for split, src in
         (("train", train), ("test", test))}
  for split, groups in (("train", 3), ("test", 1)):
    batch = {k: np.concatenate([b[k] for b in got[split]]) for k in got[split][0]}
    puzzles, solutions, ratings = rows[split]
    for i in range(len(batch["inputs"])):
      _check_example({k: v[i] for k, v in batch.items()})
    for j in range(len(puzzles)):  # the first copy of each group is the original row
      np.testing.assert_array_equal(batch["inputs"][groups * j], puzzles[j])
      np.testing.assert_array_equal(batch["targets"][groups * j] + 1, solutions[j])
      np.testing.assert_array_equal(batch["rating"][groups * j:groups * (j + 1)], ratings[j])
      for c in range(1, groups):  # then augmented copies, with as many blanks
        x = batch["inputs"][groups * j + c]
        assert not np.array_equal(x, puzzles[j]) and np.sum(x == 0) == np.sum(puzzles[j] == 0)
  # Rebuilding is a no-op: the same data come back (also for another process).
  again = reader.sudoku_csv_source(csv_dir, "train", data_dir, num_aug=2)
  np.testing.assert_array_equal(again[4]["inputs"], train[4]["inputs"])
  assert "tensorflow" not in sys.modules


def test_sudoku_csv_rating_and_subsample(csv_dir, data_dir):
  _, _, ratings = sudoku.read_csv(f"{csv_dir}/train.csv")
  cut = int(np.sort(ratings)[2])
  kept = reader.sudoku_csv_source(csv_dir, "train", data_dir, min_rating=cut)
  assert [int(kept[i]["rating"]) for i in range(len(kept))] == [r for r in ratings if r >= cut]
  sub = reader.sudoku_csv_source(csv_dir, "train", data_dir, subsample=2, seed=1)
  assert len(sub) == 2
  assert len(reader.sudoku_csv_source(csv_dir, "test", data_dir, subsample=2)) == 3
  with pytest.raises(ConfigError):
    builders.SudokuCsvConfig(name="bad", num_aug=-1)


def test_sudoku_task_from_csv(csv_dir, data_dir):
  train_p, train_s, ratings = sudoku.read_csv(f"{csv_dir}/train.csv")
  test_p, _, _ = sudoku.read_csv(f"{csv_dir}/test.csv")
  task = tasks.get({"name": "sudoku", "csv": csv_dir, "data_dir": data_dir, "pool_size": 0})
  np.testing.assert_array_equal(task.puzzles, train_p)
  np.testing.assert_array_equal(task.solutions, train_s)
  np.testing.assert_array_equal(task.held_out().puzzles, test_p)
  capped = sudoku.Sudoku(csv=csv_dir, data_dir=data_dir, pool_size=4, seed=2)
  assert len(capped.puzzles) == 4
  assert {p.tobytes() for p in capped.puzzles} <= {p.tobytes() for p in train_p}
  assert len(capped.held_out().puzzles) == 3  # the cap exceeds test.csv: all rows
  hard = sudoku.Sudoku(csv=csv_dir, data_dir=data_dir, pool_size=0,
                       min_rating=int(np.sort(ratings)[3]))
  assert len(hard.puzzles) == 3
  with pytest.raises(ValueError, match="test.csv has no puzzle rated >= "):
    hard.held_out()  # every test rating is below the cut
  batch = jax.device_get(jax.jit(task.sample, static_argnums=1)(jax.random.key(0), 8))
  for i in range(8):
    _check_example({k: v[i] for k, v in batch.items()})
  with pytest.raises(ConfigError, match="data_dir"):
    tasks.get({"name": "sudoku", "csv": csv_dir})
