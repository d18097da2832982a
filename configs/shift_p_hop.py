"""SHIFT on p-hop induction: Single (L=1) -> looped (L=4) vs plain looped at L=4.

SHIFT as in Gong et al., arXiv 2510.10089; p-hop as in Saunshi et al., arXiv 2502.17416.

p-hop (looped_jax/tasks/reasoning.py; p = 1 hop, `:p2` for two; alphabet 4, n = 16):
follow p "previous occurrence, then one step right" hops back from the last token and
predict the token reached; only the last position is scored (chance 1/alphabet). One hop
already needs two attention layers in sequence (an induction head), so a single
application of the shared GPT-2 block cannot solve it and looping matters. Two variants
with the same step budget:
  looped  plain looped block, L=4 from step 0;
  shift   L=1 until SCP fires on the train loss (relative improvement per 100 steps below
          1 % for 3 checks in a row), then L=4; Adam moments and LR continue.
Both are evaluated at L=4 ("eval/..."); the shift run also at L=1 ("eval@1/...").

Command:
  python -m looped_jax.main --config=configs/shift_p_hop.py[:p2] --workdir=runs/shift_p_hop
  PYTHONPATH=. python benchmarks/shift_vs_looped.py --config=configs/shift_p_hop.py \
      --metric=eval/accuracy --name=shift_vs_looped_p_hop
Time: about 4-5 minutes for both variants on a loaded 2-core CPU (800 steps).
Look at: eval/accuracy of both variants (comparison.png); shift/summary.json for
shift/switch_step, shift/dip/1 and perf/shift/stage_seconds/{0,1}.
Init: `model.init="gpt2"` (the default; GPT-2's N(0, 0.02) everywhere, residual projections
scaled by 1/√(2k)): no reference code is matched here.
"""

from looped_jax import tasks
from looped_jax.config import base_config
from looped_jax.errors import ConfigError

LOOPS = 4
SCP = {"kind": "scp", "signal": "train_loss", "every": 100, "patience": 3, "delta1": 0.01}


def get_config(arg: str = "p1"):
  hops = {"p1": 1, "p2": 2}
  if arg not in hops:
    raise ConfigError(f"configs/shift_p_hop.py:{arg} is not a variant; choose one of p1, p2.")
  c = base_config()
  c.task = tasks.default_config("p_hop", length=16, p=hops[arg], alphabet=4)
  c.model.block = "gpt2"
  c.model.d_model = 64
  c.model.num_heads = 4
  c.model.num_loops = LOOPS  # eval loop count; the train loop count is the stage's under SHIFT
  c.train.num_steps = 800
  c.train.batch_size = 64
  c.train.learning_rate = 1e-3
  c.train.log_every = 50
  c.train.checkpoint_every = 500
  c.eval.every = 100
  c.eval.batch_size = 512
  c.eval.num_batches = 1
  c.variants = {"looped": {"model": {"num_loops": LOOPS}},
                "shift": {"shift": {"loops": (1, LOOPS), "criterion": SCP}}}
  return c
