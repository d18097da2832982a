"""A seconds-long run for end-to-end tests: Looped-Attn on a small Markov language."""

from looped_jax import tasks
from looped_jax.config import base_config


def get_config():
  c = base_config()
  c.task = tasks.default_config("markov", vocab=8, length=16)
  c.model.block = "attn_only"
  c.model.d_model = 16
  c.model.num_heads = 2
  c.model.num_loops = 3
  c.train.num_steps = 60
  c.train.batch_size = 16
  c.train.log_every = 10
  c.train.checkpoint_every = 20
  c.eval.every = 30
  c.eval.batch_size = 32
  c.eval.num_batches = 1
  return c
