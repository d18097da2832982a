"""Hessian operator, HVP, subsets, dense eigh and sharded probe batches vs exact answers.

The model is a tiny looped softmax attention (pure jax, 204 params): two applications of
one causal attention layer, cross-entropy read-out. Its Hessian has exact zero
eigenvalues (softmax shift invariance of W_out), which exercises Lanczos restarts.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from looped_jax.analysis import hessian
from looped_jax.errors import ConfigError

VOCAB, WIDTH, LENGTH, BATCH, LOOPS = 5, 6, 6, 8, 2


def init_params(seed=0):
  """Numpy float64 params (numpy, so building them compiles nothing)."""
  rng = np.random.default_rng(seed)
  w = lambda *shape: 0.7 * rng.standard_normal(shape)
  return {"embed": w(VOCAB, WIDTH), "pos": w(LENGTH, WIDTH),
          "attn": {"wq": w(WIDTH, WIDTH), "wk": w(WIDTH, WIDTH), "wv": w(WIDTH, WIDTH)},
          "out": w(WIDTH, VOCAB)}


def make_batch(seed=1):
  tokens = np.random.default_rng(seed).integers(0, VOCAB, (BATCH, LENGTH + 1), dtype=np.int32)
  return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}


def attention_loss(params, batch):
  """Mean next-token cross-entropy of a looped one-layer causal softmax attention."""
  x = params["embed"][batch["inputs"]] + params["pos"]            # [B, n, D]
  a = params["attn"]
  mask = jnp.tril(jnp.ones((LENGTH, LENGTH), bool))
  for _ in range(LOOPS):
    scores = (x @ a["wq"]) @ jnp.swapaxes(x @ a["wk"], 1, 2) / jnp.sqrt(WIDTH)
    scores = jnp.where(mask, scores, -1e9)
    x = x + jax.nn.softmax(scores, axis=-1) @ (x @ a["wv"])
  logp = jax.nn.log_softmax(x @ params["out"], axis=-1)
  return -jnp.mean(jnp.take_along_axis(logp, batch["targets"][..., None], axis=-1))


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


@functools.cache
def full_hessian() -> np.ndarray:
  """Dense float64 Hessian of the whole model by `jax.hessian`, computed once per module."""
  with jax.enable_x64(True):
    op = hessian.hessian_operator(attention_loss, init_params(), batch=make_batch(),
                                  dtype=jnp.float64)
    return np.asarray(hessian.dense_hessian(op))


@pytest.fixture
def problem64(x64):
  params, batch = init_params(), make_batch()
  op = hessian.hessian_operator(attention_loss, params, batch=batch, dtype=jnp.float64)
  return params, batch, op, full_hessian()


def leaf_indices(params, keep):
  """Positions in the full raveled vector of the leaves whose path satisfies keep."""
  idx, start = [], 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    if keep(hessian.path_string(path)):
      idx.extend(range(start, start + leaf.size))
    start += leaf.size
  return np.asarray(idx)


def test_operator_shape_and_paths(problem64):
  params, _, op, h = problem64
  assert op.dim == 204 and op.dtype == jnp.float64 and h.shape == (204, 204)
  assert op.paths == ("attn/wk", "attn/wq", "attn/wv", "embed", "out", "pos")
  np.testing.assert_allclose(h, h.T, atol=1e-12)
  np.testing.assert_array_equal(op.params()["attn"]["wq"], params["attn"]["wq"])


def test_hvp_matches_dense(problem64):
  _, _, op, h = problem64
  v = jax.random.normal(jax.random.key(2), (op.dim,), jnp.float64)
  np.testing.assert_allclose(op.matvec(v), h @ np.asarray(v), rtol=1e-10, atol=1e-12)


def mlp_loss(params, batch):
  """Squared error of a 2-layer tanh MLP."""
  hidden = jnp.tanh(batch["x"] @ params["w1"] + params["b1"])
  return jnp.mean((hidden @ params["w2"] - batch["y"]) ** 2)


def test_pytree_hvp_matches_flat_operator(x64):
  rng = np.random.default_rng(3)
  params = {"w1": rng.standard_normal((3, 5)), "b1": rng.standard_normal(5),
            "w2": rng.standard_normal((5, 2))}
  batch = {"x": rng.standard_normal((16, 3)), "y": rng.standard_normal((16, 2))}
  op = hessian.hessian_operator(mlp_loss, params, batch=batch, dtype=jnp.float64)
  h = np.asarray(hessian.dense_hessian(op))
  v = rng.standard_normal(op.dim)
  tree = hessian.hvp(mlp_loss, jax.tree.map(jnp.asarray, params), op.unravel(v), batch)
  flat, _ = jax.flatten_util.ravel_pytree(tree)
  np.testing.assert_allclose(flat, h @ v, rtol=1e-10, atol=1e-12)
  # Closure form (no batch argument) gives the same product.
  tree = hessian.hvp(lambda p: mlp_loss(p, batch), jax.tree.map(jnp.asarray, params),
                     op.unravel(v))
  np.testing.assert_allclose(jax.flatten_util.ravel_pytree(tree)[0], h @ v, rtol=1e-10)


@pytest.mark.slow
def test_lanczos_all_eigenvalues_match_eigh_float64(problem64):
  _, _, op, h = problem64
  exact = np.linalg.eigvalsh(h)
  scale = np.max(np.abs(exact))
  # The softmax shift invariance of W_out gives exact zeros: Lanczos must restart.
  assert np.sum(np.abs(exact) < 1e-10 * scale) >= WIDTH
  res = hessian.lanczos(op, jax.random.key(3), op.dim)
  assert res.alphas.shape == (op.dim,) and res.betas.shape == (op.dim - 1,)
  assert res.basis is None and np.sum(np.asarray(res.betas) == 0) >= 1
  ritz = np.asarray(hessian.tridiagonal_eigh(res.alphas, res.betas)[0])
  assert np.max(np.abs(ritz - exact)) <= 1e-5 * scale
  big = np.abs(exact) > 1e-3 * scale
  np.testing.assert_allclose(ritz[big], exact[big], rtol=1e-5)
  dense_vals, _ = hessian.dense_eigh(op)
  np.testing.assert_allclose(dense_vals, exact, atol=1e-10 * scale)
  # Same compiled Lanczos (same num_iters): Ritz vectors of the top 5 are eigenvectors.
  vals, vecs = hessian.top_k_eigenvalues(op, jax.random.key(4), 5, op.dim, return_vectors=True)
  np.testing.assert_allclose(vals, exact[::-1][:5], rtol=1e-8)
  vecs = np.asarray(vecs)
  np.testing.assert_allclose(vecs.T @ vecs, np.eye(5), atol=1e-8)
  np.testing.assert_allclose(h @ vecs, vecs * np.asarray(vals), atol=1e-7 * scale)


def test_float32_operator_close_to_float64():
  h = full_hessian()
  params32 = jax.tree.map(lambda p: p.astype(np.float32), init_params())
  op32 = hessian.hessian_operator(attention_loss, params32, batch=make_batch())
  assert op32.dtype == jnp.float32 and op32.x0.dtype == jnp.float32
  v = np.random.default_rng(5).standard_normal(op32.dim)
  hv = op32.matvec(jnp.asarray(v, jnp.float32))
  assert hv.dtype == jnp.float32
  np.testing.assert_allclose(hv, h @ v, atol=1e-4 * np.linalg.norm(h @ v))


@pytest.mark.slow
def test_subset_hessian_is_block_of_full(problem64):
  params, batch, _, h = problem64
  # Non-adjacent leaves in flatten order (attn/wk, attn/wq, attn/wv, embed, out, pos).
  op = hessian.hessian_operator(attention_loss, params, r"^(out|attn/wv)$", batch=batch,
                                dtype=jnp.float64)
  keep = lambda path: path in ("out", "attn/wv")
  idx = leaf_indices(params, keep)
  assert op.paths == ("attn/wv", "out") and op.dim == len(idx) == 66
  block = h[np.ix_(idx, idx)]
  # Column-chunked HVPs here; the full Hessian came from jax.hessian.
  np.testing.assert_allclose(hessian.dense_hessian(op, chunk_size=40), block,
                             rtol=1e-10, atol=1e-12)
  # unravel puts the subset direction back into full parameter space.
  v = np.random.default_rng(6).standard_normal(op.dim)
  full, _ = jax.flatten_util.ravel_pytree(op.unravel(jnp.asarray(v)))
  np.testing.assert_array_equal(np.asarray(full)[idx], v)
  assert np.count_nonzero(np.asarray(full)) == op.dim
  # ravel is its inverse on the selected leaves, and reads x0 back from the params.
  np.testing.assert_array_equal(op.ravel(op.unravel(jnp.asarray(v))), v)
  np.testing.assert_array_equal(op.ravel(op.params()), op.x0)
  with pytest.raises(ConfigError, match="ravel got a tree of 1 leaves"):
    op.ravel({"out": op.x0})
  # A predicate selecting the same leaves builds the same operator.
  op_pred = hessian.hessian_operator(attention_loss, params, keep, batch=batch,
                                     dtype=jnp.float64)
  assert op_pred.paths == op.paths and op_pred.selected == op.selected
  np.testing.assert_array_equal(op_pred.x0, op.x0)
  np.testing.assert_allclose(hessian.dense_hessian(op_pred, chunk_size=40), block,
                             rtol=1e-10, atol=1e-12)
  # A different predicate selects a different block.
  op_attn = hessian.hessian_operator(attention_loss, params, lambda p: p.startswith("attn/"),
                                     batch=batch, dtype=jnp.float64)
  assert op_attn.paths == ("attn/wk", "attn/wq", "attn/wv") and op_attn.dim == 108


def test_bad_subset_and_dtype_raise():
  with pytest.raises(ConfigError, match="selects no"):
    hessian.hessian_operator(attention_loss, init_params(), "no_such_leaf", batch=make_batch())
  with jax.enable_x64(False), pytest.raises(ConfigError, match="enable_x64"):
    hessian.hessian_operator(attention_loss, init_params(), dtype=jnp.float64)


def test_hvp_with_sharded_probe_batch_matches_unsharded(problem64):
  params, batch, _, h = problem64
  assert len(jax.devices()) == 8, "conftest.py must provide 8 simulated CPU devices"
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  sharded = jax.device_put(batch, NamedSharding(mesh, P("data")))
  assert sharded["inputs"].sharding.spec == P("data")
  v = jax.random.normal(jax.random.key(2), (h.shape[0],), jnp.float64)
  expected = h @ np.asarray(v)

  op = hessian.hessian_operator(attention_loss, params, batch=sharded, dtype=jnp.float64)
  np.testing.assert_allclose(op.matvec(v), expected, rtol=1e-10, atol=1e-12)
  # The batch stays a sharded input: the compiled HVP is data-parallel and all-reduces.
  compiled = hessian._matvec_jit.lower(op, v).compile()
  assert compiled.input_shardings[0][0].batch["inputs"].spec == P("data")
  assert "all-reduce" in compiled.as_text()
  # A loss that closes over the sharded batch gives the same HVP (run unpartitioned).
  closed = hessian.hessian_operator(lambda p: attention_loss(p, sharded), params,
                                    dtype=jnp.float64)
  np.testing.assert_allclose(closed.matvec(v), expected, rtol=1e-10, atol=1e-12)
