"""The Parallel Loop Transformer (models/plt.py): the shifted training pass and the one-pass-
per-token decoding agree, and the pass is what the paper's equations say.

References: `decode.decode_tokens` (token by token, K_1/V_1 cache, window rings, carried
states) against `models.apply` (the whole sequence at once, run op by op); at one loop the
plain model's `models.apply` with the same parameters minus the gate; the same pass on a
sequence with one token changed (causality); the bytes of the arrays `plt.init_state`
allocates (`cache_bytes`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from looped_jax import models
from looped_jax.models import decode, plt
from looped_jax.models.testing import TinyTokenTask, full, model_config, random_model, tokens


def config(options):
  return model_config((("injection", "add"), ("plt", True), *options))


@functools.cache
def build(options=(), seed=0):
  """(graphdef, params) of a tiny PLT model, every parameter random, the gate too
  (testing.random_model)."""
  return random_model((("injection", "add"), ("plt", True), *options), seed=seed)


@pytest.mark.parametrize("loops,window,position,k,ends", [
    (1, 1, "learned", 1, 0),
    (2, 3, "learned", 2, 0),
    (4, 3, "rope", 1, 0),
    (4, 1, "rope", 2, 0),
    (4, 3, "learned", 1, 1),  # with a prelude and a coda layer
])
def test_training_pass_equals_decoding(loops, window, position, k, ends):
  graphdef, params = build((("plt_window", window), ("position", position), ("num_layers", k),
                            ("prelude_layers", ends), ("coda_layers", ends)))
  x = tokens()
  out = decode.decode_tokens(graphdef, params, x, num_loops=loops)
  np.testing.assert_allclose(out.logits, full(graphdef, params, x, loops), rtol=1e-5, atol=1e-5)
  assert (np.asarray(out.loops) == loops).all()


def without_gate(params):
  """params minus the G-SWA gates (found in the looped core only)."""
  out = dict(params)
  for stack in ("layers", "prelude", "coda"):
    if stack in params:
      attn = {k: v for k, v in params[stack]["attn"].items() if k != "gate"}
      out[stack] = params[stack] | {"attn": attn}
  return out


def test_one_loop_is_the_plain_model_without_the_gate():
  graphdef, params = build((("num_layers", 2), ("coda_layers", 1)))
  plain = config((("num_layers", 2), ("coda_layers", 1), ("plt", False)))
  plain_def = models.graphdef(plain, TinyTokenTask())
  x = tokens()
  np.testing.assert_allclose(full(graphdef, params, x, 1),
                             full(plain_def, without_gate(params), x, 1), rtol=1e-5, atol=1e-6)
  # At two loops the shifted pass is not the plain model's pass.
  assert not np.allclose(full(graphdef, params, x, 2), full(plain_def, without_gate(params), x, 2),
                         atol=1e-3)


@pytest.mark.parametrize("block", ["attn_only", "gpt2", "post_norm"])
def test_same_seed_gives_the_plain_models_parameters_plus_a_gate(block):
  cfg = dict(d_model=16, num_heads=2, injection="add", block=block, prelude_layers=1,
             coda_layers=1)
  graphdef, with_gate = models.build(config(tuple(cfg.items())), TinyTokenTask(), seed=3)
  plain_def, plain = models.build(config(tuple((cfg | {"plt": False}).items())), TinyTokenTask(),
                                  seed=3)
  assert "gate" in with_gate["layers"]["attn"] and "gate" not in plain["layers"]["attn"]
  # only the looped core has gates: the prelude and coda run once, with plain attention
  assert "gate" not in with_gate["prelude"]["attn"] and "gate" not in with_gate["coda"]["attn"]
  gated = jax.tree_util.tree_leaves_with_path(without_gate(with_gate))
  leaves = jax.tree_util.tree_leaves_with_path(plain)
  assert [p for p, _ in gated] == [p for p, _ in leaves]
  different = [jax.tree_util.keystr(p) for (p, a), (_, b) in zip(gated, leaves)
               if not np.array_equal(a, b)]
  assert not different
  x = tokens()
  np.testing.assert_allclose(full(graphdef, with_gate, x, 1), full(plain_def, plain, x, 1),
                             rtol=1e-5, atol=1e-6)


def gate_gradient(graphdef, params, x, loops):
  def loss(p):
    return jnp.sum(jnp.square(models.apply(graphdef, p, x, loops)))

  with jax.disable_jit():
    return jax.grad(loss)(params)["layers"]["attn"]["gate"]


def test_gate_gets_a_gradient_from_the_second_loop_on():
  graphdef, params = build((("plt_window", 2),))
  x = tokens()
  at_two = gate_gradient(graphdef, params, x, 2)
  assert all(np.abs(g).max() > 1e-6 for g in jax.tree.leaves(at_two))
  at_one = gate_gradient(graphdef, params, x, 1)
  assert all(not np.asarray(g).any() for g in jax.tree.leaves(at_one))


def test_changing_a_token_changes_no_earlier_logit():
  graphdef, params = build((("plt_window", 2),))
  x = np.asarray(tokens())
  before = np.asarray(full(graphdef, params, jnp.asarray(x), 3))
  for j in (2, 5):
    y = x.copy()
    y[:, j] = (y[:, j] + 1) % TinyTokenTask.vocab_size
    after = np.asarray(full(graphdef, params, jnp.asarray(y), 3))
    np.testing.assert_allclose(after[:, :j], before[:, :j], rtol=0, atol=1e-6)
    change = np.abs(after - before).max(axis=(0, 2))
    assert (change[j:] > 1e-4).all()  # position j and everything after it see the change


def test_cache_bytes():
  graphdef, params = build((("num_layers", 2), ("plt_window", 3)))
  model = models.merge(graphdef, params)
  kv = 2 * 16 * 4  # keys and values of one layer at one position, D = 16, float32

  def allocated(loops, length):
    state = plt.init_state(model, 1, length, loops)
    return sum(a.nbytes for a in jax.tree.leaves(state))

  for loops in (1, 2, 4):
    assert plt.cache_bytes(model, loops, 6) == allocated(loops, 6)
    # One more position: one more K_1, V_1 entry per layer, whatever the loop count.
    assert plt.cache_bytes(model, loops, 7) - plt.cache_bytes(model, loops, 6) == 2 * kv
    # Loops 2..L: a ring of w keys and values per layer and the carried state.
    assert (plt.cache_bytes(model, loops, 6) - plt.cache_bytes(model, 1, 6)
            == (loops - 1) * (2 * 3 * kv + 16 * 4))
