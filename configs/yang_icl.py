"""Yang et al.: a looped GPT-2 block vs a deep transformer on in-context regression.

Yang, Lee, Nowak, Papailiopoulos, "Looped Transformers are Better at Learning Learning
Algorithms", ICLR 2024, arXiv 2311.12424 (docs/papers.md, "Yang et al. (2023)"); the five
function classes of Garg et al., arXiv 2208.01066.

Argument: TASK[:SIZE][:VARIANT...]. TASK: linear_regression, noisy_linear_regression,
sparse_linear_regression, decision_tree, relu2nn. SIZE: `cpu` (default), `full` (the paper's
sizes, for a GPU), `small` (d = 5, minutes on a CPU) or `check` (d = 10, 30 minutes on a
CPU). Naming variants keeps only those (`:looped` trains the looped model alone):
  looped            1 layer x b loops, input injection Y_{t+1} = f(Y_t + P), Y_0 = 0, the
                    position embedding and ln_f inside every loop, the truncated loop-window
                    loss over the last T loops and the loop curriculum T -> b (the paper's)
  standard          N layers x 1 loop (the paper's 12 layers; 6 on the CPU, 8 in `check`)
  looped_no_inject  the looped model without input injection (ablation)

Model and init as the reference code (Leiay/looped_transformer) builds them: GPT-2 blocks
(pre-LN, tanh-GELU MLP, biases), LayerNorm eps 1e-5, GPT-2's N(0, 0.02) init inside the
backbone with residual projections scaled by 1/√(2N), and PyTorch's nn.Linear default
U(±1/√fan_in) for the read-in and read-out (`model.init="reference_yang"`, models/init.py;
tests/test_yang_fidelity.py checks both against a PyTorch port).

                   (b, T) full   full d / points      CPU (b, T)   CPU d / points
  linear_regression      (20, 15)   20 / 41              (20, 10)     10 / 21
  noisy_linear_regr.     (20, 15)   20 / 41              (20, 10)     10 / 21
  sparse_linear_regr.    (20, 10)   20 / 41, s = 3       (20, 10)     10 / 21, s = 3
  decision_tree          (70, 15)   20 / 101, depth 4    (20, 10)     10 / 41, depth 4
  relu2nn                (12, 5)    20 / 101, 100 hidden (12, 5)      10 / 41, 100 hidden
(b, T) as in the paper's plotted runs (its LR launch script says b = 30).
  full   D = 256, 8 heads, Adam 1e-4, batch 64, 500k steps; dims +1 and points +2 (+5 for trees
         and ReLU nets) every 5000 steps, loops +2 every 500 steps (the paper's).
  cpu    D = 64, 4 heads, Adam 5e-4, clip 1, batch 64, 500 steps; dims and points curricula
         done by step 250, loops +5 every 100 steps (fewer loop counts, fewer compiles).
  small  cpu at d = 5 (sparse: 10), 2d + 1 points (sparse: 21), no dims or points curriculum,
         b = 10, T = 5, Adam 1e-3, batch 256, 3000 steps.
  check  cpu at batch 256, Adam 1e-3, curricula over 500 steps, 1200 steps and a time budget
         of 1800 s (`train.max_train_seconds`: a slower machine stops at the first log step
         past it), 8-layer standard model (the looped one has 0.13 of its parameters).

Commands (train, then `--mode=eval`: error vs k with the baselines, error vs loops to 10b or
500, JSON + PNG, the variants side by side):
  python -m looped_jax.main --config=configs/yang_icl.py:linear_regression:check --workdir=runs/yang_check
  python -m looped_jax.main --config=configs/yang_icl.py:linear_regression:check --workdir=runs/yang_check \
      --mode=eval
Time and expected results on a 2-core x86-64 CPU (docs/reproductions.md, "Yang et al."):
  small at the reference's batch 64 (`--config.train.batch_size=64`, 1500 steps, looped
    only): 2.5-3.7 min; leaves the zero predictor in 2 of 3 seeds (error at k = 2d = 10 of
    0.431 and 0.460; 0.125 at 3000 steps), with `model.init=gpt2` in none. With the gpt2 init
    and batch 256, 3000 steps (19 min): looped 0.039, 6 layers 0.625.
  check, batch 256 (30 min per model, `--config.mesh.host_devices=8`): normalised error at
    k = 2d = 20 looped 0.661 after 1100 steps (0.704 at 200 loops), 8 layers 0.313 after 1200
    (25 min); least squares 0, averaging 0.508, zero predictor 1.053.
  check at batch 64 (`--config.train.batch_size=64 --config.train.num_steps=20000`): 4800
    steps in 30 min, at the zero predictor (1.052) in the seed measured. Not the 0.05 at
    k = 2d within 30 minutes that a CPU check would want: that took 1800 batch-256 steps
    (about 42 min) with the gpt2 init. benchmarks/yang_torch_train.py trains a PyTorch port
    of the reference on the same batches: from our initial weights its losses equal ours to
    1.6e-7 over 2500 steps; from its own init draw it leaves the zero predictor at ~2200.
  full: for a GPU; benchmarks/gpu_checks.sh (PART=train) trains the looped model with the
    paper's settings for what a lease leaves and resumes across leases. The paper's looped
    model reaches 0.024 at k = 20 after 500k steps.
"""

from looped_jax import tasks
from looped_jax.config import base_config
from looped_jax.errors import ConfigError

# task -> ((b, T) full, (b, T) cpu, points: (full n, cpu n, start, increment))
_TASKS = {
    "linear_regression": ((20, 15), (20, 10), (41, 21, 11, 2)),
    "noisy_linear_regression": ((20, 15), (20, 10), (41, 21, 11, 2)),
    "sparse_linear_regression": ((20, 10), (20, 10), (41, 21, 11, 2)),
    "decision_tree": ((70, 15), (20, 10), (101, 41, 26, 5)),
    "relu2nn": ((12, 5), (12, 5), (101, 41, 26, 5)),
}
VARIANTS = ("looped", "standard", "looped_no_inject")


SIZES = ("cpu", "full", "small", "check")


def parse_arg(arg: str) -> tuple[str, str, tuple[str, ...]]:
  """'TASK[:SIZE][:VARIANT...]' -> (task, size, variants kept); SIZE defaults to cpu."""
  task, *rest = arg.split(":")
  if task not in _TASKS:
    raise ConfigError(f"config argument task {task!r} is unknown; choose one of "
                      f"{', '.join(_TASKS)}.")
  sizes = [r for r in rest if r in SIZES]
  if len(sizes) > 1:
    raise ConfigError(f"config argument names the sizes {sizes}; name at most one of "
                      f"{', '.join(SIZES)}.")
  keep = tuple(r for r in rest if r not in SIZES)
  for name in keep:
    if name not in VARIANTS:
      raise ConfigError(f"config argument {name!r} is neither a size ({', '.join(SIZES)}) nor a "
                        f"variant ({', '.join(VARIANTS)}).")
  return task, sizes[0] if sizes else "cpu", keep or VARIANTS


def _standard_layers(size: str) -> int:
  # check: 8, not 6, so the looped model has at most 1/6 of the standard model's parameters
  # (embeddings and readout are shared costs: 1 vs 6 blocks at D = 64 is 0.18, vs 8 is 0.13).
  return {"full": 12, "check": 8}.get(size, 6)


def get_config(arg: str = "linear_regression"):
  task, size, keep = parse_arg(arg)
  full = size == "full"
  (b, window), points = _TASKS[task][0 if full else 1], _TASKS[task][2]
  d = 20 if full else 10
  n_points = points[0] if full else points[1]
  interval = 5000 if full else (100 if size == "check" else 50)
  dims_start, points_start = 5, points[2]
  if size == "small":  # the d = 5 CPU check: no dims or points curriculum
    d = 10 if task == "sparse_linear_regression" else 5
    n_points = points[1] if task == "sparse_linear_regression" else 2 * d + 1
    b, window = 10, 5
    dims_start, points_start = d, n_points
  c = base_config()
  c.task = tasks.default_config(
      task, n_dims=d, n_points=n_points, dims_start=dims_start, dims_inc=1,
      dims_interval=interval, points_start=points_start, points_inc=points[3],
      points_interval=interval)
  m = c.model
  m.block = "gpt2"
  m.d_model, m.num_heads = (256, 8) if full else (64, 4)
  m.num_layers, m.num_loops = 1, b
  m.injection, m.init_state = "add", "zeros"
  m.position_in_loop, m.norm_in_loop = True, True
  m.unroll = 16  # the gradient window as straight-line code: faster steps (docs/performance.md)
  # The reference's numerics and init: PyTorch's LayerNorm eps, GPT-2 init inside the backbone
  # and PyTorch's nn.Linear defaults for the read-in and read-out (models/init.py).
  m.layer_norm_eps = 1e-5
  m.init = "reference_yang"
  t = c.train
  t.num_steps = 500_000 if full else 500
  t.batch_size = 64
  t.learning_rate = 1e-4 if full else 5e-4
  t.grad_clip = 0.0 if full else 1.0
  t.grad_loops, t.loss_on = window, "window"
  t.loop_curriculum = {"start": window, "increment": 2 if full else 5,
                       "every": 500 if full else 100}
  t.log_every = 100 if full else 50
  t.checkpoint_every = 10_000 if full else 500
  c.eval.every = 10_000 if full else 500
  c.eval.batch_size = 256
  c.eval.num_batches = 4 if full else 2
  c.eval.loops = (2 * b,) if full else ()  # the loop sweep is --mode=eval's job
  # --mode=eval's ICL report. CPU: fewer prompts, four settings, and no GD-trained net (about a
  # second per prompt on the CPU); Lasso at three alphas, on two settings, for sparse LR.
  c.eval.icl_prompts = 1280 if full else 320
  c.eval.icl_max_loops = 500 if full else 10 * b  # the paper reads its models at 500 loops
  if full:
    c.eval.icl_settings = ("all",)
  elif task == "sparse_linear_regression":
    c.eval.icl_settings = ("standard", "scale_x=2")
    c.eval.icl_baselines = ("zero", "least_squares", "averaging", "lasso_alpha=0.1",
                            "lasso_alpha=0.01", "lasso_alpha=0.001")
  else:
    c.eval.icl_settings = ("standard", "skewed", "scale_x=2", "noisy_y")
    if task == "relu2nn":
      c.eval.icl_baselines = ("zero", "least_squares", "3nn", "averaging")
  if size == "small":
    # Batch 256: with the gpt2 init only this batch left the zero predictor; with the
    # reference init batch 64 does too (docs/reproductions.md), and 256 stays for speed of
    # learning per step.
    t.batch_size, t.learning_rate, t.num_steps = 256, 1e-3, 3000
    t.log_every, t.checkpoint_every, c.eval.every = 250, 1000, 1000
  if size == "check":
    # The 30-minute CPU check at d = 10 (cpu's b, T and sizes): batch 256 as in small, dims
    # and points curricula over 500 steps, as many steps as fit in 30 min on 2 cores, and
    # never past 30 minutes (compiles counted): a slower machine stops at the first log step
    # after 1800 s of training, with fewer steps (summary.json says so).
    t.batch_size, t.learning_rate, t.num_steps = 256, 1e-3, 1200
    t.log_every, t.checkpoint_every, c.eval.every = 100, 400, 1200
    t.max_train_seconds = 1800.0
  variants = {
      "looped": {},
      "standard": {"model": {"num_layers": _standard_layers(size), "num_loops": 1,
                             "injection": "none", "init_state": "input"},
                   "train": {"grad_loops": 0, "loss_on": "last",
                             "loop_curriculum": {"start": 0, "increment": 0, "every": 0}},
                   "eval": {"loops": ()}},
      "looped_no_inject": {"model": {"injection": "none", "init_state": "input"}},
  }
  c.variants = {name: variants[name] for name in VARIANTS if name in keep}
  return c
