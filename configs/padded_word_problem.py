"""Padding and log-depth looping on the group word problem (Merrill & Sabharwal).

Merrill & Sabharwal, "Exact Expressive Power of Transformers with Padding", arXiv 2505.18948;
docs/papers.md, "Padding and log-depth looping". Padded transformers looped O(log^d n) times
recognise exactly TC^d: a fixed-depth model (TC^0) cannot track the state of an NC^1-complete
word problem at growing length, one looped ceil(c * log2 n) times can. The task is
`word_problem` (tasks/depth.py): n group elements, the answer (their product) read at the
last position, which follows p(n) = n pad tokens where the regime pads.

For each length n in LENGTHS, four regimes (variant `<regime>_n<n>`), and at the longest
length a fifth:

  depth     fixed depth: 3 distinct GPT-2 layers, one pass
  loops     fixed loops: 1 layer looped 3 times (ceil(log2 8): enough for n = 8 only)
  log       1 layer looped L(n) = ceil(log2 n) times (model.loops_per_log2 = 1), no pads
  log_pad   the same with n pads
  pad       (n = 32 only) 1 layer looped 3 times, n pads: padding without more loops

Every regime trains with loop-aligned supervision (train.loss_on="steps": loop t learns
the t-th doubling step of the prefix scan, the last loop the answer; with one pass that is
the answer loss alone), which is what makes the word problem learnable in minutes on a CPU
(trained on the answer alone, S5 stays at chance after 1000 steps and S3 at n = 8 reaches 43%
per-position accuracy after 600). The group is the argument: s3 (default; solvable, learnable
on a CPU), s5 (NC^1-complete, the theorem's case), a5, z2 (parity).

  python -m looped_jax.main --config=configs/padded_word_problem.py --workdir=runs/pwp_s0 \\
      --config.seed=0
  python docs/scripts/depth_report.py padded runs/pwp_s0 runs/pwp_s1 runs/pwp_s2

docs/where_depth_goes.md has the measured accuracy vs length (three seeds).
"""

from looped_jax import config as config_lib
from looped_jax import tasks
from looped_jax.errors import ConfigError

LENGTHS = (8, 16, 32)
FIXED_LOOPS = 3
REGIMES = {
    "depth": {"model": {"num_layers": FIXED_LOOPS, "num_loops": 1}},
    "loops": {"model": {"num_loops": FIXED_LOOPS}},
    "log": {"model": {"loops_per_log2": 1.0}},
    "log_pad": {"model": {"loops_per_log2": 1.0}, "task": {"pad_factor": 1}},
    "pad": {"model": {"num_loops": FIXED_LOOPS}, "task": {"pad_factor": 1}},
}
ARGS = ("s3", "s5", "a5", "z2", "check")


def get_config(arg: str = "s3"):
  if arg not in ARGS:
    raise ConfigError(f"configs/padded_word_problem.py:{arg} is not an option; choose one of "
                      f"{', '.join(ARGS)}.")
  group = "s3" if arg == "check" else arg
  c = config_lib.base_config()
  c.task = tasks.default_config("word_problem", group=group, length=LENGTHS[0], answer="final")
  c.model.update(block="gpt2", d_model=64, num_heads=4, num_layers=1, num_loops=FIXED_LOOPS)
  c.train.update(num_steps=600, batch_size=64, optimizer="adamw", learning_rate=1e-3,
                 weight_decay=0.0, schedule="warmup_constant", warmup_steps=100, grad_clip=1.0,
                 loss_on="steps", log_every=100, checkpoint_every=300)
  c.eval.update(every=300, batch_size=256, num_batches=2)
  lengths = LENGTHS[:2] if arg == "check" else LENGTHS
  variants = {}
  for n in lengths:
    for regime, overrides in REGIMES.items():
      if regime == "pad" and n != lengths[-1]:
        continue
      variant = {key: dict(value) for key, value in overrides.items()}
      variant["task"] = variant.get("task", {}) | {"length": n}
      variants[f"{regime}_n{n}"] = variant
  c.variants = variants
  if arg == "check":
    c.train.update(num_steps=4, log_every=2, checkpoint_every=4)
    c.eval.update(every=4, batch_size=64, num_batches=1)
  return c
