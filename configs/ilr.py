"""Intra-layer recurrence on a byte-level language model (Nguyen & Lin).

Nguyen & Lin, "Intra-Layer Recurrence in Transformers for Language Modeling", arXiv
2505.01855; docs/papers.md, "Intra-layer recurrence". A standard 4-layer GPT-2 model
(D = 128, 4 heads, rotary positions, one pass: model.num_loops = 1) whose layers are each
applied r_i times in a row (`model.layer_loops`), on the `text_lm` task of configs/looped_lm.py
(bytes of the Python documentation's topic texts, 64 per sequence). The variants spend one
extra layer application, on the first or on the last layer, against the plain stack:

  base    (1, 1, 1, 1)   4 layer applications
  first   (2, 1, 1, 1)   5: the extra pass on the earliest layer (the paper's best allocation)
  last    (1, 1, 1, 2)   5: the extra pass on the last layer

The paper's finding, reconstructed at small scale: at equal compute, recurrence in early
layers lowers the held-out loss more than in late ones (first < last), and both beat base.
The argument `check` runs every variant for 10 steps (a smoke test).

  python -m looped_jax.main --config=configs/ilr.py --workdir=runs/ilr_s0 --config.seed=0
  python docs/scripts/ilr_report.py runs/ilr_s0 runs/ilr_s1 runs/ilr_s2

docs/reproductions.md, "Intra-layer recurrence", has the measured bits per byte (three seeds).
"""

from looped_jax import config as config_lib
from looped_jax import tasks
from looped_jax.errors import ConfigError

NUM_STEPS = 1000
ALLOCATIONS = {"base": (1, 1, 1, 1), "first": (2, 1, 1, 1), "last": (1, 1, 1, 2)}
ARGS = ("all", "check")


def get_config(arg: str = "all"):
  if arg not in ARGS:
    raise ConfigError(f"configs/ilr.py:{arg} is not an option; choose one of {', '.join(ARGS)}.")
  c = config_lib.base_config()
  c.task = tasks.default_config("text_lm", length=64)
  c.model.update(block="gpt2", d_model=128, num_heads=4, mlp_ratio=4, num_layers=4,
                 num_loops=1, position="rope", dropout=0.0)
  c.train.update(num_steps=NUM_STEPS, batch_size=16, optimizer="adamw", learning_rate=1e-3,
                 weight_decay=0.1, b2=0.95, schedule="warmup_constant", warmup_steps=200,
                 grad_clip=1.0, log_every=50, checkpoint_every=500)
  c.eval.update(every=500, batch_size=64, num_batches=4)
  c.variants = {name: {"model": {"layer_loops": r}} for name, r in ALLOCATIONS.items()}
  if arg == "check":
    c.train.update(num_steps=10, log_every=5, checkpoint_every=10)
    c.eval.update(every=10, num_batches=1)
  return c
