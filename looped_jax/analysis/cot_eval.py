"""Chain-of-thought evaluation by greedy decoding, and the cost of each answer.

A chain-of-thought task (`dag_eval` with fmt="cot") trains teacher-forced: every value
token is predicted from the true values before it. Its real test is free-running: the
prompt (the circuit description through SEP) is fed to the model, which then emits its
`num_values` values greedily, each fed back as the next input (models/decode.py, with KV
caches). `write(exp, params, workdir)` is the `--mode=eval` hook for such tasks; it writes
cot_eval.json: the per-value and whole-answer accuracy of the decoded values and the cost

  decode_steps   sequential forward passes after the prompt (one per emitted token)
  layer_passes   layer applications per example, prompt included: (prompt_len +
                 num_values - 1) tokens x num_layers x num_loops, each pass over ONE token

against which a looped model answers in one forward pass of num_loops loops over the whole
description (layer_passes = num_layers x num_loops, each over every position). "To CoT or
to Loop? A Formal Comparison Between Chain-of-Thought and Looped Transformers" (arXiv
2505.19245) compares the two on this kind of DAG evaluation.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np

from looped_jax import distributed, run_files
from looped_jax.models import decode

COT_SEED_OFFSET = 30_000  # the decoded batch: fold_in(key(eval_seed), offset)


def applies(task) -> bool:
  return getattr(task, "fmt", None) == "cot"


def decoded_accuracy(graphdef, params, batch: dict, *, prompt_len: int, num_values: int,
                     num_loops: int) -> dict[str, float]:
  """Greedy decoding of `num_values` tokens after inputs[:, :prompt_len]: accuracy per value
  and per whole answer against the values the batch scores (targets where weights > 0)."""
  prompt = batch["inputs"][:, :prompt_len]
  generated = decode.generate(graphdef, params, prompt, jax.random.key(0),
                              max_new_tokens=num_values, num_loops=num_loops)
  targets, weights = np.asarray(batch["targets"]), np.asarray(batch["weights"])
  truth = targets[weights > 0].reshape(len(targets), num_values)  # the values, in order
  correct = np.asarray(generated.tokens) == truth
  return {"value_accuracy": float(correct.mean()),
          "answer_accuracy": float(correct.all(axis=1).mean())}


def evaluate(exp, params) -> dict[str, Any]:
  config = exp.config
  task = exp.task.held_out()
  key = jax.random.fold_in(jax.random.key(config.eval_seed), COT_SEED_OFFSET)
  batch = jax.device_get(jax.jit(lambda k: task.sample(k, int(config.eval.batch_size)))(key))
  loops = int(config.model.num_loops)
  result = decoded_accuracy(exp.graphdef, params, batch, prompt_len=task.prompt_len,
                            num_values=task.num_values, num_loops=loops)
  layers = int(config.model.num_layers)
  return result | {
      "examples": int(config.eval.batch_size), "prompt_len": task.prompt_len,
      "num_values": task.num_values, "decode_steps": task.num_values,
      "layer_passes": (task.prompt_len + task.num_values - 1) * layers * loops}


def write(exp, params, workdir: str) -> dict[str, Any] | None:
  """Decodes and scores a chain-of-thought task's held-out batch; process 0 writes
  cot_eval.json. None for other tasks."""
  if not applies(exp.task):
    return None
  result = evaluate(exp, params)
  if distributed.is_primary():
    run_files.write_atomically(os.path.join(workdir, run_files.COT_EVAL),
                               json.dumps(result, indent=1, sort_keys=True))
  return result
