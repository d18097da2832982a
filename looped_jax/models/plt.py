"""The Parallel Loop Transformer (Wu et al., "Parallel Loop Transformer for Efficient
Test-Time Computation Scaling", arXiv 2510.24824): a looped model whose L loops of one token
run in one pass at decoding time.

Training pass over a sequence x [B, n] (loops l = 1..L, the k-layer stack f):

  e = prelude(embed(x));  h^1 = f(h^0 + e)            h^0 = initial_state(e)
  h^l = f(shift(h^{l-1}) + e)   for l >= 2            shift: position i gets h^{l-1}_{i-1},
                                                      position 0 gets zeros
  logits = head(ln_f(coda(h^L)))

Cross-loop parallelism: loop l of token p reads loop l - 1 of token p - 1, which the previous
decoding step computed, so one decoding step runs all L loops of the new token side by side
(L rows through the k layers at once) and the cost in passes per token is that of a
one-loop model.

Attention: loop 1 is ordinary causal attention and its keys and values (K_1, V_1) are the only
full-length cache. A later loop l mixes attention to the shared K_1, V_1 with sliding-window
attention to its own keys and values (G-SWA):

  o = g * Attn(q_l; K_1, V_1) + (1 - g) * SWA(q_l; K_l, V_l; w),  g = sigmoid(W_g y + b_g)

with y the block's normed input, g per channel [D], w = model.plt_window (keys p - w + 1..p).
Choices where the paper's text leaves the detail open (docs/looped_lm.md): the shifted state
is added to the injected input e (model.injection = "add" is required), position 0 of a
shifted state is zero, the gate is per channel and the window w is a config option (64).

The training pass unrolls its L loops in Python (L is small; model.remat and model.unroll
do not apply to it). Decoding keeps K_1, V_1 for every position, a ring of the last w keys
and values for each of loops 2..L, and the L - 1 states of the previous token;
`decode_tokens` (one token at a time) equals `forward` (the whole sequence at once) up to
float rounding (tested).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from looped_jax.models import layers
from looped_jax.models.decode import (Decoded, cached_attention, once_run_caches, write_kv,
                                      zero_kv)

Array = jax.Array


def forward(model, inputs: Array, num_loops: int, *, per_loop: bool = False,
            states: bool = False, dropout_key: Array | None = None) -> Array:
  """The training pass: inputs [B, n] -> logits [B, n, V]; with per_loop the read-out of
  every loop [L, B, n, V]; with states the state after every loop [L, B, n, D]."""
  e = model.encode(inputs)
  n = e.shape[1]
  window = model.spec.plt_window

  def key_at(t):
    return None if dropout_key is None else jax.random.fold_in(dropout_key, t)

  def first_loop(_):
    def attention(attn: layers.Attention, y: Array):
      q, k, v = attn.project(y)
      return attn.output(layers.attend(q, k, v, layers.causal_mask(n), attn.kind)), (k, v)
    return attention

  def later_loop(kv1):
    def attention(attn: layers.Attention, y: Array):
      q, k, v = attn.project(y)
      shared = layers.attend(q, kv1[0], kv1[1], layers.causal_mask(n), attn.kind)
      local = layers.attend(q, k, v, layers.causal_mask(n, window=window), attn.kind)
      return attn.output(_mix(attn, y, shared, local)), None
    return attention

  h, kv1 = model.loop(model.initial_state(e), e, key_at(0), 0, attention=first_loop)
  history = [h]
  for t in range(1, num_loops):
    shifted = jnp.pad(h[:, :-1], ((0, 0), (1, 0), (0, 0)))
    h, _ = model.loop(shifted, e, key_at(t), t, attention=later_loop, layer_inputs=kv1)
    history.append(h)
  if states:
    return jnp.stack(history)
  if per_loop:
    return jnp.stack([model.readout(s) for s in history])
  return model.readout(h)


def _mix(attn: layers.Attention, y: Array, shared: Array, local: Array) -> Array:
  """g * shared + (1 - g) * local, heads [B, n, H, Dh] each; g = sigmoid(W_g y) [B, n, D]."""
  gate = jax.nn.sigmoid(attn.gate(y)).reshape(shared.shape)
  return gate * shared + (1.0 - gate) * local


# -- decoding ---------------------------------------------------------------------------------


def init_state(model, batch: int, length: int, num_loops: int) -> dict:
  """Empty decoding state for `length` positions: "shared": (K_1, V_1) [k, B, T, H, Dh];
  "window": (K, V) [k, L - 1, B, w, H, Dh], a ring of loops 2..L's last w keys and values;
  "previous": the previous token's states after loops 1..L-1 [L - 1, B, 1, D]; plus
  "prelude" / "coda" caches [P or C, B, T, H, Dh] if the model has them."""
  spec = model.spec
  return {"shared": zero_kv(spec, (spec.num_layers,), batch, length),
          "window": zero_kv(spec, (spec.num_layers, num_loops - 1), batch, spec.plt_window),
          "previous": jnp.zeros((num_loops - 1, batch, 1, spec.d_model), spec.compute_dtype),
          } | once_run_caches(spec, batch, length)


def cache_bytes(model, num_loops: int, length: int) -> int:
  """Bytes of keys, values and carried states that decoding `length` positions keeps."""
  spec = model.spec
  item = jnp.dtype(spec.compute_dtype).itemsize
  kv = 2 * spec.d_model * item
  full = (spec.num_layers + spec.prelude_layers + spec.coda_layers) * length * kv
  ring = (num_loops - 1) * spec.num_layers * spec.plt_window * kv
  return full + ring + (num_loops - 1) * spec.d_model * item


def decode_step(model, state: dict, tokens: Array, position: Array, num_loops: int):
  """All L loops of tokens int32 [B] at `position` in one pass of L * B rows -> (logits
  [B, V] float32, the updated state)."""
  state = dict(state)
  batch, rows = tokens.shape[0], num_loops
  window = model.spec.plt_window
  x = tokens[:, None]
  if "prelude" in state:
    e, new = model.encode(x, position, attention=cached_attention(position),
                          layer_inputs=state["prelude"])
    state["prelude"] = write_kv(state["prelude"], new, position)
  else:
    e = model.encode(x, position)
  # Row l (0-based) runs loop l + 1: row 0 from the initial state, row l from the previous
  # token's state after loop l.
  h = jnp.concatenate([model.initial_state(e)[None], state["previous"]])  # [L, B, 1, D]
  e_rows = jnp.broadcast_to(e, (rows, *e.shape))
  ring_positions = position - 1 - (position - 1 - jnp.arange(window)) % window  # [w]
  ring_valid = (ring_positions >= 0) & (ring_positions > position - window)

  def for_layer(inputs):
    (k_shared, v_shared), (k_ring, v_ring) = inputs  # [B, T, H, Dh], [L - 1, B, w, H, Dh]

    def attention(attn: layers.Attention, y: Array):  # y [L * B, 1, D]
      q, k, v = (a.reshape(rows, batch, *a.shape[1:]) for a in attn.project(y, position))
      keys = jnp.concatenate([k_shared, k[0]], axis=1)  # [B, T + 1, H, Dh]
      values = jnp.concatenate([v_shared, v[0]], axis=1)
      mask = jnp.append(jnp.arange(k_shared.shape[1]) < position, True)
      shared = layers.attend(jnp.swapaxes(q[:, :, 0], 0, 1), keys, values, mask, attn.kind)
      heads = jnp.swapaxes(shared, 0, 1)[:, :, None]  # [L, B, 1, H, Dh]
      if rows > 1:
        local_mask = jnp.append(ring_valid, True)
        local = jax.vmap(lambda q_l, k_l, v_l: layers.attend(q_l, k_l, v_l, local_mask,
                                                             attn.kind))(
            q[1:], jnp.concatenate([k_ring, k[1:]], axis=2),
            jnp.concatenate([v_ring, v[1:]], axis=2))  # [L - 1, B, 1, H, Dh]
        y_rows = y.reshape(rows, batch, 1, -1)[1:]
        mixed = jax.vmap(lambda y_l, s_l, o_l: _mix(attn, y_l, s_l, o_l))(
            y_rows, heads[1:], local)
        heads = jnp.concatenate([heads[:1], mixed])
      return attn.output(heads.reshape(rows * batch, 1, *heads.shape[3:])), (k, v)

    return attention

  d = model.spec.d_model
  out, (k_new, v_new) = model.loop(h.reshape(rows * batch, 1, d),
                                   e_rows.reshape(rows * batch, 1, d), None, 0,
                                   offset=position, attention=for_layer,
                                   layer_inputs=(state["shared"], state["window"]))
  out = out.reshape(rows, batch, 1, d)  # k_new, v_new: [k, L, B, 1, H, Dh]
  state["shared"] = write_kv(state["shared"], (k_new[:, 0], v_new[:, 0]), position)
  if rows > 1:
    ring_new = (k_new[:, 1:], v_new[:, 1:])  # [k, L - 1, B, 1, H, Dh]
    state["window"] = tuple(
        jax.lax.dynamic_update_slice_in_dim(old, new.astype(old.dtype), position % window,
                                            axis=3)
        for old, new in zip(state["window"], ring_new))
    state["previous"] = out[:-1]
  if "coda" in state:
    logits, new = model.readout(out[-1], attention=cached_attention(position),
                                layer_inputs=state["coda"])
    state["coda"] = write_kv(state["coda"], new, position)
  else:
    logits = model.readout(out[-1])
  return logits[:, 0], state


def decode_steps(model, *, cache: dict, tokens: Array, start, num_loops: int):
  """decode_step over tokens [B, N] at positions start.. -> (Decoded, state)."""

  def step(state, xs):
    token, position = xs
    logits, state = decode_step(model, state, token, position, num_loops)
    return state, logits

  positions = start + jnp.arange(tokens.shape[1], dtype=jnp.int32)
  state, logits = jax.lax.scan(step, cache, (tokens.T, positions))
  loops = jnp.full(tokens.shape, num_loops, jnp.int32)
  return Decoded(jnp.swapaxes(logits, 0, 1), loops), state


def decode_tokens(model, tokens: Array, num_loops: int) -> Decoded:
  """Teacher-forced decoding of tokens [B, N], one token (all its loops) per pass."""
  state = init_state(model, tokens.shape[0], tokens.shape[1], num_loops)
  return decode_steps(model, cache=state, tokens=tokens, start=0, num_loops=num_loops)[0]
