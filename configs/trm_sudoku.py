"""Recursive reasoning on our hard 9x9 sudoku: the Tiny Recursive Model vs the plain looped model
at equal parameters and equal training time, three seeds each, and a TRM ablation table.

Tiny Recursive Model (TRM): Jolicoeur-Martineau, "Less is More: Recursive Reasoning with Tiny
Networks", arXiv 2510.04871 (SamsungSAILMontreal/TinyRecursiveModels). Its Sudoku-Extreme run
(87.4% with the MLP-mixer variant, 74.7% with attention) uses D = 512, 2 blocks, n = 6, T = 3,
N = 16 supervision steps, batch 768, AdamW lr 1e-4 (betas 0.9 / 0.95, weight decay 1.0),
2,000 warm-up steps, EMA 0.999 and 50,000 epochs of 1,000 puzzles x 1,000 augmentations on a
GPU for a day. docs/recursive_reasoning.md says what carries over to a CPU and what does not.

Data (task `sudoku`): puzzles with 25 givens rated >= MIN_RATING backtracks by the exact
solver (`tasks/sudoku.rate`), a training pool of POOL puzzles with a fresh validity-preserving
augmentation per example (digit permutation, band / stack and row / column permutations,
transpose), and evaluation on 256 other puzzles (`Task.held_out`: test_seed). The pools are
generated once and cached in task.data_dir (default ~/.cache/looped_jax).

Model: two post_norm blocks (TRM's: post-norm RMSNorm, SwiGLU, RoPE, no biases, truncated
LeCun init, embedding x sqrt(D); `model.init="reference_trm"`), D = 64, 4 heads,
bidirectional. Scaled down for a 2-core CPU: n = 2, T = 2, N = 8, batch 32, lr 1e-3 with 100
warm-up steps, weight decay 0.1 (the reference's 1.0 at lr 1e-4 decays at the same rate
per step as 0.1 at 1e-3).

Variants (each a subfolder of the workdir, trained one after another; rerunning resumes):
  trm_s{0,1,2}           TRM: recursion "trm", deep supervision (N = 8) with halting and EMA
  looped_s{0,1,2}        the same two blocks as a plain looped model with input injection
                         (h <- f(h + e)), L = T (n + 1) = 6 loops: one TRM step's depth, all
                         loops with gradient, the ordinary last-loop loss
  trm_no_ds_s0           TRM without deep supervision: N = 8 recursion steps in one forward
                         pass, gradient through the last step only, one loss (no halting)
  trm_no_halt_s0         TRM without the halting head: every example runs all N steps
  trm_no_ema_s0          TRM evaluated with its raw weights
Every variant trains for the same time, TRAIN_SECONDS = 180 s (train.max_train_seconds; evaluation
excluded), and is evaluated once at the end at 1, 2, 4, N and 2N supervision steps (x 6 loops
for looped); TRM also with halting on at N and 2N.

Command (resumable): python -m looped_jax.main --config=configs/trm_sudoku.py --workdir=W
then python docs/scripts/trm_report.py W. The argument is SIZE[:VARIANT]: SIZE `full` or
`check` (every variant for 20 steps on small pools), VARIANT one variant's name to train
only that one (e.g. configs/trm_sudoku.py:full:trm_s0).
"""

import os

from looped_jax import config as config_lib
from looped_jax import tasks
from looped_jax.errors import ConfigError

SEEDS = (0, 1, 2)
TRAIN_SECONDS = 180.0
POOL = 2048
MIN_RATING = 5
DATA_DIR = os.path.join(os.path.expanduser("~"), ".cache", "looped_jax")
N_INNER, T_CYCLES, N_SUP = 2, 2, 8


def recursive_variants(c, *, n_inner: int, t_cycles: int, n_sup: int) -> None:
  """Sets c.variants: trm and looped over SEEDS, the three ablations on seed 0, and the
  evaluation loop counts. `c` carries the task, model and optimiser settings of a TRM run
  with deep supervision; the variants override only what differs."""
  loops = t_cycles * (n_inner + 1)  # block applications of one TRM step
  c.eval.loops = (1, 2, 4, 2 * n_sup)
  plain = {"model": {"recursion": "none", "injection": "add", "num_loops": loops,
                     "halting": False},
           "train": {"supervision_steps": 0},
           "eval": {"loops": tuple(s * loops for s in (1, 2, 4, n_sup, 2 * n_sup))}}
  ablations = {
      "trm_no_ds": {"model": {"num_loops": n_sup, "halting": False},
                    "train": {"supervision_steps": 0, "grad_loops": 1}},
      "trm_no_halt": {"model": {"halting": False}},
      "trm_no_ema": {"train": {"ema": 0.0}},
  }
  variants = {}
  for seed in SEEDS:
    seeds = {"seed": seed, "data_seed": 10 + seed}
    variants[f"trm_s{seed}"] = dict(seeds)
    variants[f"looped_s{seed}"] = plain | seeds
  for name, overrides in ablations.items():
    variants[f"{name}_s0"] = overrides | {"seed": 0, "data_seed": 10}
  c.variants = variants


def trm_model(c, *, d_model: int, n_inner: int, t_cycles: int) -> None:
  """TRM's network and recursion (the reference's numerics) on config `c`."""
  c.model.update(block="post_norm", recursion="trm", d_model=d_model, num_heads=4, num_layers=2,
                 mlp_ratio=4, use_bias=False, head_bias=False, causal=False, position="rope",
                 final_norm=False, layer_norm_eps=1e-5, init="reference_trm",
                 inner_loops=n_inner, outer_cycles=t_cycles, num_loops=1, halting=True)


def trm_training(c, *, n_sup: int, seconds: float) -> None:
  c.train.update(supervision_steps=n_sup, halt_loss_weight=0.5, halt_exploration=0.1,
                 ema=0.999, cross_entropy="stablemax", optimizer="adamw", learning_rate=1e-3,
                 b1=0.9, b2=0.95, weight_decay=0.1, schedule="warmup_constant",
                 warmup_steps=100, batch_size=32, num_steps=1_000_000,
                 max_train_seconds=seconds, log_every=25, checkpoint_every=250)
  # One evaluation, at the end (the time budget decides when): compiling the evaluation at
  # every depth costs as much as minutes of training on a CPU.
  c.eval.update(every=1_000_000, batch_size=256, num_batches=1)


def select(c, arg: str, path: str):
  """SIZE[:VARIANT] -> SIZE; keeps only VARIANT in c.variants when given."""
  size, _, only = arg.partition(":")
  if size not in ("full", "check"):
    raise ConfigError(f"{path}:{arg} is not a setting; use SIZE[:VARIANT] with SIZE full or "
                      "check.")
  if only:
    if only not in c.variants:
      raise ConfigError(f"{path}:{arg} names no variant; choose one of "
                        f"{', '.join(sorted(c.variants))}.")
    c.variants = {only: c.variants[only].to_dict()}
  return size


def get_config(arg: str = "full"):
  size = arg.partition(":")[0]
  c = config_lib.base_config()
  c.task = tasks.default_config("sudoku", givens=25, min_rating=MIN_RATING, pool_size=POOL,
                                augment=True, data_dir=DATA_DIR)
  trm_model(c, d_model=64, n_inner=N_INNER, t_cycles=T_CYCLES)
  trm_training(c, n_sup=N_SUP, seconds=TRAIN_SECONDS)
  recursive_variants(c, n_inner=N_INNER, t_cycles=T_CYCLES, n_sup=N_SUP)
  select(c, arg, "configs/trm_sudoku.py")
  if size == "check":  # every variant for a few steps, small pools
    c.task.update(pool_size=64, givens=30, min_rating=0)
    c.train.update(num_steps=20, max_train_seconds=0.0, log_every=10, checkpoint_every=20,
                   warmup_steps=5)
    c.eval.update(every=20, batch_size=32)
  return c
