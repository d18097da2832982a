"""Gong et al.'s toy at the paper's horizon: Single vs Looped vs SHIFT, three seeds each.

Gong et al., "What Makes Looped Transformers Perform Better Than Non-Recursive Ones", arXiv
2510.10089; docs/papers.md, "Gong et al. (2025)". Results: docs/reproductions.md, "Gong et al.
(arXiv 2510.10089) at the paper's horizon".

Model, data and Hessian settings from configs/gong_landscape.py: one attention-only softmax layer (D=16, 1 head,
no MLP) on the Markov mixture (V=16, n=32), Adam 1e-3, batch 64. An "epoch" here is 100 steps
(6,400 sequences; the paper does not give its dataset size), and the run is 250 epochs
(25,000 steps): the paper's complex-group rise comes after epoch 150.

Variants (one process trains them one after another in name order, each into workdir/<name>;
rerunning the command resumes the unfinished one and skips the finished ones):
  looped_s{0,1,2}  Looped-Attn, L=3;
  single_s{0,1,2}  Single-Attn, L=1, the same init and batches as looped_sK;
  shift_s{0,1,2}   SHIFT, L=1 then L=3 when SCP fires on the train loss, scaled to the horizon:
                   relative improvement per 1,000 steps below 1 % for 3 checks in a row;
                   Adam moments and the LR schedule continue through the switch.
Seed K sets the init (seed=K) and the training batches (data_seed=10+K); the eval batches
(1,024 sequences every 500 steps) and the Hessian probe batch are the same for all nine.
Single and Looped take the exact float64 Hessian of the attention block (hessian.subset
"layers/attn": QKV + output projection, 1,088 parameters; all eigenvalues kept in
spectra.jsonl) every 1,000 steps on a fixed probe batch of 64 sequences; SHIFT takes none,
so its train time has no Hessian in it (it is excluded from perf/train_seconds anyway).

Command (resumable; `:small` is 1/50 of the steps, two spectra per run, ~7 minutes):
  python -m looped_jax.main --config=configs/gong_horizon.py --workdir=runs/gong_horizon
  python docs/scripts/gong_horizon_report.py runs/gong_horizon   # bands, tables, verdicts
Time: 93 minutes on a loaded 2-core CPU (each Looped-Attn spectrum ~25 s, Single ~10 s).
Measured (three seeds): complex accuracy Looped - Single +0.26 [0.00, 0.66] points; thresholds
1-4 not met, 5 met only vacuously (docs/reproductions.md).

Thresholds, fixed before the run (docs/reproductions.md applies them; means over seeds):
  1. complex group: Looped-Attn ends >= 3 points above Single-Attn (accuracy against the
     sampled token), ahead in every seed;
  2. late rise: from epoch 150 to the end Looped-Attn's complex accuracy rises >= 2 points
     while Single-Attn's rises < 1 point;
  3. Assumption 1: at the last spectrum Looped-Attn has more valley eigenvalues in (eps, tau)
     and a larger Theorem 1 sum C = sum 1/lambda over them than Single-Attn, eps = 1e-2 *
     lambda_max, tau = 0.1 * lambda_max, in every seed;
  4. phases: Looped-Attn's spectral entropy falls to an interior minimum (Collapse), then rises
     by >= 0.2 nats (Diversification) and its last three spectra lie within 0.05 nats
     (Stabilization); Single-Attn's does not fall and rise so;
  5. SHIFT: ends within 1 point of Looped-Attn's final complex accuracy and reaches Looped-Attn's
     final complex accuracy minus 1 point in <= 0.7x Looped-Attn's train time.
Init: `model.init="gpt2"` (the default): Gong et al. publish no code, so no reference init.
"""

import importlib.util
import os

from looped_jax.errors import ConfigError

SEEDS = (0, 1, 2)
LOOPS = 3
STEPS = 25_000
SCALE = {"full": 1, "small": 50}  # every length divided by this


def gong_landscape():
  """configs/gong_landscape.py's config: the model, data, optimiser and Hessian settings."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gong_landscape.py")
  spec = importlib.util.spec_from_file_location("gong_landscape", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def horizon_scp(scale: int) -> dict:
  """SCP (docs/papers.md, "SHIFT") at the horizon: the check every 1,000 steps, not 100."""
  return {"kind": "scp", "signal": "train_loss", "every": 1000 // scale, "patience": 3,
          "delta1": 0.01}


def get_config(arg: str = "full"):
  if arg not in SCALE:
    raise ConfigError(f"configs/gong_horizon.py:{arg} is not a setting; choose one of "
                      f"{', '.join(SCALE)}.")
  scale = SCALE[arg]
  c = gong_landscape()
  c.model.num_loops = LOOPS  # eval loop count of every variant
  t = c.train
  t.num_steps = STEPS // scale
  t.log_every = 100 // scale
  t.checkpoint_every = 1000 // scale
  c.eval.every = 500 // scale
  c.hessian.every = 1000 if scale == 1 else t.num_steps // 2  # :small: two spectra, not 25
  c.hessian.probe_batch_size = 64
  variants = {}
  for k in SEEDS:
    seeds = {"seed": k, "data_seed": 10 + k}
    variants[f"looped_s{k}"] = seeds | {"model": {"num_loops": LOOPS}}
    variants[f"single_s{k}"] = seeds | {"model": {"num_loops": 1}}
    variants[f"shift_s{k}"] = seeds | {"hessian": {"every": 0},
                                       "shift": {"loops": (1, LOOPS),
                                                 "criterion": horizon_scp(scale)}}
  c.variants = variants  # a ConfigDict keeps its keys sorted: the runs go in name order
  return c
