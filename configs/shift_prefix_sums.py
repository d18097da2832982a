"""SHIFT vs plain looped training on prefix sums, tested at twice the training length.

SHIFT as in Gong et al., arXiv 2510.10089 (docs/papers.md, "SHIFT"); the model is
configs/prefix_sums.py:rope's setting that extrapolates (Labovich, arXiv 2604.15259): one
GPT-2 block with internal recall, an outer RMS norm and rotary positions, L=8, trained on
16-bit prefix parities. Results: docs/reproductions.md, "SHIFT on an algorithmic task, tested at
twice the training length".

Variants, three seeds each (seed=K for the init, data_seed=10+K for the batches):
  looped_sK  L=8 from step 0;
  shift_sK   L=1 until SCP fires on the train loss (relative improvement per 100 steps below
             1 % for 3 checks in a row), then L=8; Adam moments and the LR schedule continue.
Both are evaluated at L=8 during training (16 bits); `--mode=eval` then sweeps 1-16 loops on
16 and 32 bits (2x the training length) into each run's loop_sweep.json.

Commands:
  python -m looped_jax.main --config=configs/shift_prefix_sums.py --workdir=runs/shift_prefix
  python -m looped_jax.main --config=configs/shift_prefix_sums.py --workdir=runs/shift_prefix \
      --mode=eval
  python docs/scripts/shift_report.py runs/shift_prefix --metric=eval/accuracy \
      --length_setting=bits32
Time: 13 minutes for the six runs and their sweeps on a loaded 2-core CPU.
Measured: SHIFT 6.5 [-18.8, +2.2] points below Looped at 16 bits and 4.2 [-11.5, +1.7] at
32 bits (mean [min, max] over seeds): not met.
Thresholds, fixed before the run (means over seeds): SHIFT's per-token accuracy on 32 bits at
L=8 within 1 point of Looped's, and its train time to Looped's final 16-bit accuracy minus 1
point at most 0.7x Looped's train time.
Init: `model.init="gpt2"` (the default): no reference code is matched here.
"""

import importlib.util
import os

SEEDS = (0, 1, 2)
LOOPS = 8
SCP = {"kind": "scp", "signal": "train_loss", "every": 100, "patience": 3, "delta1": 0.01}


def prefix_sums_rope():
  """configs/prefix_sums.py:rope's config: the task, the block and its optimiser."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prefix_sums.py")
  spec = importlib.util.spec_from_file_location("prefix_sums", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config("rope")


def get_config():
  c = prefix_sums_rope()
  m = c.model
  m.num_loops = LOOPS  # eval loop count; the train loop count is the stage's under SHIFT
  m.injection = "internal"  # the setting of prefix_sums.py that extrapolates
  m.state_norm = "rms"
  m.max_len = 0  # the default: rope has no learned slots (prefix_sums.py sizes 64 for learned)
  t = c.train
  t.num_steps = 1500
  t.log_every = 50
  c.eval.every = 100
  ls = c.eval.loop_sweep
  ls.max_factor = 2
  ls.tasks = {"bits32": {"n_bits": 32}}
  ls.batch_size = 512
  ls.diagnose_examples = 0
  variants = {}
  for k in SEEDS:
    seeds = {"seed": k, "data_seed": 10 + k}
    variants[f"looped_s{k}"] = seeds
    variants[f"shift_s{k}"] = seeds | {"shift": {"loops": (1, LOOPS), "criterion": SCP}}
  c.variants = variants
  return c
