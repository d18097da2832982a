"""Single-Attn vs Looped-Attn on the Markov language, sample-level dynamics (Gong et al.).

Gong et al., "What Makes Looped Transformers Perform Better Than Non-Recursive Ones", arXiv
2510.10089; docs/papers.md, "Gong et al. (2025)".

One attention-only softmax layer (D=16, 1 head, no MLP) on next-token prediction over a
mixture of near-deterministic and high-entropy order-1 chains (V=16, n=32; docs/papers.md,
"Markov language with Information Content", variant (b)); the same parameter tree trained at
L=1 (single) and L=3 (looped). Adam 1e-3, batch 64, 15k steps (150 "epochs" of 100 steps,
as configs/gong_horizon.py counts them; that config runs 250 epochs, three seeds). Per-group
eval accuracy ("simple" / "complex" by Information Content) every 500 steps gives the
sample-level dynamics.

Command:
  python -m looped_jax.main --config=configs/gong_markov.py --workdir=runs/gong_markov
  (`:small` runs 3k steps for a quick look)
Time: about 6-10 minutes on a 2-core CPU (`:small`: 1-2 minutes).
Expected (our thresholds, docs/papers.md, "Small-scale check"): simple-group accuracy saturates
for both; on the complex group Looped-Attn ends >= 3 points above Single-Attn. comparison.png
shows both.
Init: `model.init="gpt2"` (the default; GPT-2's N(0, 0.02) everywhere, residual projections
scaled by 1/√(2k)): Gong et al. publish no code, so no reference init to match.
"""

from looped_jax import tasks
from looped_jax.config import base_config
from looped_jax.errors import ConfigError


STEPS = {"full": 15000, "small": 3000}


def get_config(arg: str = "full"):
  if arg not in STEPS:
    raise ConfigError(f"configs/gong_markov.py:{arg} is not a setting; choose one of "
                      f"{', '.join(STEPS)}.")
  c = base_config()
  c.task = tasks.default_config("markov", vocab=16, length=32, variant="mixture")
  c.model.block = "attn_only"
  c.model.attention = "softmax"
  c.model.d_model = 16
  c.model.num_heads = 1
  c.model.num_loops = 3
  c.train.num_steps = STEPS[arg]
  c.train.batch_size = 64
  c.train.learning_rate = 1e-3
  c.train.log_every = 100
  c.train.checkpoint_every = 1000
  c.eval.every = 500
  c.eval.batch_size = 512
  c.eval.num_batches = 2
  c.variants = {"single": {"model": {"num_loops": 1}}, "looped": {"model": {"num_loops": 3}}}
  return c
