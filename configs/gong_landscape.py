"""River-valley landscape of Single- vs Looped-Attn over training (Gong et al., PAPERS.md §1.4-1.5).

Gong's toy: one attention-only softmax layer (D=16, 1 head) on the Markov mixture (V=16,
n=32), Adam 1e-3. Variants single (L=1) and looped (L=3) share init, data and the probe
batch. Every 250 steps the trainer takes the exact float64 Hessian of the attention block
only (hessian.subset "layers/attn": qkv + out, 1,088 params) on a fixed probe batch of 256
sequences at the variant's loop count, and logs hessian/... metrics and all eigenvalues.

Command:
  python -m looped_jax.main --config=configs/gong_landscape.py --workdir=runs/gong_landscape
  python -m looped_jax.main --config=configs/gong_landscape.py --workdir=runs/gong_landscape \
      --mode=hessian          # hessian.json of each variant's latest checkpoint
Time: NOT measured end to end. On a loaded 2-core CPU one looped (L=3) spectrum took
~1-2 minutes (a 1,088^2 dense Hessian in 32-HVP chunks over 256x32 tokens), so 9 spectra
per variant add ~15-30 minutes to training; lower hessian.probe_batch_size or raise
hessian.every for a faster pass. Only a 30-step smoke run (looped variant) was tried.
Look at: spectra.png (per-variant heatmap of the spectrum over steps: Collapse ->
Diversification -> Stabilization expected for looped only; kappa(H_valley), river dimension
and Theorem 1's C side by side), comparison.png (the complex-accuracy rise that
Diversification should coincide with), */spectra.jsonl for all eigenvalues, and
hessian/kappa_valley@1e-02 (expected: looped >> single, River-V vs River-U valley).
"""

from looped_jax import tasks
from looped_jax.config import base_config


def get_config():
  c = base_config()
  c.task = tasks.default_config("markov", vocab=16, length=32, variant="mixture")
  c.model.block = "attn_only"
  c.model.attention = "softmax"
  c.model.d_model = 16
  c.model.num_heads = 1
  c.model.num_loops = 3
  c.train.num_steps = 2000
  c.train.batch_size = 64
  c.train.optimizer = "adam"
  c.train.learning_rate = 1e-3
  c.train.log_every = 50
  c.train.checkpoint_every = 500
  c.eval.every = 250
  c.eval.batch_size = 512
  c.eval.num_batches = 2
  h = c.hessian
  h.every = 250
  h.method = "exact"
  h.subset = "layers/attn"
  h.probe_batch_size = 256
  c.variants = {"single": {"model": {"num_loops": 1}}, "looped": {"model": {"num_loops": 3}}}
  return c
