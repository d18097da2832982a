"""TFDS builders for sudoku and for the held-out test sets of the reasoning tasks.

Both write array_record files, so building and reading need tensorflow_datasets,
array_record and numpy only, never TensorFlow. Every example is a dict of per-example
arrays in the task batch format (inputs, targets, weights, plus task extras such as
`hops`), so a batch read back equals a batch from `task.sample` of the same size.

Seeds: held-out data uses `TEST_SEED` by default, distinct from the small integers used
as training seeds; `check_distinct_seeds` enforces it (docs/papers.md, "Pitfalls" 5).
"""

from __future__ import annotations

import dataclasses
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
