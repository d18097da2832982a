"""Reads the looped_jax TFDS datasets into task-format batches with grain, without TensorFlow.

  source = data_source("looped_reasoning/prefix_sums", "n_bits_64", data_dir)
  for batch in batches(source, 256):      # {"inputs": int32 [B, 64], "targets": ..., ...}
    ...

`data_source` builds the dataset on first use (it is generated, nothing is downloaded).
Batches are dicts of numpy arrays with a leading batch axis [B, ...], the same keys,
dtypes and per-example shapes as `task.sample`.

Sudoku-Extreme CSV files (train.csv, test.csv in a folder) are built with
`sudoku_csv_source(folder, "train", data_dir, num_aug=...)`; text corpora (a folder of .txt
files, or "" for Python's pydoc topics) with `text_source(folder, "train", build_dir, ...)`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import contextlib
import fcntl
import os
from typing import Any

from absl import logging as absl_logging
import grain
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import tqdm_utils

from looped_jax.tasks.base import Batch
# Importing builders registers LoopedReasoning, LoopedSudoku and SudokuCsv with TFDS,
# text_builder TextCorpus.
from looped_jax.tasks.tfds import builders
from looped_jax.tasks.tfds import text_builder


def data_source(name: str, split: str, data_dir: str, *, config: Any = None,
                build: bool = True) -> Sequence[dict[str, np.ndarray]]:
  """Random-access source of one split: `source[i]` is a dict of per-example arrays.

  name: "looped_reasoning[/config]" or "looped_sudoku[/config]"; `config` (a
  ReasoningConfig / SudokuConfig object) replaces a named one for custom sizes or seeds.
  build: generate the dataset into `data_dir` if it is not there yet.
  """
  builder_kwargs = {"config": config} if config is not None else None
  return tfds.data_source(name, split=split, data_dir=data_dir, download=build,
                          builder_kwargs=builder_kwargs)


def sudoku_csv_source(csv_dir: str, split: str, data_dir: str, *, num_aug: int = 0,
                      min_rating: int = 0, subsample: int = 0,
                      seed: int = 0) -> Sequence[dict[str, np.ndarray]]:
  """Random-access source of split "train" or "test" of the `sudoku_csv` dataset made from
  `csv_dir`/{train,test}.csv (see builders.SudokuCsvConfig for the other arguments).

  Builds it into `data_dir` on first use, under a lock file there so that concurrent
  processes build it once; later calls, from any process, reuse it.
  """
  if split not in ("train", "test"):
    raise ValueError(f"split={split!r} must be train or test")
  cfg = builders.sudoku_csv_config(csv_dir, num_aug=num_aug, min_rating=min_rating,
                                   subsample=subsample, seed=seed)
  with _file_lock(os.path.join(data_dir, ".sudoku_csv.lock")):
    builder = tfds.builder("sudoku_csv", config=cfg, data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(csv_dir)))
  if split not in builder.info.splits:
    raise ValueError(f"{os.path.join(csv_dir, split)}.csv has no puzzle rated >= "
                     f"{min_rating}; lower min_rating")
  return builder.as_data_source(split=split)


def text_builder_for(data_dir: str, build_dir: str, *, tokenizer: str = "byte",
                     vocab_size: int = 0, seq_len: int = 128,
                     held_out_fraction: float = 0.1) -> tfds.core.DatasetBuilder:
  """The prepared `text_corpus` builder of the corpus in `data_dir` ("" = pydoc topics),
  see text_builder.text_corpus_config for the other arguments.

  Builds it into `build_dir` on first use, under a lock file there so that concurrent
  processes build it once; later calls, from any process, reuse it. A BPE dataset's
  tokenizer is `builder.data_path / "tokenizer.json"`.
  """
  cfg = text_builder.text_corpus_config(data_dir, tokenizer=tokenizer, vocab_size=vocab_size,
                                        seq_len=seq_len, held_out_fraction=held_out_fraction)
  with _file_lock(os.path.join(build_dir, ".text_corpus.lock")), _quiet_tfds():
    builder = tfds.builder("text_corpus", config=cfg, data_dir=build_dir)
    kwargs = {}
    if data_dir:
      kwargs["download_config"] = tfds.download.DownloadConfig(manual_dir=os.fspath(data_dir))
    builder.download_and_prepare(**kwargs)
  return builder


@contextlib.contextmanager
def _quiet_tfds():
  """Without TFDS's progress bars and its warning that a custom config is in use: a build
  takes a second, and a training run's console should show the run."""
  level = absl_logging.get_verbosity()
  bars = tqdm_utils._active  # pylint: disable=protected-access (no public getter)
  absl_logging.set_verbosity(absl_logging.ERROR)
  tfds.display_progress_bar(False)
  try:
    yield
  finally:
    tfds.display_progress_bar(bars)
    absl_logging.set_verbosity(level)


def text_source(data_dir: str, split: str, build_dir: str, *, tokenizer: str = "byte",
                vocab_size: int = 0, seq_len: int = 128,
                held_out_fraction: float = 0.1) -> Sequence[dict[str, np.ndarray]]:
  """Random-access source of split "train" or "test" of the `text_corpus` dataset of the
  corpus in `data_dir`: `source[i]` = {"tokens": int32 [seq_len + 1]}, in stream order.
  Built on first use as `text_builder_for`."""
  if split not in ("train", "test"):
    raise ValueError(f"split={split!r} must be train or test")
  builder = text_builder_for(data_dir, build_dir, tokenizer=tokenizer, vocab_size=vocab_size,
                             seq_len=seq_len, held_out_fraction=held_out_fraction)
  return builder.as_data_source(split=split)


@contextlib.contextmanager
def _file_lock(path: str):
  """Holds an exclusive flock on `path` (created if missing) for the duration."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def dataset_seed(name: str, data_dir: str, *, config: Any = None) -> int:
  """The seed that generated the held-out data of `name` (recorded in its metadata)."""
  kwargs = {"config": config} if config is not None else {}
  return int(tfds.builder(name, data_dir=data_dir, **kwargs).info.metadata["seed"])


def batches(source: Sequence[Any], batch_size: int, *, shuffle_seed: int | None = None,
            num_epochs: int | None = 1, drop_remainder: bool = False,
            num_threads: int = 1) -> Iterator[Batch]:
  """Batches of `source` as dicts of numpy arrays [B, ...] via a grain MapDataset.

  shuffle_seed: None keeps file order (evaluation); an int shuffles globally, differently
    but deterministically per epoch. num_epochs: None repeats forever.
  drop_remainder: False keeps the last, smaller batch so evaluation sees every example.
  num_threads: grain read threads (small: the data are tiny and the CPU is shared).
  """
  ds = grain.MapDataset.source(source)
  if shuffle_seed is not None:
    ds = ds.shuffle(seed=shuffle_seed)
  if num_epochs != 1:
    ds = ds.repeat(num_epochs)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(2, num_threads))
  return iter(ds.to_iter_dataset(read_options=read))


def load(name: str, split: str, data_dir: str, batch_size: int, *, config: Any = None,
         train_seed: int | None = None, **batch_kwargs) -> Iterator[Batch]:
  """`batches(data_source(...))`; with `train_seed`, first checks the data's seed differs."""
  if train_seed is not None:
    builders.check_distinct_seeds(train_seed, dataset_seed(name, data_dir, config=config))
  return batches(data_source(name, split, data_dir, config=config), batch_size,
                 **batch_kwargs)
