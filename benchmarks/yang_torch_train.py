"""Trains benchmarks/yang_torch.py's port of the Yang et al. reference on looped_jax's batches.

  pip install -e ".[torch]"   # torch==2.13.0 (CPU wheel)
  python benchmarks/yang_torch_train.py --config=configs/yang_icl.py:linear_regression:check \
      --set train.batch_size=64 --steps 2500 --out benchmarks/results/NAME.jsonl

The reference's side of a learning-curve comparison with
`python -m looped_jax.main --config=... --config.train.batch_size=64 ...`: the same config
(its `looped` variant), the same batches (task.sample(fold_in(key(data_seed), step), step):
dims and points curricula included), the same loop curriculum, loop-window loss, Adam, learning
rate and clipping, but the model, its initialisation (PyTorch's defaults for the read-in and
read-out, GPT-2's inside the backbone, from torch.manual_seed(seed); `--init jax` copies in
looped_jax's initial weights instead) and the optimizer are PyTorch's. Writes one JSON line
per log step, {"step", "loss" (mean since the last log step), "loops", "grad_norm"}, and at
eval steps "eval/loss": the last loop's loss on the config's eval batches at full curriculum
difficulty, as looped_jax's metrics.jsonl has them.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import jax
import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from yang_torch import LoopedModel, load_jax_params  # noqa: E402

from looped_jax import config as config_lib  # noqa: E402
from looped_jax import config_file, models, tasks  # noqa: E402
from looped_jax.train import experiment  # noqa: E402
from looped_jax.train import step as step_lib  # noqa: E402
from looped_jax.train.build import EVAL_CURRICULUM_STEP  # noqa: E402


def parse_value(text: str):
  try:
    return json.loads(text)
  except ValueError:
    return text


def load(spec: str, settings: list[str]):
  config = experiment.expand(config_file.load(spec))
  config = config.get("looped", config.get(""))
  overrides: dict = {}
  for item in settings:
    key, value = item.split("=", 1)
    node = overrides
    *parents, leaf = key.split(".")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = parse_value(value)
  config = config_lib.apply_overrides(config, overrides)
  config_lib.validate(config)
  return config


def window_loss(preds: torch.Tensor, batch: dict) -> torch.Tensor:
  """preds [R, B, 2n] -> the mean over read-outs of the weighted squared error at x positions."""
  targets = torch.from_numpy(np.array(batch["targets"]))
  weights = torch.from_numpy(np.array(batch["weights"]))
  err = torch.square(preds - targets) * weights
  return (err.sum(dim=(1, 2)) / weights.sum().clamp_min(1e-9)).mean()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", required=True, help="configs/yang_icl.py:TASK[:SIZE]")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="config override, e.g. train.batch_size=64 (JSON values)")
  parser.add_argument("--steps", type=int, default=0, help="0: train.num_steps")
  parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
  parser.add_argument("--init", default="torch", choices=("torch", "jax"),
                      help="torch: PyTorch's own init from torch.manual_seed(seed); jax: "
                           "looped_jax's initial params of the same config and seed, copied in "
                           "(the two frameworks then start from the same weights)")
  parser.add_argument("--out", required=True, help="JSONL file of the learning curve")
  args = parser.parse_args()
  if args.threads:
    torch.set_num_threads(args.threads)
  config = load(args.config, args.set)
  m, t = config.model, config.train
  task = tasks.get(config.task)
  torch.manual_seed(config.seed)
  model = LoopedModel(task.n_dims, m.d_model, m.num_heads, m.num_layers, 2 * task.n_points)
  if args.init == "jax":
    load_jax_params(model, models.build(m, task, config.seed)[1])
  opt = torch.optim.Adam(model.parameters(), lr=t.learning_rate)
  sample = jax.jit(task.sample, static_argnums=1)
  data_key, eval_key = jax.random.key(config.data_seed), jax.random.key(config.eval_seed)
  eval_batches = [jax.device_get(sample(jax.random.fold_in(eval_key, i), config.eval.batch_size,
                                        EVAL_CURRICULUM_STEP))
                  for i in range(config.eval.num_batches)]
  steps = args.steps or t.num_steps
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  losses, norms, started = [], [], time.perf_counter()
  with open(args.out, "w") as out:
    for step in range(steps):
      loops = step_lib.loops_at(step, m.num_loops, t.loop_curriculum)
      batch = jax.device_get(sample(jax.random.fold_in(data_key, step), t.batch_size, step))
      inputs = torch.from_numpy(np.array(batch["inputs"]))
      loss = window_loss(model(inputs, loops, t.grad_loops, True), batch)
      opt.zero_grad(set_to_none=True)
      loss.backward()
      norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip or float("inf"))
      opt.step()
      losses.append(loss.item())
      norms.append(norm.item())
      done = step + 1
      if done % t.log_every == 0 or done == steps:
        record = {"step": done, "loss": float(np.mean(losses)), "grad_norm": float(np.mean(norms)),
                  "loops": loops, "seconds": time.perf_counter() - started}
        losses, norms = [], []
        if done % config.eval.every == 0 or done == steps:
          with torch.no_grad():
            record["eval/loss"] = float(np.mean([
                window_loss(model(torch.from_numpy(np.array(b["inputs"])), m.num_loops, 1,
                                  True), b).item() for b in eval_batches]))
        out.write(json.dumps(record) + "\n")
        out.flush()
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
  main()
