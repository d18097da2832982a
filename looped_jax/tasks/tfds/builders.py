"""TFDS builders for sudoku (generated, or read from Sudoku-Extreme CSV files) and for the
held-out test sets of the reasoning tasks.

All write array_record files, so building and reading need tensorflow_datasets,
array_record and numpy only, never TensorFlow. Every example is a dict of per-example
arrays in the task batch format (inputs, targets, weights, plus task extras such as
`hops`), so a batch read back equals a batch from `task.sample` of the same size.

Seeds: held-out data uses `TEST_SEED` by default, distinct from the small integers used
as training seeds; `check_distinct_seeds` enforces it (docs/papers.md, "Pitfalls" 5).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from typing import Any

from etils import epath
import jax
import numpy as np
import tensorflow_datasets as tfds

from looped_jax import tasks
from looped_jax.errors import ConfigError
from looped_jax.tasks import sudoku

TEST_SEED = 1_000_003


def check_distinct_seeds(train_seed: int, test_seed: int) -> None:
  """Raises ConfigError if held-out data would be drawn with a training seed."""
  if train_seed == test_seed:
    raise ConfigError(f"test seed {test_seed} equals the training seed; held-out data must "
                      "use a different seed.")


class _ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder):
  """Defaults the file format to array_record, the random-access, TF-free format."""

  # TFDS 4.9.10 finds a builder's code through `importlib_resources`, which it does not
  # install on Python >= 3.9 (tensorflow/datasets#11212). Nothing is read next to this
  # code (no checksums, no metadata files), so name the file directly.
  code_path = epath.Path(__file__)

  def __init__(self, *, file_format=None, **kwargs):
    super().__init__(file_format=file_format or "array_record", **kwargs)


def _features(shapes: dict[str, jax.ShapeDtypeStruct]) -> tfds.features.FeaturesDict:
  """One Tensor feature per batch array, dropping the batch axis; other axes stay free so
  every split of a config (one size each) shares the features."""
  return tfds.features.FeaturesDict({
      k: tfds.features.Tensor(shape=(None,) * (len(s.shape) - 1), dtype=np.dtype(s.dtype))
      for k, s in shapes.items()})


@dataclasses.dataclass(eq=False)
class ReasoningConfig(tfds.core.BuilderConfig):
  """Test sets of registered task `task` at several values of its size field.

  Split `<size_field>_<size>` holds `examples_per_size` examples of
  `tasks.get({"name": task, **fixed, size_field: size})`, drawn in one batch with key
  `fold_in(key(seed), size)`.
  """

  task: str = ""
  size_field: str = ""
  sizes: tuple[int, ...] = ()
  fixed: tuple[tuple[str, Any], ...] = ()
  examples_per_size: int = 1000
  seed: int = TEST_SEED

  def make_task(self, size: int) -> tasks.Task:
    return tasks.get({"name": self.task, **dict(self.fixed), self.size_field: size})

  def split(self, size: int) -> str:
    return f"{self.size_field}_{size}"


def reasoning_config(task: str, size_field: str, sizes, *, examples_per_size: int = 1000,
                     seed: int = TEST_SEED, **fixed) -> ReasoningConfig:
  """A ReasoningConfig whose name spells out everything that changes its data."""
  parts = [task, *(f"{k}{v}" for k, v in sorted(fixed.items())),
           f"{size_field}{'+'.join(map(str, sizes))}", f"n{examples_per_size}", f"seed{seed}"]
  return ReasoningConfig(name="-".join(parts).replace("_", ""), task=task,
                         size_field=size_field, sizes=tuple(sizes),
                         fixed=tuple(sorted(fixed.items())),
                         examples_per_size=examples_per_size, seed=seed)


def _default(task, size_field, sizes, description, **fixed) -> ReasoningConfig:
  return ReasoningConfig(name=task, task=task, size_field=size_field, sizes=tuple(sizes),
                         fixed=tuple(sorted(fixed.items())), description=description)


# Train at the first size (or below), test out to the last: the extrapolation protocol.
REASONING_CONFIGS = (
    _default("parity", "n_bits", (8, 16, 32, 64, 128), "parity of n bits"),
    _default("copy", "length", (8, 16, 32, 64), "copy a string, alphabet 8", alphabet=8),
    _default("addition", "digits", (4, 8, 16, 32, 64), "two-operand decimal addition"),
    _default("nary_addition", "operands", (2, 4, 8, 16, 32), "n 2-digit decimal numbers",
             digits=2),
    _default("prefix_sums", "n_bits", (16, 32, 64, 128, 256, 512), "prefix parities"),
    _default("p_hop", "p", (1, 2, 4, 8), "p-hop induction, length 32, alphabet 4",
             length=32, alphabet=4),
)


class LoopedReasoning(_ArrayRecordBuilder):
  """Held-out test sets for the reasoning tasks, one config per task, one split per size."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = list(REASONING_CONFIGS)

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    task = cfg.make_task(cfg.sizes[0])
    shapes = jax.eval_shape(lambda k: task.sample(k, 1), jax.random.key(0))
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"{cfg.task} test sets over {cfg.size_field} in {cfg.sizes}.",
        features=_features(shapes),
        disable_shuffling=True,  # records stay in generation order
        metadata=tfds.core.MetadataDict(
            task=cfg.task, size_field=cfg.size_field, sizes=list(cfg.sizes),
            fixed=dict(cfg.fixed), seed=cfg.seed, examples_per_size=cfg.examples_per_size))

  def _split_generators(self, dl_manager):
    del dl_manager  # generated, nothing to download
    cfg = self.builder_config
    return {cfg.split(size): self._generate_examples(size) for size in cfg.sizes}

  def _generate_examples(self, size: int):
    cfg = self.builder_config
    task = cfg.make_task(size)
    key = jax.random.fold_in(jax.random.key(cfg.seed), size)
    batch = jax.device_get(jax.jit(task.sample, static_argnums=1)(key, cfg.examples_per_size))
    for i in range(cfg.examples_per_size):
      yield i, {k: v[i] for k, v in batch.items()}


def held_out_split(task: tasks.Task) -> tuple[str, str]:
  """(dataset name, split) of the default LoopedReasoning test set holding `task`.

  Raises ConfigError when no default config matches the task's fields and size.
  """
  fields = dataclasses.asdict(task)
  defaults = {f.name: f.default for f in dataclasses.fields(task)}
  for cfg in REASONING_CONFIGS:
    if cfg.task != task.name:
      continue
    size = fields[cfg.size_field]
    want = defaults | dict(cfg.fixed)
    same = all(fields[k] == want[k] for k in fields if k != cfg.size_field)
    if same and size in cfg.sizes:
      return f"looped_reasoning/{cfg.name}", cfg.split(size)
  raise ConfigError(f"no held-out looped_reasoning split for {task}; build one with "
                    "builders.reasoning_config(...).")


@dataclasses.dataclass(eq=False)
class SudokuConfig(tfds.core.BuilderConfig):
  """`num_train` / `num_test` unique-solution puzzles with exactly `givens` clues."""

  givens: int = 30
  num_train: int = 10_000
  num_test: int = 1_000
  train_seed: int = 0
  test_seed: int = TEST_SEED

  def __post_init__(self):
    check_distinct_seeds(self.train_seed, self.test_seed)


class LoopedSudoku(_ArrayRecordBuilder):
  """Sudoku puzzles in the `sudoku` task format (weights on blanks).

  Features per example: inputs int32 [81] (0 blank, 1-9 given), targets int32 [81]
  (solution digit - 1), weights float32 [81] (1 on blanks). Generation is pure
  python: ~20 ms per puzzle at 30 givens, ~0.15 s at 24.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      SudokuConfig(name="givens36", givens=36, description="easy: 36 givens"),
      SudokuConfig(name="givens30", givens=30, description="medium: 30 givens"),
      SudokuConfig(name="givens25", givens=25, description="hard: 25 givens"),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"Unique-solution 9x9 sudoku with {cfg.givens} givens.",
        features=tfds.features.FeaturesDict({
            "inputs": tfds.features.Tensor(shape=(81,), dtype=np.int32),
            "targets": tfds.features.Tensor(shape=(81,), dtype=np.int32),
            "weights": tfds.features.Tensor(shape=(81,), dtype=np.float32),
        }),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(givens=cfg.givens, train_seed=cfg.train_seed,
                                        seed=cfg.test_seed))

  def _split_generators(self, dl_manager):
    del dl_manager
    cfg = self.builder_config
    return {"train": self._generate_examples(cfg.train_seed, cfg.num_train),
            "test": self._generate_examples(cfg.test_seed, cfg.num_test)}

  def _generate_examples(self, seed: int, num: int):
    rng = np.random.default_rng(seed)
    for i in range(num):
      puzzle, solution = sudoku.generate(rng, self.builder_config.givens)
      yield i, {"inputs": puzzle.astype(np.int32),
                "targets": solution.astype(np.int32) - 1,
                "weights": (puzzle == 0).astype(np.float32)}


def csv_digest(csv_dir: str) -> str:
  """12 hex digits of sha256 over train.csv and test.csv of `csv_dir` (a few seconds for
  the full Sudoku-Extreme set; memoized per file size and modification time)."""
  stats = []
  for name in ("train.csv", "test.csv"):
    path = os.path.abspath(os.path.join(os.fspath(csv_dir), name))
    st = os.stat(path)
    stats.append((path, st.st_size, st.st_mtime_ns))
  return _digest(tuple(stats))


@functools.lru_cache(maxsize=16)
def _digest(stats: tuple[tuple[str, int, int], ...]) -> str:
  h = hashlib.sha256()
  for path, _, _ in stats:
    with open(path, "rb") as f:
      h.update(hashlib.file_digest(f, "sha256").digest())
  return h.hexdigest()[:12]


@dataclasses.dataclass(eq=False)
class SudokuCsvConfig(tfds.core.BuilderConfig):
  """How to turn a Sudoku-Extreme CSV folder into examples.

  num_aug: augmented copies (`sudoku.augment`) written after each training puzzle, so
    train holds (1 + num_aug) consecutive examples per puzzle, the original first; the
    test split is never augmented (as the reference builder).
  min_rating: rows rated below it are skipped (both splits; a split left empty is not
    written, and reading it raises).
  subsample: keep this many training puzzles, drawn without replacement with `seed` and
    kept in file order, before augmentation (0 = all; test is never subsampled).
  seed: for subsample and augmentation (puzzle i of the kept rows augments with keys from
    fold_in(key(seed), i), whatever the chunking).
  csv_digest: `csv_digest` of the folder this config was made for (checked at build);
    empty for the named configs, which therefore assume one CSV folder per data_dir.
  """

  num_aug: int = 0
  min_rating: int = 0
  subsample: int = 0
  seed: int = 0
  csv_digest: str = ""

  def __post_init__(self):
    for field in ("num_aug", "min_rating", "subsample"):
      if getattr(self, field) < 0:
        raise ConfigError(f"{field}={getattr(self, field)} must be >= 0")


def sudoku_csv_config(csv_dir: str | None = None, *, num_aug: int = 0, min_rating: int = 0,
                      subsample: int = 0, seed: int = 0) -> SudokuCsvConfig:
  """A SudokuCsvConfig whose name spells out everything that changes its data, including
  the digest of `csv_dir`'s files, so that several CSV folders share one data_dir."""
  digest = csv_digest(csv_dir) if csv_dir is not None else ""
  parts = [f"csv{digest}" if digest else "csv", f"aug{num_aug}", f"rating{min_rating}",
           f"sub{subsample}", f"seed{seed}"]
  return SudokuCsvConfig(name="-".join(parts), num_aug=num_aug, min_rating=min_rating,
                         subsample=subsample, seed=seed, csv_digest=digest)


class SudokuCsv(_ArrayRecordBuilder):
  """Sudoku-Extreme style CSV files (header source,question,answer,rating) in the `sudoku`
  task format, read from the manual dir; the reference's augmentation and subsampling.

  Features per example: inputs int32 [81] (0 blank, 1-9 given), targets int32 [81]
  (solution digit - 1), weights float32 [81] (1 on blanks), rating int32 [] (the file's
  rating, copied to augmented copies). Splits: train, test, in file order.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Put train.csv and test.csv with header source,question,answer,rating (question: 81 "
      "characters, '.' for a blank; answer: 81 digits) in the manual dir, e.g. the files "
      "of the Hugging Face dataset sapientinc/sudoku-extreme, and pass it as "
      "DownloadConfig(manual_dir=...) (reader.sudoku_csv_source does).")
  BUILDER_CONFIGS = [
      SudokuCsvConfig(name="full", description="every row, no augmentation"),
      # TinyRecursiveModels' Sudoku-Extreme-1K: 1000 training puzzles x 1001 copies.
      SudokuCsvConfig(name="1k_aug1000", subsample=1000, num_aug=1000,
                      description="1000 training puzzles, 1000 augmentations each"),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description="Sudoku puzzles from Sudoku-Extreme format CSV files.",
        features=tfds.features.FeaturesDict({
            "inputs": tfds.features.Tensor(shape=(81,), dtype=np.int32),
            "targets": tfds.features.Tensor(shape=(81,), dtype=np.int32),
            "weights": tfds.features.Tensor(shape=(81,), dtype=np.float32),
            "rating": tfds.features.Tensor(shape=(), dtype=np.int32),
        }),
        disable_shuffling=True,  # augmented copies follow their original
        metadata=tfds.core.MetadataDict(num_aug=cfg.num_aug, min_rating=cfg.min_rating,
                                        subsample=cfg.subsample, seed=cfg.seed,
                                        csv_digest=cfg.csv_digest))

  def _split_generators(self, dl_manager):
    folder = dl_manager.manual_dir
    cfg = self.builder_config
    if cfg.csv_digest and csv_digest(folder) != cfg.csv_digest:
      raise ValueError(f"the CSV files in {folder} are not those config {cfg.name} was "
                       "made for; make the config with sudoku_csv_config(that folder)")
    splits = {}
    for split in ("train", "test"):
      rows = sudoku.read_csv(os.fspath(folder / f"{split}.csv"))
      keep = np.flatnonzero(rows[2] >= cfg.min_rating)
      if split == "train" and 0 < cfg.subsample < len(keep):
        pick = np.random.default_rng(cfg.seed).choice(len(keep), cfg.subsample, replace=False)
        keep = keep[np.sort(pick)]
      if len(keep):  # TFDS cannot write an empty split: such a split is left out
        splits[split] = self._generate_examples(rows, keep, split == "train")
    return splits

  def _generate_examples(self, rows, keep: np.ndarray, train: bool):
    cfg = self.builder_config
    puzzles, solutions, ratings = rows
    num_aug = cfg.num_aug if train else 0
    index = 0
    for start, copies in _augmented_chunks(puzzles[keep], solutions[keep], num_aug,
                                           cfg.seed):
      for j, group in enumerate(copies):
        rating = np.int32(ratings[keep[start + j]])
        for puzzle, solution in group:
          yield index, {"inputs": puzzle.astype(np.int32),
                        "targets": solution.astype(np.int32) - 1,
                        "weights": (puzzle == 0).astype(np.float32),
                        "rating": rating}
          index += 1


def _augmented_chunks(puzzles: np.ndarray, solutions: np.ndarray, num_aug: int, seed: int):
  """Yields (start, groups): groups[j] lists (puzzle, solution) [81] pairs of puzzle
  start + j, the original first, then `num_aug` `sudoku.augment` copies."""
  chunk = max(1, 2**16 // max(num_aug, 1))  # ~10 MB of augmented grids per step

  @jax.jit
  def augment(index, p, s):  # [C], [C, 81], [C, 81] -> [C, num_aug, 81] twice
    def copies(i, puzzle, solution):
      keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), i), num_aug)
      return jax.vmap(sudoku.augment, (0, None, None))(keys, puzzle, solution)
    return jax.vmap(copies)(index, p, s)

  for start in range(0, len(puzzles), chunk):
    p, s = puzzles[start:start + chunk], solutions[start:start + chunk]
    if num_aug:
      ap, as_ = jax.device_get(augment(np.arange(start, start + len(p), dtype=np.int32), p, s))
    groups = []
    for j in range(len(p)):
      group = [(p[j], s[j])]
      if num_aug:
        group += list(zip(ap[j], as_[j]))
      groups.append(group)
    yield start, groups
