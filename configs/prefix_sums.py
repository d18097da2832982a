"""Prefix sums, five recall / outer-norm settings (Labovich; Bansal et al.).

Labovich, "Stability and Generalization in Looped Transformers", arXiv 2604.15259; Bansal et
al., "End-to-end Algorithm Synthesis with Recurrent Networks", arXiv 2202.05826; docs/papers.md.

One looped GPT-2 block (k=1), trained on 16-bit prefix parities at L=8 loops, then swept at
test time from 1 to 64 loops (8x) on 16, 32 and 64 bits with adaptive exit and fixed-point
diagnostics (`--mode=eval`, analysis/loop_sweep.py). Variants:

  norecall          injection none,     no outer norm
  norecall_norm     injection none,     outer RMS norm after every loop
  recall            injection concat,   no outer norm   (h <- F(W[h; e]), Bansal/Geiping)
  recall_norm       injection concat,   outer RMS norm
  internal_norm     internal recall,    outer RMS norm  (W_x e into every MLP input)

Positions (the config argument):
  learned (default)  learned absolute positions for 64 slots (the longest test); only the first
                     16 are trained, so length extrapolation cannot come from them.
  rope               rotary positions inside attention (relative; no learned slots), the same
                     five settings otherwise: the control for the positional explanation.

Commands (train, then the sweep; for :rope use its own workdir, e.g. runs/prefix_rope):
  python -m looped_jax.main --config=configs/prefix_sums.py --workdir=runs/prefix_sums
  python -m looped_jax.main --config=configs/prefix_sums.py --workdir=runs/prefix_sums --mode=eval
  python -m looped_jax.analysis.loop_sweep runs/prefix_sums   # table + loop_sweep.png
Time: 691 s training (five settings) + 430 s sweep on the shared 2-core CPU.
Measured (docs/reproductions.md, "Prefix sums: recall and outer norm"): 16-bit sequence
accuracy at 8 / 64 loops: no recall 0.133 / 0.043, no recall + norm 0.734 / 0.461, recall
0.070 / 0.352, recall + norm 0.004 / 0.000, internal + norm 0.270 / 0.262; 0.000 for all at
32 and 64 bits (positions past 16 untrained). :rope (5.5 min training + 4.4 min sweep, quiet
machine): 16 bits at 8 / 64 loops 0.414 / 0.027, 0.289 / 0.336, 0.582 / 0.742, 0.250 / 0.000,
0.473 / 0.461 (same order); on 32 bits only internal + norm extrapolates, 0.000 at 8 loops ->
0.258 at 64; 64 bits 0.008 at best.
Init: `model.init="gpt2"` (the default; GPT-2's N(0, 0.02) everywhere, residual projections
scaled by 1/√(2k)): no reference code is matched here.
"""

from looped_jax import tasks
from looped_jax.config import base_config
from looped_jax.errors import ConfigError

POSITIONS = ("learned", "rope")


def get_config(arg: str = "learned"):
  if arg not in POSITIONS:
    raise ConfigError(f"configs/prefix_sums.py:{arg} is not a position scheme; choose one of "
                      f"{', '.join(POSITIONS)}.")
  c = base_config()
  c.task = tasks.default_config("prefix_sums", n_bits=16)
  m = c.model
  m.block = "gpt2"
  m.d_model = 32
  m.num_heads = 2
  m.num_layers = 1
  m.num_loops = 8
  m.max_len = 64
  m.position = arg
  t = c.train
  t.num_steps = 1000
  t.batch_size = 64
  t.learning_rate = 1e-3
  t.grad_clip = 1.0
  t.log_every = 100
  t.checkpoint_every = 500
  c.eval.every = 500
  c.eval.batch_size = 256
  c.eval.num_batches = 2
  ls = c.eval.loop_sweep
  ls.max_factor = 8
  ls.tasks = {"bits32": {"n_bits": 32}, "bits64": {"n_bits": 64}}
  ls.batch_size = 256
  ls.diagnose_examples = 16
  c.variants = {
      "norecall": {"model": {"injection": "none", "state_norm": "none"}},
      "norecall_norm": {"model": {"injection": "none", "state_norm": "rms"}},
      "recall": {"model": {"injection": "concat", "state_norm": "none"}},
      "recall_norm": {"model": {"injection": "concat", "state_norm": "rms"}},
      "internal_norm": {"model": {"injection": "internal", "state_norm": "rms"}},
  }
  return c
