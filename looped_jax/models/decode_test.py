"""KV-cache decoding (models/decode.py) against the full forward pass.

References: `models.apply` over the whole sequence (cached logits; exits that stop every
token at one loop count m equal `models.apply` at m loops), the argmax of `models.apply`
recomputed on the growing sequence (greedy `generate`), a NumPy loop over slots
(`_fill_skipped`) and the bytes of the arrays `init_cache` allocates (`cache_bytes_per_token`).
Parameters are random (not the zero-initialised timestep gates of `models.build`), so every
part of the model changes the logits and a wrong cache can show.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from looped_jax import models
from looped_jax.errors import ConfigError
from looped_jax.models import decode
from looped_jax.models.testing import full, random_model, tokens

PER_LOOP = decode.CacheSpec("per_loop")
FIRST_LOOP = decode.CacheSpec("first_loop")
# gpt2 with additive injection and an exit head (read by the gate criterion only).
MAIN = (("injection", "add"), ("exit_gate", True))
# With a coda: its cache, and the KL criterion's read-outs that must not write it.
WITH_CODA = (("injection", "add"), ("coda_layers", 1))


@functools.cache
def build(options=MAIN, seed=0):
  """(graphdef, params) of a tiny model with every parameter random (testing.random_model)."""
  return random_model(options, seed=seed)


def close(a, b, atol=1e-5):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=atol)


CONFIGS = {
    "gpt2_k2_add": dict(num_layers=2, injection="add"),
    "rope_prelude_coda_concat": dict(position="rope", injection="concat", prelude_layers=1,
                                     coda_layers=1),
    "attn_only": dict(block="attn_only"),
    "timestep": dict(timestep=True, injection="add", position_in_loop=True, norm_in_loop=True),
}


# L = 1 once here; the first_loop and gate-exit tests below run MAIN at one loop.
@pytest.mark.parametrize("name,loops", [("gpt2_k2_add", 1), ("gpt2_k2_add", 3),
                                        ("rope_prelude_coda_concat", 3), ("attn_only", 3),
                                        ("timestep", 3)])
def test_per_loop_cache_equals_full_pass(name, loops):
  graphdef, params = build(tuple(CONFIGS[name].items()))
  x = tokens()
  out = decode.decode_tokens(graphdef, params, x, num_loops=loops, cache_spec=PER_LOOP)
  close(out.logits, full(graphdef, params, x, loops))
  assert (np.asarray(out.loops) == loops).all()


def test_every_k_with_l_slots_is_exact_and_first_loop_approximates():
  graphdef, params = build()
  x = tokens()
  want = full(graphdef, params, x, 3)
  every = decode.decode_tokens(graphdef, params, x, num_loops=3,
                               cache_spec=decode.CacheSpec("every_k", share_every=3))
  close(every.logits, want)
  first1 = decode.decode_tokens(graphdef, params, x, num_loops=1, cache_spec=FIRST_LOOP)
  close(first1.logits, full(graphdef, params, x, 1))
  first3 = decode.decode_tokens(graphdef, params, x, num_loops=3, cache_spec=FIRST_LOOP)
  diff = np.abs(np.asarray(first3.logits) - np.asarray(want))
  assert diff[:, 0].max() < 1e-5  # the first token has no earlier positions to read
  assert diff.max() > 1e-4


def greedy_by_recomputing(graphdef, params, prompt, new, loops):
  """Argmax of the full pass over the prefix, one token at a time. The pass always sees 8
  positions: those after the prefix hold random tokens, which a causal model ignores."""
  seq = np.asarray(prompt)
  filler = np.asarray(tokens(n=8, seed=9))
  for _ in range(new):
    n = seq.shape[1]
    logits = full(graphdef, params, jnp.asarray(np.concatenate([seq, filler[:, n:]], 1)), loops)
    seq = np.concatenate([seq, np.argmax(logits[:, n - 1], -1)[:, None]], axis=1)
  return seq[:, prompt.shape[1]:]


@pytest.mark.parametrize("options", [MAIN, (("injection", "add"), ("plt", True),
                                            ("plt_window", 2))], ids=["per_loop", "plt"])
def test_greedy_generate_equals_recomputing_the_prefix(options):
  graphdef, params = build(options)
  prompt = tokens(n=2)
  got = decode.generate(graphdef, params, prompt, jax.random.key(0), max_new_tokens=6,
                        num_loops=3, cache_spec=PER_LOOP)
  want = greedy_by_recomputing(graphdef, params, prompt, 6, 3)
  np.testing.assert_array_equal(np.asarray(got.tokens), want)
  assert len(set(want.ravel().tolist())) > 1  # not one token over and over
  assert got.loops.shape == (2, 2 + 6 - 1) and (np.asarray(got.loops) == 3).all()


def test_sampling_is_keyed_and_top_1_is_greedy():
  graphdef, params = build()
  prompt = tokens(n=2)

  def gen(key, **kw):
    return np.asarray(decode.generate(graphdef, params, prompt, jax.random.key(key),
                                      max_new_tokens=6, num_loops=3, **kw).tokens)

  a, b, c = (gen(k, temperature=2.0) for k in (1, 1, 2))
  np.testing.assert_array_equal(a, b)
  assert (a != c).sum() >= 3
  greedy = gen(0)
  assert (a != greedy).any()
  np.testing.assert_array_equal(gen(5, temperature=2.0, top_k=1), greedy)


def test_residual_exit_with_tiny_threshold_never_exits():
  graphdef, params = build(WITH_CODA)
  x = tokens()
  out = decode.decode_tokens(graphdef, params, x, num_loops=3, cache_spec=PER_LOOP,
                             exit_spec=decode.ExitSpec("residual", 1e-30))
  assert (np.asarray(out.loops) == 3).all()
  close(out.logits, full(graphdef, params, x, 3))


@pytest.mark.parametrize("criterion,min_loops", [("kl", 2), ("residual", 1)])
def test_exit_with_huge_threshold_stops_at_min_loops(criterion, min_loops):
  graphdef, params = build(WITH_CODA)
  x = tokens()
  out = decode.decode_tokens(graphdef, params, x, num_loops=3, cache_spec=PER_LOOP,
                             exit_spec=decode.ExitSpec(criterion, 1e30, min_loops))
  assert (np.asarray(out.loops) == min_loops).all()
  # Every token stops at m, so the later tokens read slots that loops < m wrote.
  close(out.logits, full(graphdef, params, x, min_loops))
  assert not np.allclose(out.logits, full(graphdef, params, x, 3), atol=1e-3)


def test_gate_exit_thresholds():
  graphdef, params = build()
  x = tokens()
  for threshold, loops in ((1e-9, 1), (1.5, 3)):
    out = decode.decode_tokens(graphdef, params, x, num_loops=3, cache_spec=PER_LOOP,
                               exit_spec=decode.ExitSpec("gate", threshold))
    assert (np.asarray(out.loops) == loops).all()
    close(out.logits, full(graphdef, params, x, loops))


def test_fill_skipped_copies_the_last_written_slot():
  s, k, b, t, h, d = 3, 2, 2, 4, 1, 2
  rng = np.random.default_rng(0)
  keys = rng.normal(size=(s, k, b, t, h, d)).astype(np.float32)
  values = rng.normal(size=(s, k, b, t, h, d)).astype(np.float32)
  written = np.array([[True, True], [True, False], [False, False]])  # [S, B]
  last_slot = np.array([1, 0], np.int32)
  position = 2
  got = decode._fill_skipped((jnp.asarray(keys), jnp.asarray(values)), jnp.asarray(written),
                             jnp.asarray(last_slot), jnp.int32(position))
  for cache, out in zip((keys, values), got):
    want = cache.copy()
    for seq in range(b):
      for slot in range(s):
        if not written[slot, seq]:
          want[slot, :, seq, position] = cache[last_slot[seq], :, seq, position]
    assert not np.array_equal(want, cache)  # something is filled
    np.testing.assert_array_equal(np.asarray(out), want)


def test_unsupported_settings_are_config_errors():
  graphdef, params = build()
  prompt = tokens(n=4)
  key = jax.random.key(0)
  with pytest.raises(ConfigError, match="learned position"):
    decode.decode_tokens(graphdef, params, tokens(n=13), num_loops=2)
  with pytest.raises(ConfigError, match="learned position"):
    decode.generate(graphdef, params, prompt, key, max_new_tokens=10, num_loops=2)
  decode.check(graphdef, params, 12, 2)  # the limit itself is fine
  with pytest.raises(ConfigError, match="strategy"):
    decode.check(graphdef, params, 4, 2, decode.CacheSpec("bogus"))
  with pytest.raises(ConfigError, match="max_new_tokens"):
    decode.generate(graphdef, params, prompt, key, max_new_tokens=0, num_loops=2)
  g_plain, p_plain = build((("injection", "add"),))
  with pytest.raises(ConfigError, match="exit_gate"):
    decode.check(g_plain, p_plain, 4, 2, PER_LOOP, decode.ExitSpec("gate", 0.5))
  g_bi, p_bi = build((("injection", "add"), ("causal", False)))
  with pytest.raises(ConfigError, match="causal"):
    decode.check(g_bi, p_bi, 4, 2)


def test_cache_bytes_per_token():
  graphdef, params = build((("num_layers", 2),))
  model = models.merge(graphdef, params)
  loops, length = 4, 5

  def allocated(spec):
    cache = decode.init_cache(model, 1, length, spec, loops)
    return sum(a.nbytes for a in jax.tree.leaves(cache)) // length

  first = decode.cache_bytes_per_token(model, FIRST_LOOP, loops)
  assert first == allocated(FIRST_LOOP) == 2 * 2 * 16 * 4  # K and V, 2 layers, D=16, float32
  assert decode.cache_bytes_per_token(model, PER_LOOP, loops) == loops * first
  assert decode.cache_bytes_per_token(model, PER_LOOP, loops) == allocated(PER_LOOP)
  for m in (2, 3):
    spec = decode.CacheSpec("every_k", share_every=m)
    assert decode.cache_bytes_per_token(model, spec, loops) == m * first == allocated(spec)
