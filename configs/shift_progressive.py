"""Progressive SHIFT on the Markov language: L = 1 -> 2 -> 4, vs plain Looped-Attn at L=4.

The quick-start model and data (configs/quickstart.py). The same SCP criterion as
configs/shift_markov.py decides each transition (a fresh copy per transition); Adam moments
and the LR schedule continue through both switches. Both variants are evaluated at L=4
("eval/..."); the shift run also at L=1 and L=2 ("eval@1/...", "eval@2/...").

Command:
  python -m looped_jax.main --config=configs/shift_progressive.py --workdir=runs/shift_progressive
Time: about 3-5 minutes on a 2-core CPU.
Look at: shift/summary.json for shift/switch_step/{1,2}, shift/dip/{1,2} and
shift/recovery_steps/{1,2} (one per switch), perf/shift/stage_seconds/{0,1,2};
comparison.png for eval/accuracy/complex of both variants.
Init: `model.init="gpt2"` (the default; GPT-2's N(0, 0.02) everywhere, residual projections
scaled by 1/√(2k)): Gong et al. publish no code, so no reference init to match.
"""

import importlib.util
import os


def _shift_markov():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shift_markov.py")
  spec = importlib.util.spec_from_file_location("shift_markov", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config():
  shift_markov = _shift_markov()
  c = shift_markov.quickstart()
  c.model.num_loops = 4
  c.eval.every = 100
  c.variants = {"looped": {"model": {"num_loops": 4}},
                "shift": {"shift": {"loops": (1, 2, 4), "criterion": shift_markov.SCP}}}
  return c
