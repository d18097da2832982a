"""A small looped language model on text, then generation from it.

Byte-level next-token prediction (`text_lm`, 257 ids, sequences of 64 bytes) on the default
corpus: the Python documentation's topic texts that ship with every Python install
(`pydoc_data.topics`, about 465k characters; 10% of the text held out). Point
--config.task.data_dir at a folder of .txt files to train on your own text, and set
--config.task.tokenizer=bpe for a byte-level BPE trained on it.

The model is k = 2 distinct GPT-2 blocks looped L = 3 times (D = 128, 4 heads, rotary
positions, input injection); the argument picks a variant:

  looped     (default) the 2 x 3 looped model
  standard   the same 2 blocks once (L = 1): the looped model's one-pass baseline
  deep       6 distinct blocks once: a standard model of the looped model's depth
  plt        the Parallel Loop Transformer: 2 x 3 with cross-loop parallelism and G-SWA
  ouro       the looped model with Ouro's exit gate and entropy-regularised objective
  check      `looped` for 20 steps (a smoke test)

Each trains for NUM_STEPS steps of 16 sequences (resumable), then:

  python -m looped_jax.main --config=configs/looped_lm.py --workdir=W
  python -m looped_jax.main --config=configs/looped_lm.py --workdir=W --mode=generate \\
      --config.generate.prompt="The with statement"

Generation options (looped_jax/config.py, `generate`): loop count, cache strategy,
per-token exit criterion and threshold, sampling. docs/looped_lm.md has the measured
perplexities and exit trade-offs, with their commands.
"""

from looped_jax import config as config_lib
from looped_jax import tasks
from looped_jax.errors import ConfigError

NUM_STEPS = 1000  # equal steps (not equal time): comparisons immune to a busy machine
VARIANTS = ("looped", "standard", "deep", "plt", "ouro", "check")


def get_config(arg: str = "looped"):
  if arg not in VARIANTS:
    raise ConfigError(f"configs/looped_lm.py:{arg} is not a variant; choose one of "
                      f"{', '.join(VARIANTS)}.")
  c = config_lib.base_config()
  c.task = tasks.default_config("text_lm", length=64)
  m = c.model
  m.update(block="gpt2", d_model=128, num_heads=4, mlp_ratio=4, num_layers=2, num_loops=3,
           injection="add", position="rope", dropout=0.0)
  if arg == "standard":
    m.num_loops = 1
  elif arg == "deep":
    m.update(num_layers=6, num_loops=1)
  elif arg == "plt":
    m.update(plt=True, plt_window=16)
  elif arg == "ouro":
    m.exit_gate = True
    c.train.exit_gate_entropy = 0.05
  t = c.train
  t.update(num_steps=NUM_STEPS, batch_size=16,
           optimizer="adamw", learning_rate=1e-3, weight_decay=0.1, b2=0.95,
           schedule="warmup_constant", warmup_steps=200, grad_clip=1.0, log_every=50,
           checkpoint_every=500)
  c.eval.update(every=500, batch_size=64, num_batches=4, loops=(1, 2, 4, 6))
  if arg == "check":
    t.update(num_steps=20, log_every=10, checkpoint_every=20)
    c.eval.update(every=20, num_batches=1, loops=())
    c.generate.max_new_tokens = 16
  return c
