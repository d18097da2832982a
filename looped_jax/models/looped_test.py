"""The loop is what it claims to be: checked against explicit Python loops over the blocks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from looped_jax import models
from looped_jax.config import base_config
from looped_jax.models import layers


@dataclasses.dataclass
class FakeTask:
  input_kind: str = "tokens"
  vocab_size: int = 11
  output_dim: int = 7
  seq_len: int = 9


def build(task=FakeTask(), **model):
  cfg = base_config().model
  cfg.d_model, cfg.num_heads = 16, 2
  cfg.update(model)
  return models.build(cfg, task, seed=3)


def tokens(batch=3, n=9, vocab=11):
  return jax.random.randint(jax.random.key(0), (batch, n), 0, vocab)


def layer(graphdef, params, i):
  """Block i of the stack as a standalone module (its slice of the stacked parameters)."""
  model = models.merge(graphdef, params)
  layer_def, layer_params = nnx.split(model.layers)
  return nnx.merge(layer_def, jax.tree.map(lambda x: x[i], layer_params))


def stack_block(stack, i):
  """Block i of a prelude/coda stack as a standalone module."""
  stack_def, stack_params = nnx.split(stack)
  return nnx.merge(stack_def, jax.tree.map(lambda x: x[i], stack_params))


def reference(graphdef, params, x, num_loops):
  """The forward pass written out with Python loops over loops and layers."""
  model = models.merge(graphdef, params)
  spec = model.spec
  e = model.embed(x)
  for i in range(spec.prelude_layers):
    e = stack_block(model.prelude, i)(e)
  h = e if spec.init_state == "input" else jnp.zeros_like(e)
  for t in range(num_loops):
    if spec.injection == "add":
      h = h + e
    elif spec.injection == "concat":
      h = model.adapter(jnp.concatenate([h, e], -1))
    if spec.position_in_loop:
      h = h + model.positions[: h.shape[1]]
    recall = model.recall(e) if spec.injection == "internal" else None
    modulation = model.timestep(t) if spec.timestep else None
    for i in range(spec.num_layers):
      h = layer(graphdef, params, i)(h, recall=recall, modulation=modulation)
    if spec.norm_in_loop:
      h = model.ln_f(h)
    if spec.state_norm == "rms":
      h = h / jnp.sqrt(jnp.mean(h**2, axis=-1, keepdims=True) + 1e-6)
  for i in range(spec.coda_layers):
    h = stack_block(model.coda, i)(h)
  if model.ln_f is not None and not spec.norm_in_loop:
    h = model.ln_f(h)
  return model.head(h)


@pytest.mark.parametrize("options", [
    dict(block="gpt2"),
    dict(block="attn_only", attention="linear", pre_norm=False),
    dict(block="gpt2", injection="add", init_state="zeros", position_in_loop=True,
         norm_in_loop=True),
    dict(block="gpt2", injection="concat", remat="full"),
    dict(block="gpt2", injection="internal", state_norm="rms", num_layers=2),
    dict(block="gpt2", timestep=True, perturb="timestep"),
    dict(block="gpt2", injection="concat", prelude_layers=2, coda_layers=1, num_layers=2),
    dict(block="gpt2", position="rope", injection="concat", state_norm="rms"),
])
@pytest.mark.slow
def test_scan_over_loops_equals_python_loop(options):
  options = dict(options)
  perturb = options.pop("perturb", None)
  graphdef, params = build(**options)
  if perturb:  # zero-initialised parameters would make the comparison trivial
    params[perturb] = jax.tree.map(
        lambda x: 0.1 * jax.random.normal(jax.random.key(x.size), x.shape), params[perturb])
  x = tokens()
  for loops in (1, 4):
    got = jax.jit(lambda p: models.apply(graphdef, p, x, loops))(params)
    np.testing.assert_allclose(got, reference(graphdef, params, x, loops), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_k_layers_once_equals_standard_stack():
  graphdef, params = build(num_layers=3, num_loops=1)
  model = models.merge(graphdef, params)
  x = tokens()
  h = model.embed(x)
  for i in range(3):  # a standard 3-layer transformer, layer by layer
    h = layer(graphdef, params, i)(h)
  np.testing.assert_allclose(models.apply(graphdef, params, x, 1), model.readout(h),
                             rtol=1e-5, atol=1e-5)
  # The three layers really are distinct.
  assert not np.allclose(params["layers"]["attn"]["qkv"]["kernel"][0],
                         params["layers"]["attn"]["qkv"]["kernel"][1])


@pytest.mark.slow
def test_single_and_looped_share_one_parameter_tree():
  g1, single = build(block="attn_only", num_loops=1)
  g3, looped = build(block="attn_only", num_loops=3)
  assert jax.tree.structure(single) == jax.tree.structure(looped)
  jax.tree.map(np.testing.assert_array_equal, single, looped)
  x = tokens()
  # The same parameters run at L=1 and L=3, and looping changes the function.
  out1 = models.apply(g3, single, x, 1)
  out3 = models.apply(g3, single, x, 3)
  np.testing.assert_allclose(out1, models.apply(g1, single, x), rtol=1e-6)
  np.testing.assert_allclose(out3, models.apply(g3, looped, x), rtol=1e-6)
  assert not np.allclose(out1, out3)


@pytest.mark.slow
def test_per_loop_readouts_and_truncated_window():
  graphdef, params = build(injection="add", init_state="zeros")
  x = tokens()
  outs = models.apply(graphdef, params, x, 5, grad_loops=3, per_loop=True)
  assert outs.shape == (3, 3, 9, 7)
  for j, loops in enumerate((3, 4, 5)):
    np.testing.assert_allclose(outs[j], models.apply(graphdef, params, x, loops), rtol=1e-5,
                               atol=1e-6)

  def loss(p, grad_loops):
    return jnp.sum(models.apply(graphdef, p, x, 5, grad_loops=grad_loops) ** 2)

  def truncated_by_hand(p):
    model = models.merge(graphdef, p)
    e = model.embed(x)
    h = jnp.zeros_like(e)
    for _ in range(2):
      h = model.loop(h, e)
    h = jax.lax.stop_gradient(h)
    for _ in range(3):
      h = model.loop(h, e)
    return jnp.sum(model.readout(h) ** 2)

  got, want = jax.grad(loss)(params, 3), jax.grad(truncated_by_hand)(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6), got, want)
  full = jax.grad(loss)(params, 0)
  assert not np.allclose(full["layers"]["attn"]["qkv"]["kernel"],
                         got["layers"]["attn"]["qkv"]["kernel"])


@pytest.mark.parametrize("policy", ["full", "dots", "dots_no_batch"])
@pytest.mark.slow
def test_remat_policies_keep_values_and_gradients(policy):
  g0, params = build(num_loops=3)
  g1, _ = build(num_loops=3, remat=policy)
  x = tokens()
  grad = lambda g: jax.grad(lambda p: jnp.sum(models.apply(g, p, x) ** 2))(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               grad(g0), grad(g1))


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.slow
def test_unrolled_window_keeps_values_and_gradients(num_layers):
  options = dict(num_layers=num_layers, injection="add", init_state="zeros")
  g_scan, params = build(**options)
  g_unrolled, _ = build(unroll=2, **options)
  x = tokens()

  @jax.jit
  def outputs_and_grads(p):
    f = lambda g: jax.value_and_grad(
        lambda p: jnp.sum(models.apply(g, p, x, 4, grad_loops=2, per_loop=True) ** 2))(p)
    return f(g_unrolled), f(g_scan)

  got, want = outputs_and_grads(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), got, want)
  if num_layers == 1:  # no inner layer scan: only the loop scans are left to count
    count = lambda w: str(jax.make_jaxpr(
        lambda p: models.apply(g_unrolled, p, x, 4, grad_loops=w))(params)).count("scan[")
    assert (count(2), count(3)) == (1, 2)  # the stop-gradient prefix; + the window's scan


@pytest.mark.slow
def test_vector_inputs_and_trajectory():
  task = FakeTask(input_kind="vectors", vocab_size=5, output_dim=1, seq_len=8)
  graphdef, params = build(task, injection="add", init_state="zeros", norm_in_loop=True)
  x = jax.random.normal(jax.random.key(1), (2, 8, 5))
  model = models.merge(graphdef, params)
  states = model.trajectory(x, 4)
  assert states.shape == (4, 2, 8, 16)
  np.testing.assert_allclose(model.readout(states[-1]), models.apply(graphdef, params, x, 4),
                             rtol=1e-5, atol=1e-6)


def test_causal_attention_ignores_the_future():
  graphdef, params = build(num_loops=3)
  x = tokens()
  y = x.at[:, 5:].set((x[:, 5:] + 1) % 11)
  a, b = models.apply(graphdef, params, x), models.apply(graphdef, params, y)
  np.testing.assert_allclose(a[:, :5], b[:, :5], rtol=1e-5, atol=1e-6)
  assert not np.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.slow
def test_rotary_scores_depend_on_relative_positions_only():
  q, k = jax.random.normal(jax.random.key(1), (2, 1, 6, 2, 8))
  scores = lambda q, k: jnp.einsum("bqhd,bkhd->bhqk", layers.rotary(q), layers.rotary(k))
  shift = 5  # the same queries and keys 5 positions later
  pad = lambda x: jnp.concatenate([jnp.ones((1, shift, 2, 8)), x], axis=1)
  np.testing.assert_allclose(scores(pad(q), pad(k))[..., shift:, shift:], scores(q, k),
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(layers.rotary(q)[:, 0], q[:, 0])  # position 0 is not rotated
  assert not np.allclose(scores(q, k), jnp.einsum("bqhd,bkhd->bhqk", q, k))


@pytest.mark.slow
def test_rope_breaks_permutation_symmetry_and_has_no_length_limit():
  perm = jnp.array([3, 0, 1, 2, 4, 5, 6, 7, 8])
  x = tokens()
  for position, equivariant in (("none", True), ("rope", False)):
    graphdef, params = build(num_loops=2, causal=False, position=position, max_len=4)
    assert "positions" not in set(params)
    out = models.apply(graphdef, params, x)  # 9 positions > max_len: nothing to run out of
    permuted = models.apply(graphdef, params, x[:, perm])
    assert np.allclose(out[:, perm], permuted, atol=1e-5) == equivariant


@pytest.mark.slow
def test_dropout_is_keyed_and_off_without_a_key():
  graphdef, params = build(dropout=0.5, num_loops=2)
  x = tokens()
  plain = models.apply(graphdef, params, x)
  np.testing.assert_array_equal(plain, models.apply(graphdef, params, x))
  k = jax.random.key(4)
  dropped = models.apply(graphdef, params, x, dropout_key=k)
  np.testing.assert_array_equal(dropped, models.apply(graphdef, params, x, dropout_key=k))
  assert not np.allclose(plain, dropped)
  assert layers.dropout(jnp.ones(4), 0.5, None).sum() == 4


def test_timestep_modulation_starts_as_identity():
  graphdef, params = build(timestep=True, block="gpt2", num_loops=4)
  model = models.merge(graphdef, params)
  x = tokens()
  states = model.trajectory(x, 4)
  np.testing.assert_allclose(states[-1], model.embed(x), rtol=0, atol=1e-6)
  # Gates open up per loop once trained: different loops get different modulations.
  params["timestep"] = jax.tree.map(lambda p: p + 0.1, params["timestep"])
  model = models.merge(graphdef, params)
  assert not np.allclose(model.timestep(0).attn_gate, model.timestep(3).attn_gate)


def test_outer_norm_keeps_state_on_the_sphere():
  graphdef, params = build(state_norm="rms", injection="internal", num_loops=6)
  states = models.merge(graphdef, params).trajectory(tokens(), 6)
  # Unit mean square up to the norm's eps (1e-6 against pre-norm states of size ~1e-3).
  np.testing.assert_allclose(jnp.mean(states**2, axis=-1), 1.0, rtol=1e-2)
  graphdef, params = build(injection="internal", num_loops=6)
  plain = models.merge(graphdef, params).trajectory(tokens(), 6)
  assert not np.allclose(jnp.mean(plain**2, axis=-1), 1.0, rtol=1e-1)


@pytest.mark.slow
def test_prelude_and_coda_default_off_leaves_the_parameter_tree():
  _, params = build(num_loops=3)
  assert set(params) == {"embedding", "positions", "layers", "ln_f", "head"}
  _, with_stacks = build(num_loops=3, prelude_layers=2, coda_layers=1)
  assert set(with_stacks) == set(params) | {"prelude", "coda"}
  assert with_stacks["prelude"]["mlp"]["up"]["kernel"].shape[0] == 2
  assert with_stacks["coda"]["mlp"]["up"]["kernel"].shape[0] == 1
  # The stacks are created last: every other initial parameter is that of the plain model.
  jax.tree.map(np.testing.assert_array_equal, params,
               {k: v for k, v in with_stacks.items() if k in params})


@pytest.mark.slow
def test_random_initial_state_is_per_sequence_keyed_and_truncated():
  graphdef, params = build(injection="concat", init_state="random", init_sigma=0.5)
  model = models.merge(graphdef, params)
  e = model.encode(tokens(batch=64))
  h0 = model.initial_state(e, jax.random.key(1))
  assert h0.shape == e.shape
  assert float(jnp.max(jnp.abs(h0))) <= 1.5 + 1e-6  # truncated at 3 sigma
  np.testing.assert_allclose(float(jnp.std(h0)), 0.5 * 0.9866, rtol=0.05)  # truncated std
  assert not np.allclose(h0[0], h0[1])  # one draw per sequence
  np.testing.assert_array_equal(h0, model.initial_state(e, jax.random.key(1)))
  np.testing.assert_array_equal(model.initial_state(e), model.initial_state(e, jax.random.key(0)))
  x = tokens()
  a = models.apply(graphdef, params, x, 2, state_key=jax.random.key(1))
  b = models.apply(graphdef, params, x, 2, state_key=jax.random.key(2))
  assert not np.allclose(a, b)


@pytest.mark.slow
def test_forward_dynamic_matches_static_loops():
  graphdef, params = build(injection="concat", state_norm="rms", timestep=True)
  # Nonzero timestep modulation: the loop index each slot uses matters.
  params["timestep"] = jax.tree.map(lambda x: 0.1 * jnp.ones_like(x), params["timestep"])
  x = tokens()
  model = models.merge(graphdef, params)
  run = jax.jit(lambda n, a: model.forward_dynamic(x, warm_loops=n, active_loops=a, window=4,
                                                   per_loop=True))
  static = jax.jit(lambda: jax.vmap(model.readout)(model.trajectory(x, 7)))()  # loops 1..7
  for warm, active in ((0, 4), (2, 1), (3, 3)):
    outs, mask = run(warm, active)
    np.testing.assert_array_equal(mask, np.arange(4) < active)
    for j in range(4):  # slot j holds loop warm + min(j, active - 1) + 1
      np.testing.assert_allclose(outs[j], static[warm + min(j, active - 1)], rtol=1e-5,
                                 atol=1e-5)


@pytest.mark.slow
def test_forward_dynamic_warm_start_gets_no_gradient():
  graphdef, params = build(injection="concat")
  x = tokens()

  def dynamic(p, warm):
    return jnp.sum(models.merge(graphdef, p).forward_dynamic(
        x, warm_loops=warm, active_loops=2, window=3) ** 2)

  def by_hand(p, detach):
    model = models.merge(graphdef, p)
    e = model.embed(x)
    h = e
    for t in range(3):
      h = model.loop(h, e, None, t)
    h = jax.lax.stop_gradient(h) if detach else h
    for t in range(3, 5):
      h = model.loop(h, e, None, t)
    return jnp.sum(model.readout(h) ** 2)

  got = jax.jit(jax.grad(dynamic))(params, 3)
  want = jax.jit(jax.grad(by_hand), static_argnums=1)(params, True)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6), got, want)
  through = jax.jit(jax.grad(by_hand), static_argnums=1)(params, False)  # the check can fail: gradients would differ
  assert not np.allclose(through["layers"]["attn"]["qkv"]["kernel"],
                         got["layers"]["attn"]["qkv"]["kernel"])


def test_run_loops_continues_from_a_given_state():
  """readout(run_loops(h_0, e, L)) is the L-loop forward pass; 2 loops then 3 more from t = 2
  are 5 loops (timestep conditioning sees the loop index)."""
  graphdef, params = build(num_loops=5, injection="add", init_state="zeros", timestep=True)
  # The timestep gates start at zero (no effect of t): give them values.
  noise = jax.random.normal(jax.random.key(1), (models.count_params(params["timestep"]),))
  leaves, treedef = jax.tree.flatten(params["timestep"])
  sizes = np.cumsum([0] + [leaf.size for leaf in leaves])
  params["timestep"] = jax.tree.unflatten(treedef, [
      leaf + 0.1 * noise[a:b].reshape(leaf.shape) for leaf, a, b in zip(leaves, sizes, sizes[1:])])
  model, x = models.merge(graphdef, params), tokens()
  e = model.encode(x)
  h0 = model.initial_state(e)
  five = model.run_loops(h0, e, 5)
  np.testing.assert_allclose(model.readout(five), models.apply(graphdef, params, x, 5),
                             rtol=1e-6, atol=1e-6)
  two_then_three = model.run_loops(model.run_loops(h0, e, 2), e, 3, start=2)
  np.testing.assert_allclose(two_then_three, five, rtol=1e-6, atol=1e-6)
  # Restarting the loop index at 0 is another computation when t conditions the block.
  assert not np.allclose(model.run_loops(model.run_loops(h0, e, 2), e, 3), five, atol=1e-6)


RECURSION = dict(block="post_norm", recursion="trm", num_layers=2, inner_loops=2, outer_cycles=2,
                 init="reference_trm", head_bias=False, position="rope", causal=False,
                 final_norm=False, layer_norm_eps=1e-5, d_model=8, num_heads=1)


def _stack(stack, h):
  """The blocks of a stack applied one by one in Python (independent of the model's scans)."""
  stack_def, stack_params = nnx.split(stack)
  count = jax.tree.leaves(stack_params)[0].shape[0]
  for i in range(count):
    h = nnx.merge(stack_def, jax.tree.map(lambda x, i=i: x[i], stack_params))(h)
  return h


def _updates(model, y, z, x, schedule):
  """Applies ("z" | "y") updates in order: z <- f_L(z + y + x), y <- f_H(y + z)."""
  high = model.high_layers if model.high_layers is not None else model.layers
  for kind in schedule:
    if kind == "z":
      z = _stack(model.layers, z + y + x)
    else:
      y = _stack(high, y + z)
  return y, z


@pytest.mark.parametrize("recursion", ["trm", "hrm"])
def test_recursion_gets_gradients_from_its_last_updates_only(recursion):
  """TRM: the last cycle (n z updates, one y update) has gradients; HRM: the last z and the
  last y update. The detached updates add nothing: the gradient equals that of the last
  updates applied to constant states, and differs from backprop through every update."""
  graphdef, params = build(**(RECURSION | {"recursion": recursion, "num_layers": 1}))
  x_ids = tokens(n=9)
  targets = jax.random.randint(jax.random.key(5), (3, 9), 0, 7)
  n, cycles = RECURSION["inner_loops"], RECURSION["outer_cycles"]
  cycle = ["z"] * n + ["y"]
  schedule = cycle * cycles
  tail = len(cycle) if recursion == "trm" else 2
  d = RECURSION["d_model"]

  def loss_from(model, y):
    logits = model.readout(jnp.concatenate([y, y], -1))  # readout sees y only
    return jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1))

  def model_loss(p):
    model = models.merge(graphdef, p)
    e = model.encode(x_ids)
    h = model.recursion_step(model.initial_state(e), e)
    return loss_from(model, h[..., :d])

  model0 = models.merge(graphdef, params)
  e0 = model0.encode(x_ids)
  h0 = model0.initial_state(e0)
  y_c, z_c = _updates(model0, h0[..., :d], h0[..., d:], e0, schedule[:-tail])  # values only

  def tail_loss(p):
    model = models.merge(graphdef, p)
    y, _ = _updates(model, y_c, z_c, model.encode(x_ids), schedule[-tail:])
    return loss_from(model, y)

  def full_loss(p):
    model = models.merge(graphdef, p)
    y, _ = _updates(model, h0[..., :d], h0[..., d:], model.encode(x_ids), schedule)
    return loss_from(model, y)

  got, want, full = (jax.jit(jax.grad(f))(params) for f in (model_loss, tail_loss, full_loss))
  np.testing.assert_allclose(model_loss(params), full_loss(params), rtol=1e-5)  # same forward
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6), got, want)
  differs = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.abs(a - b).max() > 1e-4), got, full))
  assert any(differs)


def test_recursion_state_is_y_and_z_and_hrm_has_its_own_high_stack():
  graphdef, params = build(**RECURSION)
  model = models.merge(graphdef, params)
  e = model.encode(tokens())
  h0 = model.initial_state(e)
  assert h0.shape == (3, 9, 16) and model.spec.state_width == 16
  # y_0 and z_0: fixed, distinct, the same at every position and for every model
  np.testing.assert_array_equal(h0[0, 0], h0[2, 5])
  assert not np.allclose(h0[..., :8], h0[..., 8:])
  assert "high_layers" not in params
  _, hrm = build(**(RECURSION | {"recursion": "hrm", "high_layers": 3}))
  assert hrm["high_layers"]["attn"]["qkv"]["kernel"].shape[0] == 3
  # post_norm: no learned norm scale, SwiGLU width of the reference (2/3 * 4D, multiple of 256)
  assert set(params["layers"]) == {"attn", "mlp"}
  assert params["layers"]["mlp"]["gate_up"]["kernel"].shape == (2, 8, 512)
  assert "bias" not in params["head"]


def test_recursion_step_has_the_exact_derivative_in_its_state():
  """Fixed-point analysis differentiates the step in h: the frozen updates must pass it on."""
  graphdef, params = build(**(RECURSION | {"recursion": "hrm", "num_layers": 1}))
  model = models.merge(graphdef, params)
  e = model.encode(tokens())
  h = model.initial_state(e) + 0.1 * jax.random.normal(jax.random.key(1), (3, 9, 16))
  tangent = jax.random.normal(jax.random.key(2), h.shape)
  d = RECURSION["d_model"]
  n, cycles = RECURSION["inner_loops"], RECURSION["outer_cycles"]

  def python_step(h):
    y, z = _updates(model, h[..., :d], h[..., d:], e, (["z"] * n + ["y"]) * cycles)
    return jnp.concatenate([y, z], -1)

  _, got = jax.jvp(lambda h: model.loop(h, e), (h,), (tangent,))
  _, want = jax.jvp(python_step, (h,), (tangent,))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  assert float(jnp.abs(want).max()) > 1e-3


def test_intra_layer_recurrence_repeats_each_shared_layer_in_place():
  """layer_loops (r_1..r_k) applies block i r_i times before block i+1, inside every loop;
  all ones is the plain k⊗L stack and (L,) on one layer is 1⊗L; parameters stay shared."""
  x = tokens()
  plain_def, plain = build(num_layers=3)
  ilr_def, ilr = build(num_layers=3, layer_loops=(2, 1, 3))
  ones_def, ones = build(num_layers=3, layer_loops=(1, 1, 1))
  for tree in (ilr, ones):  # the same parameters, drawn the same way
    assert jax.tree.structure(tree) == jax.tree.structure(plain)
    jax.tree.map(np.testing.assert_array_equal, tree, plain)
  np.testing.assert_allclose(models.apply(ones_def, plain, x, 2), models.apply(plain_def, plain, x, 2),
                             rtol=1e-6, atol=1e-6)
  model = models.merge(ilr_def, ilr)
  h = model.embed(x)
  for _ in range(2):  # two loops of (layer 0 twice, layer 1 once, layer 2 three times)
    for i, r in enumerate((2, 1, 3)):
      for _ in range(r):
        h = layer(ilr_def, ilr, i)(h)
  got = jax.jit(lambda p: models.apply(ilr_def, p, x, 2))(ilr)
  np.testing.assert_allclose(got, model.readout(h), rtol=1e-5, atol=1e-5)
  # (L,) on a single layer is the looped model at L loops.
  one_def, one = build(num_layers=1)
  rep_def, _ = build(num_layers=1, layer_loops=(4,))
  np.testing.assert_allclose(models.apply(rep_def, one, x, 1), models.apply(one_def, one, x, 4),
                             rtol=1e-5, atol=1e-5)
  grads = jax.grad(lambda p: jnp.sum(models.apply(ilr_def, p, x, 2) ** 2))(ilr)
  assert all(np.isfinite(g).all() and np.any(g != 0) for g in jax.tree.leaves(grads["layers"]))


def test_layer_loops_must_name_one_count_per_layer():
  from looped_jax import config as config_lib
  from looped_jax.errors import ConfigError
  cfg = base_config()
  cfg.model.num_layers = 2
  cfg.model.layer_loops = (2, 1, 1)
  with pytest.raises(ConfigError, match=r"model.layer_loops=\(2, 1, 1\) must be \(\) or 2 positive"):
    config_lib.validate(cfg)
  cfg.model.layer_loops = (2, 0)
  with pytest.raises(ConfigError, match="positive integers"):
    config_lib.validate(cfg)
  assert [config_lib.loops_for_size(n, 1.0) for n in (1, 2, 8, 9, 32)] == [1, 1, 3, 4, 5]
  assert config_lib.loops_for_size(16, 1.5) == 6
