"""p-hop induction: k⊗L at equal effective depth (Saunshi et al. §7; PAPERS.md).

p = 4 hops over an alphabet of 4, sequences of 32 tokens (only the last position is scored).
GPT-2 blocks, D=32. Variants: 1⊗L (one block looped L times) and L⊗1 (L distinct blocks
once) for L in {1, 2, 4, 8}; 1⊗1 = L⊗1 at L = 1 is run once ("k1_L1").

Command:
  python -m looped_jax.main --config=configs/p_hop.py --workdir=runs/p_hop
Time: 339 s for the seven runs on the shared 2-core CPU.
Measured (docs/reproductions.md, "p-hop: k⊗L"), eval accuracy at 800 steps: 1⊗1 0.399,
1⊗2 0.398, 1⊗4 0.390, 1⊗8 0.270; 2⊗1 0.416, 4⊗1 0.398, 8⊗1 0.403: under-trained, no
separation yet.
"""

from looped_jax import tasks
from looped_jax.config import base_config

DEPTHS = (1, 2, 4, 8)


def get_config():
  c = base_config()
  c.task = tasks.default_config("p_hop", length=32, p=4, alphabet=4)
  m = c.model
  m.block = "gpt2"
  m.d_model = 32
  m.num_heads = 2
  t = c.train
  t.num_steps = 800
  t.batch_size = 64
  t.learning_rate = 1e-3
  t.grad_clip = 1.0
  t.log_every = 100
  t.checkpoint_every = 400
  c.eval.every = 400
  c.eval.batch_size = 512
  c.eval.num_batches = 2
  variants = {f"k1_L{l}": {"model": {"num_layers": 1, "num_loops": l}} for l in DEPTHS}
  variants |= {f"k{l}_L1": {"model": {"num_layers": l, "num_loops": 1}} for l in DEPTHS[1:]}
  c.variants = variants
  return c
