"""Recursive reasoning on mazes: the Tiny Recursive Model vs the plain looped model at equal
parameters and equal training time, three seeds each, and the TRM ablation table.

The task is HRM / TRM's Maze-Hard (shortest path on a 30 x 30 grid, path length > 110; the
TRM reaches 85.3%) generated here at CPU scale: `maze` with 5 x 5 cells (11 x 11 squares,
121 tokens), three extra openings (so loops exist and the target is the unique shortest
path), paths of at least MIN_PATH moves, a training pool of POOL mazes with a random dihedral
transform per example, and 256 held-out mazes (test_seed) for evaluation. Every open square
is scored: path or not (docs/recursive_reasoning.md).

Model, optimiser, variants and time budget: configs/trm_sudoku.py (two post_norm blocks,
D = 64, n = 2, T = 2, N = 8 supervision steps, halting, EMA 0.999, stablemax; looped: the same
blocks, L = 6 loops; ablations on seed 0); TRAIN_SECONDS (300 s) of training each.

Command (resumable): python -m looped_jax.main --config=configs/trm_maze.py --workdir=W
then python docs/scripts/trm_report.py W. The argument is SIZE[:VARIANT] as in
configs/trm_sudoku.py (`check`: every variant for 20 steps; `full:trm_s0`: that variant only).
"""

import importlib.util
import os

from looped_jax import tasks
from looped_jax.errors import ConfigError

POOL = 4096
MIN_PATH = 16
TRAIN_SECONDS = 300.0  # per variant (configs/trm_sudoku.py's 180 s: its pools cost minutes)


def trm_sudoku():
  """configs/trm_sudoku.py as a module: its model, training and variant settings."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "trm_sudoku.py")
  spec = importlib.util.spec_from_file_location("trm_sudoku", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg: str = "full"):
  base = trm_sudoku()
  size = arg.partition(":")[0]
  if size not in ("full", "check"):
    raise ConfigError(f"configs/trm_maze.py:{arg} is not a setting; use SIZE[:VARIANT] with "
                      "SIZE full or check.")
  c = base.get_config(size)
  base.select(c, arg, "configs/trm_maze.py")
  c.task = tasks.default_config("maze", cells=5, extra_openings=3, min_path=MIN_PATH,
                                pool_size=POOL, augment=True)
  if size == "full":
    c.train.max_train_seconds = TRAIN_SECONDS
  if size == "check":
    c.task.update(pool_size=64)
  return c
