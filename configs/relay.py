"""Loop-aligned supervision and length generalisation (RELAY, Yu et al.).

Yu et al., "Enhancing Auto-regressive Chain-of-Thought through Loop-Aligned Reasoning", arXiv
2502.08482; docs/papers.md, "Where depth goes". One GPT-2 layer (D = 64, rotary positions, so
no position is untrained at test lengths) looped on the S3 word problem (`word_problem`,
tasks/depth.py) with every prefix product scored. Two variants:

  relay   train.loss_on="steps": loop t learns step t of the scan, the last loop the answer
  final   train.loss_on="last": the same model trained on the answer alone

The argument picks the scan that the loops are aligned with:

  linear    (default) RELAY's setting: the sequential scan, one element more per step and the
            same operation every step (step t at position i = the product of the last t
            elements); trained at n = 8 with L = 8 loops, so a word of n elements needs n loops
  doubling  the log-depth Hillis-Steele scan (step t = the product of the last 2^t elements);
            trained at n = 16 with L = 4 = ceil(log2 16) loops
  check     `linear` for 4 steps (a smoke test)

`--mode=eval` then sweeps 1..4L loops on longer words (analysis/loop_sweep.py: n = 16 and 32
for linear, 32 and 64 for doubling) and fits linear probes of every scan step on each loop's
state (analysis/probes.py, eval.probes). The second half of RELAY (the looped model's
chains fine-tuning an autoregressive model) is not part of this config.

  python -m looped_jax.main --config=configs/relay.py --workdir=runs/relay_s0 --config.seed=0
  python -m looped_jax.main --config=configs/relay.py --workdir=runs/relay_s0 --mode=eval
  python docs/scripts/depth_report.py relay runs/relay_s0 runs/relay_s1 runs/relay_s2

docs/where_depth_goes.md has the measured accuracies and probes (three seeds).
"""

from looped_jax import config as config_lib
from looped_jax import tasks
from looped_jax.errors import ConfigError

ARGS = ("linear", "doubling", "check")


def get_config(arg: str = "linear"):
  if arg not in ARGS:
    raise ConfigError(f"configs/relay.py:{arg} is not an option; choose one of {', '.join(ARGS)}.")
  doubling = arg == "doubling"
  n, loops = (16, 4) if doubling else (8, 8)
  c = config_lib.base_config()
  c.task = tasks.default_config("word_problem", group="s3", length=n, answer="prefix",
                                scan="doubling" if doubling else "linear")
  c.model.update(block="gpt2", d_model=64, num_heads=4, num_layers=1, num_loops=loops,
                 position="rope")
  c.train.update(num_steps=1000, batch_size=64, optimizer="adamw", learning_rate=1e-3,
                 weight_decay=0.0, schedule="warmup_constant", warmup_steps=100, grad_clip=1.0,
                 log_every=100, checkpoint_every=500)
  c.eval.update(every=500, batch_size=256, num_batches=2, probes=("steps", "answer"),
                probe_prompts=256)
  ls = c.eval.loop_sweep
  ls.update(max_factor=4, batch_size=256, diagnose_examples=0)
  ls.tasks = {f"n{2 * n}": {"length": 2 * n}, f"n{4 * n}": {"length": 4 * n}}
  c.variants = {"relay": {"train": {"loss_on": "steps"}},
                "final": {"train": {"loss_on": "last"}}}
  if arg == "check":
    c.train.update(num_steps=4, log_every=2, checkpoint_every=4)
    c.eval.update(every=4, batch_size=64, num_batches=1, probe_prompts=32)
    ls.update(max_factor=2, batch_size=32)
  return c
