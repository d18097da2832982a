"""Yang et al. (ICLR 2024) §2: a looped GPT-2 block vs a deep transformer on in-context
linear regression.

Looped model: one GPT-2 block (pre-LN, GELU MLP) applied b times with additive input injection
`Y_{t+1} = f(Y_t + P)`, Y_0 = 0, the position embedding and ln_f inside every loop, trained
with the truncated loop-window loss (the last T loops' predictions, all positions) and the
loop curriculum T -> b (+2 every 500 steps). Variants, same width and data:
  looped            1 layer x b loops (the paper's model)
  looped_no_inject  the same without input injection (ablation: drifting iterates expected)
  standard          N layers x 1 loop (the paper's 12-layer baseline)
Prompts: x ~ N(0, I_d), w ~ N(0, I_d), y = w.x, interleaved (x_i, [y_i, 0..0]); dims and
points curricula as in the paper, scaled to the step budget on the CPU.

Commands:
  python -m looped_jax.main --config=configs/yang_linear_regression.py --workdir=runs/yang_lr
  python -m looped_jax.main --config=configs/yang_linear_regression.py:full --workdir=runs/yang_lr_full
Time: the CPU default (d=10, D=64, b=20, T=10, 5k steps per variant) is sized for about 30
minutes per variant on a 2-core CPU; `:full` (d=20, D=256, 8 heads, b=20, T=15, 500k steps,
12-layer baseline) needs a GPU.
Expected (PAPERS.md §2.6-2.7): normalised error at k=2d below 0.05 for the looped model,
within 1.5x of the standard model with <= 1/6 of its parameters, and no blow-up at 10x b
loops (`eval@200/...`); at full scale 0.52 / 0.06 / 0.024 at k = 10 / 19 / 20. Our measured
numbers go to docs/reproductions.md once recorded.
"""

from looped_jax import tasks
from looped_jax.config import base_config


def get_config(arg: str = "cpu"):
  full = arg == "full"
  d, b, window = (20, 20, 15) if full else (10, 20, 10)
  c = base_config()
  c.task = tasks.default_config(
      "linear_regression", n_dims=d, n_points=2 * d + 1, dims_start=5,
      dims_interval=5000 if full else 400, points_start=11, points_inc=2,
      points_interval=5000 if full else 400)
  m = c.model
  m.block = "gpt2"
  m.d_model, m.num_heads = (256, 8) if full else (64, 4)
  m.num_layers, m.num_loops = 1, b
  m.injection, m.init_state = "add", "zeros"
  m.position_in_loop, m.norm_in_loop = True, True
  m.unroll = 16  # the T-loop gradient window as straight-line code: faster steps on CPU
  t = c.train
  t.num_steps = 500_000 if full else 5000
  t.batch_size = 64
  t.learning_rate = 1e-4 if full else 3e-4
  t.grad_loops, t.loss_on = window, "window"
  t.loop_curriculum = {"start": window, "increment": 2, "every": 500 if full else 200}
  t.log_every = 100
  t.checkpoint_every = 1000
  c.eval.every = 1000
  c.eval.batch_size = 256
  c.eval.num_batches = 4
  c.eval.loops = (2 * b, 10 * b)
  standard = {"model": {"num_layers": 12 if full else 6, "num_loops": 1, "injection": "none",
                        "init_state": "input"},
              "train": {"grad_loops": 0, "loss_on": "last",
                        "loop_curriculum": {"start": 0, "increment": 0, "every": 0}},
              "eval": {"loops": ()}}
  c.variants = {
      "looped": {},
      "looped_no_inject": {"model": {"injection": "none", "init_state": "input"}},
      "standard": standard,
  }
  return c
