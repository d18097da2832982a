"""CoT evaluation decodes greedily: the same tokens as argmax over full forward passes."""

import jax
import jax.numpy as jnp
import numpy as np

from looped_jax import models, tasks
from looped_jax.analysis import cot_eval
from looped_jax.config import base_config
from looped_jax.models import decode


def test_decoded_accuracy_is_greedy_decoding_scored_against_the_values():
  task = tasks.get({"name": "dag_eval", "width": 2, "depth": 2, "modulus": 3, "fmt": "cot"})
  assert cot_eval.applies(task) and not cot_eval.applies(
      tasks.get({"name": "dag_eval", "width": 2, "depth": 2, "modulus": 3}))
  cfg = base_config().model
  cfg.update(d_model=16, num_heads=2, num_layers=1, num_loops=2)
  graphdef, params = models.build(cfg, task, seed=0)
  batch = jax.device_get(task.sample(jax.random.key(0), 4))
  seq = jnp.asarray(batch["inputs"][:, :task.prompt_len])
  for _ in range(task.num_values):  # the reference: re-run the whole sequence per token
    logits = models.apply(graphdef, params, seq, 2)
    seq = jnp.concatenate([seq, jnp.argmax(logits[:, -1], -1)[:, None].astype(seq.dtype)], 1)
  emitted = np.asarray(seq[:, task.prompt_len:])
  values = batch["targets"][batch["weights"] > 0].reshape(4, task.num_values)
  generated = decode.generate(graphdef, params, batch["inputs"][:, :task.prompt_len],
                              jax.random.key(0), max_new_tokens=task.num_values, num_loops=2)
  np.testing.assert_array_equal(generated.tokens, emitted)
  got = cot_eval.decoded_accuracy(graphdef, params, batch, prompt_len=task.prompt_len,
                                  num_values=task.num_values, num_loops=2)
  assert got["value_accuracy"] == float(np.mean(emitted == values))
  assert got["answer_accuracy"] == float(np.mean(np.all(emitted == values, axis=1)))
  # The true values decode to accuracy 1: the scored targets are the values in order.
  np.testing.assert_array_equal(values[:, :-1], batch["inputs"][:, task.prompt_len:])
