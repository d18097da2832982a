"""Autoregressive decoding of a looped model with KV caches, at any loop count, greedy or
sampled, with optional per-token adaptive depth.

One decoding step takes one token per sequence [B] at position p (the same p for the whole
batch) and returns the next-token logits [B, V]:

  e = prelude(embed(token, p))                     (prelude keys/values cached per layer)
  h = loop(... loop(initial_state(e), e) ...)      t = 0, 1, ...: each layer attends to its
                                                   cache slot (positions < p) and to itself
  logits = head(ln_f(coda(h)))                     (coda keys/values cached per layer)

Cache strategies (`CacheSpec.strategy`): which slot loop t of the core reads and writes.

  per_loop    one slot per loop: loop t reads and writes slot t. Exact: the logits equal a
              full forward pass over the whole prefix (tested).
  first_loop  one slot: loop 0 writes it and every loop reads it for the earlier positions
              (at its own position a loop sees its own key and value). The cache of a
              one-loop model; for a plain looped model an approximation, for the Parallel
              Loop Transformer (models/plt.py) the definition.
  every_k     m = `share_every` slots (Huginn's KV sharing, Geiping et al. arXiv 2502.05171):
              loop t reads and writes slot t mod m, so a slot holds an earlier token's
              latest loop of that phase. m = L is per_loop.

Adaptive depth (`ExitSpec`): a token stops after the first loop t + 1 >= min_loops at which
  kl        KL(p_{t+1} || p_t) of the next-token distributions < threshold (Huginn),
  residual  ||h_{t+1} - h_t|| / ||h_t|| < threshold, or
  gate      the learned exit distribution's CDF 1 - prod_{j<=t}(1 - lambda_j) >= threshold
            (Ouro, arXiv 2510.25741; needs model.exit_gate),
or after L loops. A `lax.while_loop` stops once every sequence in the batch has stopped. The
cache slots of the loops a token skipped get its deepest computed key and value (Huginn's
"latest" lookup), so a later token reading them sees the token's final state. The KL
criterion reads the distribution after every loop through the coda without writing its
cache; only the exit read-out writes it.

Positions: learned position embeddings limit p to model.max_len; rope and none do not.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from looped_jax.analysis.adaptive_exit import kl_between
from looped_jax.analysis.fixed_point import relative_residual
from looped_jax.errors import ConfigError
from looped_jax.models import layers

Array = jax.Array

STRATEGIES = ("per_loop", "first_loop", "every_k")
EXIT_CRITERIA = ("none", "kl", "residual", "gate")


@dataclasses.dataclass(frozen=True)
class CacheSpec:
  strategy: str = "per_loop"
  share_every: int = 1  # every_k: m, the number of slots

  def slots(self, num_loops: int) -> int:
    if self.strategy == "per_loop":
      return num_loops
    if self.strategy == "first_loop":
      return 1
    return min(self.share_every, num_loops)

  def slot(self, t: Array, num_loops: int) -> Array:
    """The slot loop t (traced) reads and writes."""
    if self.strategy == "first_loop":
      return jnp.zeros_like(t)
    return t % self.slots(num_loops)


@dataclasses.dataclass(frozen=True)
class ExitSpec:
  criterion: str = "none"
  threshold: float = 0.0
  min_loops: int = 1


class Decoded(NamedTuple):
  """What `decode_tokens` and `generate` return."""
  logits: Array  # [B, N, V] float32: next-token logits after each processed token
  loops: Array  # int32 [B, N]: loops run on each processed token


def check_spec(spec, cache: CacheSpec, exit_spec: ExitSpec) -> None:
  """ConfigError (one sentence) for a model or setting that decoding does not support."""
  if cache.strategy not in STRATEGIES:
    raise ConfigError(f"cache strategy {cache.strategy!r} is unknown; choose one of "
                      f"{', '.join(STRATEGIES)}.")
  if cache.strategy == "every_k" and cache.share_every < 1:
    raise ConfigError(f"the every_k cache needs share_every >= 1 slots, not {cache.share_every}.")
  if exit_spec.criterion not in EXIT_CRITERIA:
    raise ConfigError(f"exit criterion {exit_spec.criterion!r} is unknown; choose one of "
                      f"{', '.join(EXIT_CRITERIA)}.")
  if exit_spec.criterion == "gate" and not spec.exit_gate:
    raise ConfigError("the gate exit criterion needs a model trained with model.exit_gate=True.")
  if exit_spec.min_loops < 1:
    raise ConfigError(f"min_loops={exit_spec.min_loops} must be >= 1.")
  if spec.plt and (exit_spec.criterion != "none" or cache.strategy != "per_loop"):
    raise ConfigError("a Parallel Loop Transformer runs every loop of a token in one pass with "
                      "its own cache: per-token exit and other cache strategies do not apply "
                      "(keep exit 'none' and cache 'per_loop').")
  if spec.input_kind != "tokens" or not spec.causal:
    raise ConfigError("generation needs a causal model of a token task (model.causal=True).")
  if (spec.recursion != "none" or spec.init_state == "random" or spec.dropout
      or any(r != 1 for r in spec.layer_loops)):
    raise ConfigError("generation supports looped models without model.recursion, "
                      "model.layer_loops, init_state='random' or dropout.")


# -- the cache --------------------------------------------------------------------------------


def init_cache(model, batch: int, length: int, cache: CacheSpec, num_loops: int) -> dict:
  """Zero caches of `length` positions: {"core": (K, V) [S, k, B, T, H, Dh], "prelude" /
  "coda": (K, V) [P or C, B, T, H, Dh] if the model has them}."""
  spec = model.spec
  core = zero_kv(spec, (cache.slots(num_loops), spec.num_layers), batch, length)
  return {"core": core} | once_run_caches(spec, batch, length)


def zero_kv(spec, lead: tuple[int, ...], batch: int, length: int) -> tuple[Array, Array]:
  """Zero keys and values [*lead, B, T, H, Dh] of the model's compute dtype."""
  shape = (*lead, batch, length, spec.num_heads, spec.d_model // spec.num_heads)
  return jnp.zeros(shape, spec.compute_dtype), jnp.zeros(shape, spec.compute_dtype)


def once_run_caches(spec, batch: int, length: int) -> dict:
  """The caches of the blocks that run once per token: "prelude" / "coda" (K, V) [P or C, B,
  T, H, Dh], for the model's prelude and coda if it has them."""
  out = {}
  if spec.prelude_layers:
    out["prelude"] = zero_kv(spec, (spec.prelude_layers,), batch, length)
  if spec.coda_layers:
    out["coda"] = zero_kv(spec, (spec.coda_layers,), batch, length)
  return out


def cache_bytes_per_token(model, cache: CacheSpec, num_loops: int) -> int:
  """Bytes of keys and values the cache keeps per position of one sequence."""
  spec = model.spec
  layers_cached = (cache.slots(num_loops) * spec.num_layers + spec.prelude_layers
                   + spec.coda_layers)
  return 2 * layers_cached * spec.d_model * jnp.dtype(spec.compute_dtype).itemsize


def cached_attention(position: Array):
  """The layer attention of a decoding step at `position`, for `Model.loop(attention=...)`:
  a function of one layer's cache (K, V) [B, T, H, Dh] returning the AttentionFn that attends
  the new token's query to the cached positions < position and to its own key, and returns
  that key and value [B, 1, H, Dh] as the extra."""

  def for_layer(kv):
    k_cache, v_cache = kv

    def attention(attn: layers.Attention, y: Array):
      q, k, v = attn.project(y, offset=position)
      keys = jnp.concatenate([k_cache, k], axis=1)
      values = jnp.concatenate([v_cache, v], axis=1)
      mask = jnp.append(jnp.arange(k_cache.shape[1]) < position, True)
      return attn.output(layers.attend(q, keys, values, mask, attn.kind)), (k, v)

    return attention

  return for_layer


def write_kv(kv: tuple[Array, Array], new: tuple[Array, Array], position: Array,
           lead: tuple = (), where: Array | None = None) -> tuple[Array, Array]:
  """Writes new keys/values [*, B, 1, H, Dh] at `position` (and index `lead` of the leading
  axes) of a cache [..., B, T, H, Dh]; `where` [B]: only these sequences."""

  def one(cache, value):
    start = (*lead, *(0,) * (value.ndim - 4), 0, position, 0, 0)
    value = value.reshape((1,) * len(lead) + value.shape).astype(cache.dtype)
    if where is not None:
      old = jax.lax.dynamic_slice(cache, start, value.shape)
      value = jnp.where(where[:, None, None, None], value, old)
    return jax.lax.dynamic_update_slice(cache, value, start)

  return one(kv[0], new[0]), one(kv[1], new[1])


# -- one decoding step --------------------------------------------------------------------------


def decode_step(model, cache: dict, tokens: Array, position: Array, num_loops: int,
                cache_spec: CacheSpec, exit_spec: ExitSpec = ExitSpec()):
  """One token per sequence, tokens int32 [B] at `position` -> (logits [B, V] float32, the
  updated cache, loops run int32 [B])."""
  attention = cached_attention(position)
  cache = dict(cache)
  x = tokens[:, None]
  if "prelude" in cache:
    e, new = model.encode(x, position, attention=attention, layer_inputs=cache["prelude"])
    cache["prelude"] = write_kv(cache["prelude"], new, position)
  else:
    e = model.encode(x, position)
  h0 = model.initial_state(e)
  batch = tokens.shape[0]
  slots = cache_spec.slots(num_loops)
  coda = cache.get("coda")

  def peek(h):  # next-token logits [B, V], the coda reading its cache without writing
    out = model.readout(h, attention=attention, layer_inputs=coda) if coda else model.readout(h)
    return (out[0] if coda else out)[:, 0]

  use_kl = exit_spec.criterion == "kl"
  init = dict(t=jnp.int32(0), h=h0, core=cache["core"], done=jnp.zeros(batch, bool),
              loops=jnp.zeros(batch, jnp.int32), written=jnp.zeros((slots, batch), bool),
              last_slot=jnp.zeros(batch, jnp.int32), survive=jnp.ones(batch, jnp.float32),
              logits=peek(h0) if use_kl else jnp.zeros((batch, 1), jnp.float32))

  def body(c):
    t, h, active = c["t"], c["h"], ~c["done"]
    s = cache_spec.slot(t, num_loops)
    slot_kv = jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, s, keepdims=False),
                           c["core"])
    h_new, new = model.loop(h, e, None, t, offset=position, attention=attention,
                            layer_inputs=slot_kv)
    write = active & ((t == 0) | (cache_spec.strategy != "first_loop"))
    core = write_kv(c["core"], new, position, lead=(s,), where=write)
    written = c["written"].at[s].set(c["written"][s] | write)
    c = c | dict(core=core, written=written, last_slot=jnp.where(write, s, c["last_slot"]),
                 loops=jnp.where(active, t + 1, c["loops"]), t=t + 1,
                 h=_select(active, h_new, h))
    stop, updates = _stop(model, exit_spec, c, h, h_new, peek)
    c |= updates
    eligible = t + 1 >= exit_spec.min_loops
    c["done"] = c["done"] | (eligible & stop) | (t + 1 >= num_loops)
    return c

  c = jax.lax.while_loop(lambda c: (c["t"] < num_loops) & ~jnp.all(c["done"]), body, init)
  cache["core"] = _fill_skipped(c["core"], c["written"], c["last_slot"], position)
  if coda is not None:
    out, new = model.readout(c["h"], attention=attention, layer_inputs=coda)
    cache["coda"] = write_kv(coda, new, position)
  else:
    out = model.readout(c["h"])
  return out[:, 0], cache, c["loops"]


def _stop(model, exit_spec: ExitSpec, c: dict, h: Array, h_new: Array, peek):
  """The exit criterion after a loop: (bool [B], the carry entries it updates: the new logits
  for kl, the new survival product prod (1 - lambda_j) for gate)."""
  crit = exit_spec.criterion
  if crit == "none":
    return jnp.zeros(h.shape[0], bool), {}
  if crit == "residual":  # the same measures as the analysis' adaptive exit
    residual = jax.vmap(relative_residual)(h.astype(jnp.float32), h_new.astype(jnp.float32))
    return residual < exit_spec.threshold, {}
  if crit == "kl":
    logits = peek(h_new)
    return jax.vmap(kl_between)(logits, c["logits"]) < exit_spec.threshold, {"logits": logits}
  lam = jax.nn.sigmoid(model.exit_logits(h_new)[:, 0])
  survive = c["survive"] * (1.0 - lam)
  return 1.0 - survive >= exit_spec.threshold, {"survive": survive}


def _select(mask: Array, a: Array, b: Array) -> Array:
  return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)


def _fill_skipped(core, written: Array, last_slot: Array, position: Array):
  """Gives every slot this token did not write (loops it skipped) its last written key and
  value at `position`. written bool [S, B], last_slot int32 [B]."""

  def one(cache):  # [S, k, B, T, H, Dh]
    s, k, b, _, h, d = cache.shape
    entry = jax.lax.dynamic_slice_in_dim(cache, position, 1, axis=3)  # [S, k, B, 1, H, Dh]
    latest = jnp.take_along_axis(entry, last_slot[None, None, :, None, None, None], axis=0)
    keep = written[:, None, :, None, None, None]
    return jax.lax.dynamic_update_slice_in_dim(cache, jnp.where(keep, entry, latest), position,
                                               axis=3)

  return one(core[0]), one(core[1])


# -- whole sequences ----------------------------------------------------------------------------


def _scan_tokens(model, cache, tokens: Array, start: int, num_loops, cache_spec, exit_spec):
  """decode_step over tokens [B, N] at positions start.. -> (Decoded, cache)."""

  def step(cache, xs):
    token, position = xs
    logits, cache, loops = decode_step(model, cache, token, position, num_loops, cache_spec,
                                       exit_spec)
    return cache, (logits, loops)

  positions = start + jnp.arange(tokens.shape[1], dtype=jnp.int32)
  cache, (logits, loops) = jax.lax.scan(step, cache, (tokens.T, positions))
  return Decoded(jnp.swapaxes(logits, 0, 1), loops.T), cache


def decode_tokens(graphdef: nnx.GraphDef, params: Any, tokens: Array, *, num_loops: int,
                  cache_spec: CacheSpec = CacheSpec(), exit_spec: ExitSpec = ExitSpec()
                  ) -> Decoded:
  """Teacher-forced decoding of tokens [B, N] one position at a time, as generation sees
  them: the next-token logits after each token and the loops each one ran. With the
  per_loop cache and no exit, logits equal the full forward pass's (up to float rounding)."""
  check(graphdef, params, tokens.shape[1], num_loops, cache_spec, exit_spec)
  return _decode_tokens(graphdef, params, tokens, num_loops=num_loops, cache_spec=cache_spec,
                        exit_spec=exit_spec)


def check(graphdef, params, length: int, num_loops: int, cache_spec: CacheSpec = CacheSpec(),
          exit_spec: ExitSpec = ExitSpec()) -> None:
  """ConfigError (one sentence) for settings decoding does not support: `check_spec`, a loop
  count < 1, or more positions than learned position embeddings have."""
  spec = nnx.merge(graphdef, params).spec
  check_spec(spec, cache_spec, exit_spec)
  if num_loops < 1:
    raise ConfigError(f"the loop count must be >= 1, not {num_loops}.")
  if spec.position == "learned" and length > spec.max_len:
    raise ConfigError(f"{length} positions exceed the model's {spec.max_len} learned position "
                      "embeddings (model.max_len); generate fewer tokens or use a shorter prompt.")


@functools.partial(jax.jit, static_argnames=("graphdef", "num_loops", "cache_spec",
                                             "exit_spec"))
def _decode_tokens(graphdef, params, tokens, *, num_loops, cache_spec, exit_spec) -> Decoded:
  model = nnx.merge(graphdef, params)
  if model.spec.plt:
    from looped_jax.models import plt  # pylint: disable=import-outside-toplevel
    return plt.decode_tokens(model, tokens, num_loops)
  cache = init_cache(model, tokens.shape[0], tokens.shape[1], cache_spec, num_loops)
  return _scan_tokens(model, cache, tokens, 0, num_loops, cache_spec, exit_spec)[0]


class Generated(NamedTuple):
  tokens: Array  # int32 [B, N] the generated tokens
  loops: Array  # int32 [B, P + N - 1]: loops run on each prompt and generated token fed in


def generate(graphdef: nnx.GraphDef, params: Any, prompt: Array, key: Array, *,
             max_new_tokens: int, num_loops: int, cache_spec: CacheSpec = CacheSpec(),
             exit_spec: ExitSpec = ExitSpec(), temperature: float = 0.0,
             top_k: int = 0) -> Generated:
  """Continues prompt int32 [B, P] by max_new_tokens >= 1 tokens: greedy (temperature 0) or
  sampled from softmax(logits / temperature), restricted to the top_k most likely (0 = all).
  The prompt is fed one token at a time, as generated tokens are (prefill = decoding)."""
  if max_new_tokens < 1 or prompt.shape[1] < 1:
    raise ConfigError("generation needs a prompt of at least one token and max_new_tokens >= 1.")
  check(graphdef, params, prompt.shape[1] + max_new_tokens - 1, num_loops, cache_spec, exit_spec)
  return _generate(graphdef, params, prompt, key, max_new_tokens=max_new_tokens,
                   num_loops=num_loops, cache_spec=cache_spec, exit_spec=exit_spec,
                   temperature=float(temperature), top_k=top_k)


@functools.partial(jax.jit, static_argnames=("graphdef", "num_loops", "max_new_tokens",
                                             "cache_spec", "exit_spec", "temperature", "top_k"))
def _generate(graphdef, params, prompt, key, *, max_new_tokens, num_loops, cache_spec,
              exit_spec, temperature, top_k) -> Generated:
  model = nnx.merge(graphdef, params)
  if model.spec.plt:
    from looped_jax.models import plt  # pylint: disable=import-outside-toplevel
    run = functools.partial(plt.decode_steps, model, num_loops=num_loops)
  else:
    run = functools.partial(_scan_tokens, model, num_loops=num_loops, cache_spec=cache_spec,
                            exit_spec=exit_spec)
  batch, length = prompt.shape
  total = length + max_new_tokens - 1
  cache = (plt.init_state(model, batch, total, num_loops) if model.spec.plt else
           init_cache(model, batch, total, cache_spec, num_loops))
  first, cache = run(cache=cache, tokens=prompt, start=0)
  keys = jax.random.split(key, max_new_tokens)

  def choose(logits, k):
    if temperature == 0.0:
      return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    if top_k:
      kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
      logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(k, logits).astype(jnp.int32)

  def step(carry, xs):
    cache, token = carry
    k, position = xs
    out, cache = run(cache=cache, tokens=token[:, None], start=position)
    new = choose(out.logits[:, 0], k)
    return (cache, new), (new, out.loops[:, 0])

  token0 = choose(first.logits[:, -1], keys[0])
  positions = length + jnp.arange(max_new_tokens - 1, dtype=jnp.int32)
  _, (tokens, loops) = jax.lax.scan(step, (cache, token0), (keys[1:], positions))
  tokens = jnp.concatenate([token0[:, None], tokens.T], axis=1)
  return Generated(tokens, jnp.concatenate([first.loops, loops.T], axis=1))
