"""The looped transformer family: k distinct layers applied L times (k⊗L).

  e   = prelude(embed(inputs) (+ positions))        [B, n, D]   (prelude: P blocks, once)
  h_0 = e  or  0  or  N(0, sigma^2)                 (init_state)
  h_t = loop(h_{t-1}, e) for t = 1..L, where loop = inject -> (+ positions) -> layer_1..k
                                                     -> (ln_f)
  out = head(final_norm(coda(h_L)))                 [B, n, output_dim]   (coda: C blocks, once)

Single-Attn is k=1, L=1; Looped-Attn k=1, L>1; a standard N-layer transformer k=N, L=1.
L is a call argument, so one parameter tree runs at any loop count. Loops run under
`jax.lax.scan` (the compiled size does not grow with L) and the k layers under an inner
scan over their stacked parameters. The first L - T loops can run under stop_gradient
(truncated backprop, Yang et al.), and the last T loops can each emit a read-out. A window of
at most `unroll` loops is unrolled into straight-line code instead (faster on CPU: a scan's
backward pass stacks every loop's residuals into buffers it must zero, fill and slice; costs
compile time linear in T). A single layer is applied without the inner scan.
`forward_dynamic` takes the loop counts as traced integers instead (random depth, progressive
loss): one compilation serves every count.
Intra-layer recurrence (`layer_loops = (r_1, ..., r_k)`, Nguyen & Lin): inside each loop,
layer i runs r_i times in a row before layer i + 1; all ones is the plain stack.

Prelude / core / coda (Geiping et al.): `prelude_layers` P and `coda_layers` C distinct blocks
run once before and after the looped core; with P = C = 0 (the default) the model and its
parameter tree are exactly the plain k⊗L model. The prelude output is e, the injected input.
A random initial state (`init_state="random"`) draws h_0 per sequence from N(0, sigma^2)
truncated at +-3 sigma (Geiping); the caller passes the key (the train step: one per step;
without a key, a fixed key(0), so evaluation is deterministic).

Recursion (`recursion="trm" | "hrm"`, Tiny Recursive Model / Hierarchical Reasoning Model):
the state is [y; z] [B, n, 2D] from two fixed vectors, one loop is `recursion_step` (T cycles
of n updates z <- f(z + y + x) and one y <- f(y + z), gradients only through the last
updates), the read-out and the halting head see y. docs/recursive_reasoning.md.

Injection: none | add (f(h + e), Yang) | concat (f(W[h; e]), recall) | internal (W_x e added
to the MLP input inside every block, Labovich). Outer norm: `state_norm="rms"` normalises the
state after every loop. Timestep conditioning: zero-initialised per-loop adaLN gates and
scales from the loop index (Xu & Sato; it scales the block's own LayerNorm outputs, where
the paper uses RMSNorm without affine, a documented choice). New variants belong in
`_inject` / `loop`, not in a copy of this class.

Generation with KV caches (models/decode.py) and the Parallel Loop Transformer
(`plt=True`, models/plt.py) run these same `encode` / `loop` / `readout` methods, passing each
layer a replacement self-attention (`attention=`, layers.AttentionFn). Ouro's exit gate
(`exit_gate=True`) adds `exit_logits`, trained by train/step.py's `exit_gate_loss`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from looped_jax.models import layers
from looped_jax.models.init import ParamInit, truncated_normal

REMAT_POLICIES = {
    "full": None,  # save nothing inside a loop body: recompute it in the backward pass
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Static description of one model: the `model` config section plus the task's shapes."""

  input_kind: str  # "tokens" | "vectors"
  vocab_size: int  # token ids, or the input vector width
  output_dim: int
  max_len: int
  block: str = "gpt2"
  attention: str = "softmax"
  causal: bool = True
  d_model: int = 64
  num_heads: int = 4
  mlp_ratio: int = 4
  use_bias: bool = True
  pre_norm: bool = True
  dropout: float = 0.0
  num_layers: int = 1
  num_loops: int = 1
  layer_loops: tuple[int, ...] = ()
  injection: str = "none"
  state_norm: str = "none"
  timestep: bool = False
  init_state: str = "input"
  init_sigma: float = 1.0
  prelude_layers: int = 0
  coda_layers: int = 0
  position: str = "learned"
  position_in_loop: bool = False
  norm_in_loop: bool = False
  final_norm: bool = True
  layer_norm_eps: float = 1e-6
  init: str = "gpt2"
  head_bias: bool = True
  recursion: str = "none"
  inner_loops: int = 6
  outer_cycles: int = 3
  high_layers: int = 0
  halting: bool = False
  exit_gate: bool = False
  plt: bool = False
  plt_window: int = 64
  remat: str = "none"
  unroll: int = 0
  dtype: str = "float32"

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def state_width(self) -> int:
    """The loop state's width: D, or 2D for a recursion state [y; z]."""
    return self.d_model * (1 if self.recursion == "none" else 2)

  @classmethod
  def from_config(cls, model_config: Any, task) -> "ModelSpec":
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in dict(model_config).items() if k in fields and k != "max_len"}
    kwargs["layer_loops"] = tuple(int(r) for r in kwargs.get("layer_loops", ()))
    max_len = model_config.get("max_len", 0) or task.seq_len
    return cls(input_kind=task.input_kind, vocab_size=task.vocab_size,
               output_dim=task.output_dim, max_len=max_len, **kwargs)


class LoopedTransformer(nnx.Module):
  """See the module docstring. Parameters are float32; `spec.dtype` is the compute dtype."""

  def __init__(self, spec: ModelSpec, *, rngs: nnx.Rngs):
    self.spec = spec
    d, dt = spec.d_model, spec.compute_dtype
    # One initializer per parameter family (models/init.py); the residual projections are
    # scaled by the distinct layers k, as GPT-2's by its depth.
    init = ParamInit(spec.init, spec.num_layers)
    if spec.input_kind == "tokens":
      self.embedding = nnx.Embed(spec.vocab_size, d, embedding_init=init.token_embedding(d),
                                 dtype=dt, rngs=rngs)
    else:
      self.embedding = layers.linear(spec.vocab_size, d, init.read_in(spec.vocab_size),
                                     use_bias=True, rngs=rngs, dtype=dt)
    self.embedding_multiplier = init.embedding_multiplier(d) if spec.input_kind == "tokens" else 1.0
    self.positions = (nnx.Param(init.positions(d)(rngs.params(), (spec.max_len, d)))
                      if spec.position == "learned" else None)
    self.adapter = (layers.linear(2 * d, d, init.hidden(), use_bias=spec.use_bias, rngs=rngs,
                                  dtype=dt)
                    if spec.injection == "concat" else None)
    self.recall = (layers.linear(d, d, init.hidden(), use_bias=spec.use_bias, rngs=rngs,
                                 dtype=dt)
                   if spec.injection == "internal" else None)
    self.timestep = (layers.TimestepModulation(d, init=init, rngs=rngs) if spec.timestep
                     else None)
    block_cls = layers.BLOCKS[spec.block]

    def make_stack(count, gated=False):
      @nnx.split_rngs(splits=count)
      @nnx.vmap(in_axes=(0,), out_axes=0)
      def make(rngs):
        return block_cls(spec, init=init, rngs=rngs, gated=gated)
      return make(rngs)

    # every parameter has a leading axis of size k; PLT's G-SWA gates: the looped core only
    self.layers = make_stack(spec.num_layers, gated=spec.plt)
    self.ln_f = (layers.layer_norm(d, rngs, dt, spec.layer_norm_eps)
                 if spec.final_norm or spec.norm_in_loop else None)
    self.head = layers.linear(d, spec.output_dim, init.read_out(d), use_bias=spec.head_bias,
                              rngs=rngs, dtype=dt)
    # Created last, so the other parameters draw the same initial values as without them.
    self.prelude = make_stack(spec.prelude_layers) if spec.prelude_layers else None
    self.coda = make_stack(spec.coda_layers) if spec.coda_layers else None
    self.high_layers = (make_stack(spec.high_layers or spec.num_layers)
                        if spec.recursion == "hrm" else None)
    self.halt_head = (layers.linear(d, 2, init.halt(), use_bias=True, rngs=rngs)
                      if spec.halting else None)
    # Ouro's exit gate lambda_t = sigmoid(w . ln_f(h_t) + b), b = 0: lambda = 1/2 at the start.
    self.exit_head = (layers.linear(d, 1, init.hidden(), use_bias=True, rngs=rngs)
                      if spec.exit_gate else None)

  # -- the pieces, usable one by one (fixed-point analysis calls `loop` directly) --

  def embed(self, inputs: jax.Array, offset: jax.Array | int = 0) -> jax.Array:
    """[B, n] ids or [B, n, d_in] vectors at positions offset.. -> e [B, n, D]."""
    e = self.embedding(inputs)
    if self.embedding_multiplier != 1.0:
      e = e * self.embedding_multiplier
    if self.positions is not None and not self.spec.position_in_loop:
      e = e + self.position_embedding(offset, e.shape[1]).astype(e.dtype)
    return e.astype(self.spec.compute_dtype)

  def position_embedding(self, offset: jax.Array | int, n: int) -> jax.Array:
    """The learned position embeddings of positions offset, ..., offset + n - 1: [n, D]."""
    return jax.lax.dynamic_slice_in_dim(self.positions[...], offset, n)

  def encode(self, inputs: jax.Array, offset: jax.Array | int = 0, *,
             attention: layers.AttentionFn | None = None, layer_inputs: Any = None):
    """[B, n] ids or [B, n, d_in] vectors -> e [B, n, D]: embedding, then the prelude.
    attention / layer_inputs: see `loop`; then returns (e, the prelude's extras)."""
    e = self.embed(inputs, offset)
    if self.prelude is None:
      return e if attention is None else (e, None)
    return _apply_layers(self.prelude, e, attention=attention, layer_inputs=layer_inputs)

  def initial_state(self, e: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """h_0 [B, n, D] for injection e. `key` feeds init_state="random" (default key(0)).

    A recursion starts from [y_0; z_0] [B, n, 2D], the same two vectors at every position."""
    if self.spec.recursion != "none":
      return recursion_start(self.spec.d_model, e)
    mode = self.spec.init_state
    if mode == "input":
      return e
    if mode == "zeros":
      return jnp.zeros_like(e)
    key = jax.random.key(0) if key is None else key
    noise = jax.random.truncated_normal(key, -3.0, 3.0, e.shape, jnp.float32)
    return (self.spec.init_sigma * noise).astype(e.dtype)

  def _inject(self, h: jax.Array, e: jax.Array) -> jax.Array:
    mode = self.spec.injection
    if mode == "add":
      return h + e
    if mode == "concat":
      return self.adapter(jnp.concatenate([h, e], axis=-1))
    return h

  def loop(self, h: jax.Array, e: jax.Array, key: jax.Array | None = None,
           t: jax.Array | int = 0, *, offset: jax.Array | int = 0,
           attention: Any = None, layer_inputs: Any = None):
    """One application of the k-layer stack: h_t = loop(h_{t-1}, e). [B, n, D] each.

    t is the 0-based loop index (used by timestep conditioning only); offset the position of
    the first of the n positions (a decoding step's). A recursion (`spec.recursion`) takes one
    TRM / HRM step instead: see `recursion_step`.
    attention: a function of one layer's slice of `layer_inputs` (leading axis k) that
    returns that layer's replacement self-attention (layers.AttentionFn), e.g. one reading
    that layer's KV cache; the loop then returns (h, the layers' extras stacked [k, ...]).
    """
    if self.spec.recursion != "none":
      return self.recursion_step(h, e)
    h = self._inject(h, e)
    recall = self.recall(e) if self.recall is not None else None
    modulation = self.timestep(t) if self.timestep is not None else None
    if self.positions is not None and self.spec.position_in_loop:
      h = h + self.position_embedding(offset, h.shape[1]).astype(h.dtype)
    out = _apply_layers(self.layers, h, key, recall=recall, modulation=modulation,
                        attention=attention, layer_inputs=layer_inputs,
                        repeats=self.spec.layer_loops or None)
    h, extras = out if attention is not None else (out, None)
    if self.spec.norm_in_loop:
      h = self.ln_f(h)
    if self.spec.state_norm == "rms":  # outer normalisation (Labovich): RMSNorm, no affine
      h = h * jax.lax.rsqrt(jnp.mean(jnp.square(h), axis=-1, keepdims=True) + 1e-6)
    return h if attention is None else (h, extras)

  def recursion_step(self, h: jax.Array, e: jax.Array) -> jax.Array:
    """One step of a recursion, h = [y; z] [B, n, 2D] -> [B, n, 2D] (x = e):

      cycle:  z <- f_L(z + y + x)  n times (n = inner_loops),  then  y <- f_H(y + z)

    repeated T = outer_cycles times. trm (Tiny Recursive Model): f_L = f_H = the k-layer
    stack; the first T - 1 cycles run without gradient, the last with. hrm (Hierarchical
    Reasoning Model): f_H is a second stack (`high_layers`); only the last z and the last y
    update get gradients (HRM's one-step gradient). "Without gradient": those updates see the
    parameters and x under stop_gradient, so they add nothing to a parameter's gradient.
    The state itself flows through them, so the step's derivative in h is exact (fixed-point
    analysis); a loss reaches an earlier loop through them only if the step's input h carries
    a gradient, which deep supervision's carried state and grad_loops=1 do not (as the
    reference, whose steps start from detached states). Each update adds its input injection
    to the state and applies the stack (the reference's ReasoningModule).
    """
    d, n, cycles = self.spec.d_model, self.spec.inner_loops, self.spec.outer_cycles
    hrm = self.spec.recursion == "hrm"
    graphdef, state = nnx.split(self)
    frozen = nnx.merge(graphdef, jax.lax.stop_gradient(state))
    y, z = h[..., :d], h[..., d:]

    def updates(model, y, z, x, z_updates, y_update):
      high = model.high_layers if hrm else model.layers
      z = jax.lax.fori_loop(0, z_updates, lambda _, z: _apply_layers(model.layers, z + y + x), z)
      return (_apply_layers(high, y + z) if y_update else y), z

    # Without gradient: the first T - 1 cycles (and, for hrm, all but one z update of the last).
    x_frozen = jax.lax.stop_gradient(e)
    for _ in range(cycles - 1):
      y, z = updates(frozen, y, z, x_frozen, n, True)
    if hrm and n > 1:
      y, z = updates(frozen, y, z, x_frozen, n - 1, False)
    y, z = updates(self, y, z, e, 1 if hrm else n, True)
    return jnp.concatenate([y, z], axis=-1)

  def answer_state(self, h: jax.Array) -> jax.Array:
    """The part of a loop state [B, n, state_width] that the read-out sees: y, or all of h."""
    return h[..., :self.spec.d_model] if self.spec.recursion != "none" else h

  def halt_logits(self, h: jax.Array) -> jax.Array:
    """(q_halt, q_continue) [B, 2] of the halting head, read from the mean over positions of
    the answer state (the reference reads a puzzle-embedding position this model lacks)."""
    pooled = jnp.mean(self.answer_state(h).astype(jnp.float32), axis=1)
    return self.halt_head(pooled)

  def run_loops(self, h: jax.Array, e: jax.Array, num_loops: int, *, start: int = 0,
                key: jax.Array | None = None) -> jax.Array:
    """`num_loops` more loops from state h [B, n, D] with injection e [B, n, D] (from
    `encode`), loop indices start, start + 1, ...: the state after them, [B, n, D]. `key`:
    dropout. `run_loops(initial_state(e), e, L)` is the state the read-out of L loops sees."""
    loop = self._loop_fn(e, key)  # the forward pass's loop: same remat, same dropout keys
    h, _ = jax.lax.scan(lambda h, t: (loop(h, t), None), h, start + jnp.arange(num_loops))
    return h

  def readout(self, h: jax.Array, *, attention: Any = None, layer_inputs: Any = None):
    """State [B, n, D] -> outputs [B, n, output_dim]: coda, final norm, head. Outputs are
    in at least float32 (a bfloat16 model's losses in float32; a float64 one stays float64).
    attention / layer_inputs: see `loop` (for the coda); then returns (outputs, extras)."""
    h = self.answer_state(h)
    extras = None
    if self.coda is not None:
      h = _apply_layers(self.coda, h, attention=attention, layer_inputs=layer_inputs)
      if attention is not None:
        h, extras = h
    out = self.head(self._final_norm(h))
    out = out.astype(jnp.promote_types(out.dtype, jnp.float32))
    return out if attention is None else (out, extras)

  def _final_norm(self, h: jax.Array) -> jax.Array:
    return self.ln_f(h) if self.ln_f is not None and not self.spec.norm_in_loop else h

  def exit_logits(self, h: jax.Array) -> jax.Array:
    """Ouro's exit-gate logit per position of state h [B, n, D] -> [B, n] float32 (the exit
    probability lambda_t = sigmoid of it), read from the final-normed state (before any coda)."""
    out = self.exit_head(self._final_norm(self.answer_state(h)))[..., 0]
    return out.astype(jnp.promote_types(out.dtype, jnp.float32))

  # -- the whole forward pass --

  def __call__(self, inputs: jax.Array, num_loops: int | None = None, *, grad_loops: int = 0,
               per_loop: bool = False, dropout_key: jax.Array | None = None,
               state_key: jax.Array | None = None) -> jax.Array:
    """Runs `num_loops` loops (default spec.num_loops).

    grad_loops: T > 0 runs the first L - T loops under stop_gradient (truncated backprop).
    per_loop: return the read-out of each of the last T loops (all L when T = 0),
      [T, B, n, output_dim]; otherwise the final read-out [B, n, output_dim].
    state_key: key of the random initial state (init_state="random").
    """
    num_loops = self.spec.num_loops if num_loops is None else num_loops
    if num_loops < 1:
      raise ValueError(f"num_loops={num_loops} must be >= 1.")
    if self.spec.plt:  # the Parallel Loop Transformer's shifted pass (models/plt.py)
      from looped_jax.models import plt  # pylint: disable=import-outside-toplevel
      return plt.forward(self, inputs, num_loops, per_loop=per_loop, dropout_key=dropout_key)
    e = self.encode(inputs)
    h, outs = self.advance(self.initial_state(e, state_key), e, num_loops, grad_loops=grad_loops,
                           per_loop=per_loop, dropout_key=dropout_key)
    return outs if per_loop else self.readout(h)

  def advance(self, h: jax.Array, e: jax.Array, num_loops: int, *, grad_loops: int = 0,
              per_loop: bool = False, dropout_key: jax.Array | None = None,
              ) -> tuple[jax.Array, jax.Array | None]:
    """`num_loops` loops from state h [B, n, S] with injection e [B, n, D], the first
    num_loops - grad_loops of them under stop_gradient (all with gradient when grad_loops is
    0): (the state after them [B, n, S], the read-outs of the loops with gradient
    [T, B, n, C] if per_loop else None). Loop indices count from 0.
    """
    window = num_loops if grad_loops <= 0 else min(grad_loops, num_loops)
    loop = self._loop_fn(e, dropout_key)
    if num_loops > window:
      h = jax.lax.stop_gradient(self.run_loops(h, e, num_loops - window, key=dropout_key))

    def emit(h, t):
      h = loop(h, t)
      return h, (self.readout(h) if per_loop else None)

    ts = jnp.arange(num_loops - window, num_loops)
    if window <= self.spec.unroll:  # straight-line code: no stacked residual buffers
      outs = []
      for i in range(window):
        h, out = emit(h, ts[i])
        outs.append(out)
      outs = jnp.stack(outs) if per_loop else None
    else:
      h, outs = jax.lax.scan(emit, h, ts)
    return h, outs

  def forward_dynamic(self, inputs: jax.Array, *, warm_loops: jax.Array | int,
                      active_loops: jax.Array | int, window: int, per_loop: bool = False,
                      dropout_key: jax.Array | None = None,
                      state_key: jax.Array | None = None):
    """Loops with traced counts: one compilation for every count.

    First `warm_loops` n (traced, >= 0) loops run forward only from h_0 with the parameters
    and e under stop_gradient, in a `lax.while_loop` (cost: n loops, no backward pass); with
    n = 0 nothing is detached (h_0 = e keeps its gradient, as in `__call__`). Then
    `window` W (static) loop slots with gradients follow, of which the first `active_loops`
    a (traced, 1 <= a <= W) apply the loop and the rest are the identity (a masked
    `lax.scan`: cost W loops forward and backward, which is what makes the count dynamic
    under reverse-mode differentiation). Loop indices (timestep conditioning, dropout keys)
    continue from n: n, n + 1, ..., n + a - 1, so n = 0, a = W equals `__call__` at W loops.

    Returns the final read-out [B, n, C]; with per_loop, (read-outs after every slot
    [W, B, n, C], mask [W] float32 = 1 on the a active slots).
    """
    e = self.encode(inputs)
    h = self.initial_state(e, state_key)
    # The warm start sees constants only: no tangent reaches the while_loop (which has no
    # reverse-mode rule) and no gradient reaches the parameters through it.
    graphdef, state = nnx.split(self)
    frozen = nnx.merge(graphdef, jax.lax.stop_gradient(state))
    warm_loop = frozen._loop_fn(jax.lax.stop_gradient(e), dropout_key)
    warm = jnp.asarray(warm_loops, jnp.int32)
    h_warm = jax.lax.fori_loop(0, warm, lambda t, h: warm_loop(h, t), jax.lax.stop_gradient(h))
    h = jnp.where(warm > 0, h_warm, h)  # n = 0: h_0 keeps its gradient (e.g. through h_0 = e)
    loop = self._loop_fn(e, dropout_key)
    active = jnp.asarray(active_loops, jnp.int32)

    def slot(h, i):
      # Inactive slots still compute the loop (static shapes) and keep the old state.
      h = jnp.where(i < active, loop(h, warm + i), h)
      return h, (self.readout(h) if per_loop else None)

    h, outs = jax.lax.scan(slot, h, jnp.arange(window, dtype=jnp.int32))
    if per_loop:
      return outs, (jnp.arange(window) < active).astype(jnp.float32)
    return self.readout(h)

  def loop_states(self, inputs: jax.Array, num_loops: int, *,
                  dropout_key: jax.Array | None = None,
                  state_key: jax.Array | None = None) -> jax.Array:
    """The state after every loop, [L, B, n, D], with gradients through all of them (the
    exit gate's training objective reads every loop)."""
    if self.spec.plt:
      from looped_jax.models import plt  # pylint: disable=import-outside-toplevel
      return plt.forward(self, inputs, num_loops, states=True, dropout_key=dropout_key)
    e = self.encode(inputs)
    loop = self._loop_fn(e, dropout_key)
    _, states = jax.lax.scan(lambda h, t: (loop(h, t),) * 2, self.initial_state(e, state_key),
                             jnp.arange(num_loops))
    return states

  def trajectory(self, inputs: jax.Array, num_loops: int,
                 state_key: jax.Array | None = None) -> jax.Array:
    """States after each loop, [L, B, n, D] (no read-out), for analysis."""
    e = self.encode(inputs)
    loop = self._loop_fn(e, None)

    def step(h, t):
      h = loop(h, t)
      return h, h

    _, states = jax.lax.scan(step, self.initial_state(e, state_key), jnp.arange(num_loops))
    return states

  def _loop_fn(self, e: jax.Array, dropout_key: jax.Array | None):
    """(h, t) -> h after loop t, with the configured remat policy around it."""

    def body(h, t):
      key = None if dropout_key is None else jax.random.fold_in(dropout_key, t)
      return self.loop(h, e, key, t)

    if self.spec.remat == "none":
      return body
    return jax.checkpoint(body, policy=REMAT_POLICIES[self.spec.remat])


def recursion_start(d_model: int, e: jax.Array) -> jax.Array:
  """[y_0; z_0] broadcast to e's [B, n] -> [B, n, 2D]: two fixed vectors, truncated N(0, 1) at
  ±2 standard deviations (the reference's H_init / L_init buffers, which are never trained;
  here drawn from a fixed key instead of the model seed, and not parameters)."""
  keys = jax.random.split(jax.random.key(0x5EED))
  y0, z0 = (truncated_normal(1.0)(k, (d_model,)) for k in keys)
  start = jnp.concatenate([y0, z0]).astype(e.dtype)
  return jnp.broadcast_to(start, (*e.shape[:-1], 2 * d_model))


def _apply_layers(stack: nnx.Module, h: jax.Array, key: jax.Array | None = None, *,
                  recall: jax.Array | None = None, modulation=None, attention=None,
                  layer_inputs: Any = None, repeats: tuple[int, ...] | None = None):
  """Applies a stack of k blocks (stacked parameters) in order: [B, n, D] -> [B, n, D].

  attention: a function of layer i's slice of `layer_inputs` (a pytree with leading axis k,
  or None) returning that block's replacement self-attention (layers.AttentionFn); then
  returns (h, the blocks' extras stacked on a leading axis k).
  repeats: intra-layer recurrence, (r_1, ..., r_k): block i is applied r_i times in a row
  (its parameters shared) before block i + 1; None or all ones is the plain stack."""
  layer_def, layer_params = nnx.split(stack)
  count = jax.tree.leaves(layer_params)[0].shape[0]
  keys = (jax.random.split(key, count) if key is not None else jnp.zeros((count,), jnp.uint32))

  def apply_layer(h, xs):
    params_i, key_i, inputs_i = xs
    block = nnx.merge(layer_def, params_i)
    out = block(h, key_i if key is not None else None, recall=recall, modulation=modulation,
                attention=None if attention is None else attention(inputs_i))
    return out if attention is not None else (out, None)

  if repeats is not None and any(r != 1 for r in repeats):
    if attention is not None or len(repeats) != count:
      raise ValueError(f"layer_loops={repeats} needs one loop count per layer ({count}) and "
                       "has no replacement attention (KV-cache decoding, PLT).")
    return _apply_repeated(layer_def, layer_params, h, keys if key is not None else None,
                           repeats, recall=recall, modulation=modulation)
  xs = (layer_params, keys, layer_inputs)
  if count == 1:  # no inner loop: XLA would stack its residuals in buffers
    h, extras = apply_layer(h, jax.tree.map(lambda x: x[0], xs))
    extras = jax.tree.map(lambda x: x[None], extras)
  else:
    h, extras = jax.lax.scan(apply_layer, h, xs)
  return h if attention is None else (h, extras)


def _apply_repeated(layer_def, layer_params, h: jax.Array, keys: jax.Array | None,
                    repeats: tuple[int, ...], *, recall=None, modulation=None) -> jax.Array:
  """Intra-layer recurrence (Nguyen & Lin, arXiv 2505.01855): block i applied repeats[i]
  times in a row. Each block's repeats run under a scan (compiled once per block); repeat j
  of block i draws dropout key fold_in(keys[i], j)."""
  for i, r in enumerate(repeats):
    block = nnx.merge(layer_def, jax.tree.map(lambda x, i=i: x[i], layer_params))

    def apply(h, j, block=block, i=i):
      key = None if keys is None else jax.random.fold_in(keys[i], j)
      return block(h, key, recall=recall, modulation=modulation), None

    h = apply(h, 0)[0] if r == 1 else jax.lax.scan(apply, h, jnp.arange(r))[0]
  return h
