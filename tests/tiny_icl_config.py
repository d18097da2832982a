"""A seconds-long in-context regression run for end-to-end tests: a 1-layer looped GPT-2 block
(3 loops, input injection, loop-window loss) and a 2-layer standard model on d=4 linear
regression, with a small ICL report (64 prompts, two settings, loop sweep to 30)."""

from looped_jax import tasks
from looped_jax.config import base_config


def get_config():
  c = base_config()
  c.task = tasks.default_config("linear_regression", n_dims=4, n_points=9, curriculum=False)
  m = c.model
  m.block, m.d_model, m.num_heads = "gpt2", 16, 2
  m.num_layers, m.num_loops = 1, 3
  m.injection, m.init_state = "add", "zeros"
  m.position_in_loop, m.norm_in_loop = True, True
  t = c.train
  t.num_steps, t.batch_size, t.learning_rate = 40, 16, 3e-3
  t.grad_loops, t.loss_on = 2, "window"
  t.log_every, t.checkpoint_every = 10, 20
  c.eval.every, c.eval.batch_size, c.eval.num_batches = 40, 32, 1
  c.eval.icl_prompts = 64
  c.eval.icl_settings = ("standard", "skewed")
  c.eval.icl_baselines = ("zero", "least_squares", "averaging")
  c.variants = {
      "looped": {},
      "standard": {"model": {"num_layers": 2, "num_loops": 1, "injection": "none",
                             "init_state": "input"},
                   "train": {"grad_loops": 0, "loss_on": "last"}},
  }
  return c
