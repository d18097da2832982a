"""Quick start: Looped-Attn vs Single-Attn on the Markov language (Gong et al., 2510.10089).

One attention-only layer (softmax, D=32) trained on next-token prediction over a mixture of
near-deterministic and high-entropy Markov chains (V=16, n=32). The same parameter tree runs
once (single, L=1) and three times (looped, L=3). Writes per-run metrics (JSONL,
TensorBoard), orbax checkpoints and `comparison.png` (loss and simple/complex accuracy).

Command:
  python -m looped_jax.main --config=configs/quickstart.py --workdir=runs/quickstart
Time: about 1-2 minutes on a 2-core CPU (README quick start).
Expected: both models reach the same simple-group accuracy; see docs/reproductions.md for
the numbers of a recorded run.
Init: `model.init="gpt2"` (the default; GPT-2's N(0, 0.02) everywhere, residual projections
scaled by 1/√(2k)): no reference code is matched here.
"""

from looped_jax import tasks
from looped_jax.config import base_config


def get_config():
  c = base_config()
  c.task = tasks.default_config("markov", vocab=16, length=32, variant="mixture")
  c.model.block = "attn_only"
  c.model.d_model = 32
  c.model.num_heads = 1
  c.model.num_loops = 3
  c.train.num_steps = 1500
  c.train.batch_size = 64
  c.train.learning_rate = 1e-3
  c.train.log_every = 50
  c.train.checkpoint_every = 500
  c.eval.every = 250
  c.eval.batch_size = 512
  c.eval.num_batches = 2
  c.variants = {"single": {"model": {"num_loops": 1}}, "looped": {"model": {"num_loops": 3}}}
  return c
