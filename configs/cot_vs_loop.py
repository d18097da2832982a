"""Chain of thought or loop? DAG evaluation at equal parameters ("To CoT or to Loop?").

"To CoT or to Loop? A Formal Comparison Between Chain-of-Thought and Looped Transformers",
arXiv 2505.19245; docs/papers.md. Looped transformers evaluate a DAG in as many loops as it
has levels, in parallel over its nodes; a CoT model emits one node value per decoding step.
The task is `dag_eval` (tasks/depth.py): layered arithmetic circuits mod 5, width 3,
depth 3 (12 nodes, 9 values to compute), each node written as 4 tokens. The same
transformer (2 GPT-2 layers, D = 64, 4 heads, causal) two ways:

  loop        fmt="loop", 2 layers looped L = 3 = depth times, trained on every node value
              at once (train.loss_on="last"): one forward pass per circuit
  cot         fmt="cot", the 2 layers once (L = 1), trained teacher-forced to emit the 9
              values one token at a time after the description; evaluated by greedy
              decoding (analysis/cot_eval.py, `--mode=eval`): 9 decoding steps

  python -m looped_jax.main --config=configs/cot_vs_loop.py --workdir=runs/cot_s0 --config.seed=0
  python -m looped_jax.main --config=configs/cot_vs_loop.py --workdir=runs/cot_s0 --mode=eval
  python docs/scripts/depth_report.py cot runs/cot_s0 runs/cot_s1 runs/cot_s2

docs/where_depth_goes.md has the measured accuracies and costs (three seeds). The argument
`check` is a 4-step smoke test.
"""

from looped_jax import config as config_lib
from looped_jax import tasks
from looped_jax.errors import ConfigError

ARGS = ("all", "check")


def get_config(arg: str = "all"):
  if arg not in ARGS:
    raise ConfigError(f"configs/cot_vs_loop.py:{arg} is not an option; choose one of "
                      f"{', '.join(ARGS)}.")
  c = config_lib.base_config()
  c.task = tasks.default_config("dag_eval", width=3, depth=3, modulus=5, fmt="loop")
  c.model.update(block="gpt2", d_model=64, num_heads=4, num_layers=2, num_loops=3)
  c.train.update(num_steps=800, batch_size=64, optimizer="adamw", learning_rate=1e-3,
                 weight_decay=0.0, schedule="warmup_constant", warmup_steps=100, grad_clip=1.0,
                 log_every=100, checkpoint_every=400)
  c.eval.update(every=400, batch_size=256, num_batches=2)
  c.variants = {
      "loop": {"train": {"loss_on": "last"}},
      "cot": {"task": {"fmt": "cot"}, "model": {"num_loops": 1}},
  }
  if arg == "check":
    c.train.update(num_steps=4, log_every=2, checkpoint_every=4)
    c.eval.update(every=4, batch_size=32, num_batches=1)
  return c
