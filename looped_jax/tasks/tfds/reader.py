"""Reads the looped_jax TFDS datasets into task-format batches with grain, without TensorFlow.

  source = data_source("looped_reasoning/prefix_sums", "n_bits_64", data_dir)
  for batch in batches(source, 256):      # {"inputs": int32 [B, 64], "targets": ..., ...}
    ...

`data_source` builds the dataset on first use (it is generated, nothing is downloaded).
Batches are dicts of numpy arrays with a leading batch axis [B, ...], the same keys,
dtypes and per-example shapes as `task.sample`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds

from looped_jax.tasks.base import Batch
# Importing builders registers LoopedReasoning and LoopedSudoku with TFDS.
from looped_jax.tasks.tfds import builders


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
