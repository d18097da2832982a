"""River-valley landscape of Single- vs Looped-Attn over training (Gong et al.).

Gong et al., "What Makes Looped Transformers Perform Better Than Non-Recursive Ones", arXiv
2510.10089; docs/papers.md, "Gong et al. (2025)".

Gong's toy: one attention-only softmax layer (D=16, 1 head) on the Markov mixture (V=16,
n=32), Adam 1e-3. Variants single (L=1) and looped (L=3) share init, data and the probe
batch. Every 250 steps the trainer takes the exact float64 Hessian of the attention block
only (hessian.subset "layers/attn": qkv + out, 1,088 params) on a fixed probe batch of 128
sequences at the variant's loop count, and logs hessian/... metrics and all eigenvalues.

Command:
  python -m looped_jax.main --config=configs/gong_landscape.py --workdir=runs/gong_landscape
  python -m looped_jax.main --config=configs/gong_landscape.py --workdir=runs/gong_landscape \
      --mode=hessian          # hessian.json of each variant's latest checkpoint
Time (measured, docs/reproductions.md): 30.5 min wall on the shared 2-core CPU while other
jobs loaded it (the run got 47% of the machine; 14.6 CPU-minutes). Each L=3 spectrum (a
1,088^2 dense Hessian in 32-HVP chunks over 128x32 tokens) takes ~1-2 minutes of that.
Measured at step 2000 (looped vs single): eval loss 2.277 vs 2.317, simple acc 0.457 vs
0.437, complex acc 0.087 vs 0.091; lambda_max 210 vs 31; kappa(H_valley)@1e-2 99.5 vs 98.9.
Look at: spectra.png (per-variant heatmap of the spectrum over steps: Collapse ->
Diversification -> Stabilization expected for looped only; kappa(H_valley), river dimension
and Theorem 1's C side by side), comparison.png (the complex-accuracy rise that
Diversification should coincide with), */spectra.jsonl for all eigenvalues, and
hessian/kappa_valley@1e-02 (the paper expects looped >> single; see the docs for why this
definition pins it near 1/0.01 on a dense spectrum).
Init: `model.init="gpt2"` (the default; GPT-2's N(0, 0.02) everywhere, residual projections
scaled by 1/√(2k)): Gong et al. publish no code, so no reference init to match.
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
  h.probe_batch_size = 128
  c.variants = {"single": {"model": {"num_loops": 1}}, "looped": {"model": {"num_loops": 3}}}
  return c
