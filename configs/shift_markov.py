"""SHIFT on the Markov language: Single-Attn -> Looped-Attn (L=3) vs plain Looped-Attn.

SHIFT as in Gong et al., arXiv 2510.10089 (docs/papers.md, "SHIFT").

The quick-start model and data (configs/quickstart.py): one attention-only layer (D=32) on a
mixture of near-deterministic and high-entropy Markov chains (V=16, n=32). Two variants with
the same step budget:
  looped  plain Looped-Attn, L=3 from step 0;
  shift   L=1 until the SHIFT Criterion with Patience (SCP) fires on the train loss (relative
          improvement per 100 steps below 1 % for 3 checks in a row), then L=3. Adam moments
          and the LR schedule continue through the switch (shift.moments/lr = "keep").
Both are evaluated at L=3 ("eval/..."); the shift run also at L=1 ("eval@1/...").

Scales (the config argument):
  quick (default)  the quick-start model and data above, 1,500 steps; a step is so small that
                   dispatch, not compute, sets its time (an L=1 step is not 1/3 of an L=3 one);
  medium           D=64, 4 heads, n=64, 1,200 steps: compute-bound enough that an L=1 step
                   costs well under an L=3 one;
  large            D=128, 4 heads, n=64, 1,000 steps.
  Batch 64 and the SCP settings are the same in all three.

Command:
  python -m looped_jax.main --config=configs/shift_markov.py[:medium|:large] \
      --workdir=runs/shift_markov
Time: quick about 2-4 minutes on a 2-core CPU; medium about 4-6; large about 6-9.
Look at: comparison.png; shift/summary.json for shift/switch_step, shift/dip/1 (accuracy at
the trained loop count just before minus just after the switch; a sharp dip is expected,
pitfall 7, not divergence), shift/recovery_steps/1 and perf/shift/stage_seconds/{0,1}
(a stage-0 step costs about 1/3 of a looped one); eval/accuracy/complex of both variants.
benchmarks/shift_vs_looped.py turns this into wall-clock-to-accuracy numbers.
Init: `model.init="gpt2"` (the default; GPT-2's N(0, 0.02) everywhere, residual projections
scaled by 1/√(2k)): Gong et al. publish no code, so no reference init to match.
"""

import importlib.util
import os

from looped_jax.errors import ConfigError

SCP = {"kind": "scp", "signal": "train_loss", "every": 100, "patience": 3, "delta1": 0.01}


def quickstart():
  """configs/quickstart.py's config (loaded by path: config files are not a package)."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quickstart.py")
  spec = importlib.util.spec_from_file_location("quickstart", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


SCALES = {"quick": None,  # (d_model, num_heads, length, num_steps)
          "medium": (64, 4, 64, 1200), "large": (128, 4, 64, 1000)}


def get_config(arg: str = "quick"):
  if arg not in SCALES:
    raise ConfigError(f"configs/shift_markov.py:{arg} is not a scale; choose one of "
                     f"{', '.join(SCALES)}.")
  c = quickstart()
  if SCALES[arg]:
    c.model.d_model, c.model.num_heads, c.task.length, c.train.num_steps = SCALES[arg]
  c.model.num_loops = 3  # eval loop count; the train loop count is the stage's under SHIFT
  c.eval.every = 100
  c.variants = {"looped": {"model": {"num_loops": 3}},
                "shift": {"shift": {"loops": (1, 3), "criterion": SCP}}}
  return c
