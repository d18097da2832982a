"""p-hop induction: k⊗L at equal effective depth (Saunshi et al.).

Saunshi et al., "Reasoning with Latent Thoughts: On the Power of Looped Transformers", arXiv
2502.17416; docs/papers.md, "Saunshi et al. (2025)".

Settings (the config argument); only the last position is scored, chance 1/alphabet:
  p4 (default)  p = 4 hops, alphabet 4, 32 tokens; GPT-2 blocks D=32, 2 heads; 800 steps.
  p2            p = 2 hops, alphabet 4, 16 tokens; D=64, 4 heads; 1,500 steps (the size at
                which configs/shift_p_hop.py's looped block learns one hop in ~700 steps).
  p2_long       p2 for 6,000 steps, L in {1, 4} only.
  p2_long_l28   p2 for 6,000 steps, L in {1, 2, 8}.
  p2_check_l2   p2 for 24,000 steps, L in {1, 2}.
  p2_check_l48  p2 for 12,000 steps, L in {1, 4, 8}.
Variants: 1⊗L (one block looped L times) and L⊗1 (L distinct blocks once) for L in
{1, 2, 4, 8}; 1⊗1 = L⊗1 at L = 1 is run once ("k1_L1").

Command:
  python -m looped_jax.main --config=configs/p_hop.py[:p2] --workdir=runs/p_hop
Time: p4 339 s for the seven runs on the shared, loaded 2-core CPU; p2_check_l2 20 min and
p2_check_l48 62 min on the quiet 2-core CPU.
Measured (docs/reproductions.md, "p-hop: k⊗L"), eval accuracy at 800 steps: 1⊗1 0.399,
1⊗2 0.398, 1⊗4 0.390, 1⊗8 0.270; 2⊗1 0.416, 4⊗1 0.398, 8⊗1 0.403: under-trained, no
separation yet. p2 at 1,500 steps: 1⊗1 0.448; 1⊗2/4/8 0.497/0.481/0.403; 2⊗1/4⊗1/8⊗1
0.514/0.500/0.511 (10 min, quiet machine). p2_long at 6,000 steps: 1⊗1 0.458, 1⊗4 0.879,
4⊗1 0.972 (12.5 min). p2_long_l28: 1⊗2 0.662, 2⊗1 0.719, 1⊗8 0.713, 8⊗1 0.965 (30 min).
The check (1⊗L within 5 points of L⊗1, both >= 30 points above 1⊗1) is met by
p2_check_l2 at 24,000 steps: 1⊗1 0.517, 1⊗2 0.990, 2⊗1 0.976; and by p2_check_l48 at
12,000 steps: 1⊗1 0.493, 1⊗4 0.997, 4⊗1 0.997, 1⊗8 1.000, 8⊗1 0.997.
Init: `model.init="gpt2"` (the default; GPT-2's N(0, 0.02) everywhere, residual projections
scaled by 1/√(2k)): no reference code is matched here.
"""

from looped_jax import tasks
from looped_jax.config import base_config
from looped_jax.errors import ConfigError

DEPTHS = (1, 2, 4, 8)
# name -> (hops p, sequence length, width D, heads, steps, effective depths L)
SETTINGS = {"p4": (4, 32, 32, 2, 800, DEPTHS),
            "p2": (2, 16, 64, 4, 1500, DEPTHS),
            "p2_long": (2, 16, 64, 4, 6000, (1, 4)),  # split in two: each fits about 30 CPU minutes
            "p2_long_l28": (2, 16, 64, 4, 6000, (1, 2, 8)),
            # The recorded check: 1⊗2 learns the two hops more slowly than 2⊗1, so L = 2 runs
            # twice as long as L in {4, 8}.
            "p2_check_l2": (2, 16, 64, 4, 24000, (1, 2)),
            "p2_check_l48": (2, 16, 64, 4, 12000, (1, 4, 8))}


def get_config(arg: str = "p4"):
  if arg not in SETTINGS:
    raise ConfigError(f"configs/p_hop.py:{arg} is not a setting; choose one of "
                      f"{', '.join(SETTINGS)}.")
  hops, length, width, heads, steps, depths = SETTINGS[arg]
  c = base_config()
  c.task = tasks.default_config("p_hop", length=length, p=hops, alphabet=4)
  m = c.model
  m.block = "gpt2"
  m.d_model = width
  m.num_heads = heads
  t = c.train
  t.num_steps = steps
  t.batch_size = 64
  t.learning_rate = 1e-3
  t.grad_clip = 1.0
  t.log_every = 50
  t.checkpoint_every = min(steps // 2, 1000)
  c.eval.every = min(steps // 2, 1000)
  c.eval.batch_size = 512
  c.eval.num_batches = 2
  variants = {f"k1_L{l}": {"model": {"num_layers": 1, "num_loops": l}} for l in depths}
  variants |= {f"k{l}_L1": {"model": {"num_layers": l, "num_loops": 1}} for l in depths[1:]}
  c.variants = variants
  return c
