"""Probe spectra: Looped at L=1 is Single-Attn exactly; size limit; lanczos path; settings."""

import dataclasses
import os
import sys

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests"))
from helpers import tiny_config  # noqa: E402

from looped_jax import config as config_lib  # noqa: E402
from looped_jax import models  # noqa: E402
from looped_jax.analysis import hessian as hessian_lib  # noqa: E402
from looped_jax.analysis import landscape_tracking  # noqa: E402
from looped_jax.errors import ConfigError  # noqa: E402
from looped_jax.train import build  # noqa: E402


def tiny(num_loops: int, **hessian):
  config = tiny_config(model={"d_model": 8, "num_loops": num_loops},
                       hessian={"probe_batch_size": 8} | hessian)
  config.task.length = 8
  return config


@pytest.fixture(scope="module")
def looped():
  return build.Experiment.build(tiny(3))  # the task's calibration is paid once


def variant(exp, config):
  """exp with another config and a model built from it (same task, probe batch)."""
  graphdef, params = models.build(config.model, exp.task, config.seed)
  other = dataclasses.replace(exp, config=config, graphdef=graphdef, params=params)
  return landscape_tracking.Probe(other, batch=landscape_tracking.Probe(exp).batch), params


def dense(probe, params, loops, subset=None):
  with jax.enable_x64(True):
    op = hessian_lib.hessian_operator(probe.loss_fn(loops, True), params, subset,
                                      batch=probe.batch, dtype=jnp.float64)
    return np.asarray(hessian_lib.dense_hessian(op))


@pytest.mark.slow
def test_looped_at_one_loop_has_the_single_layer_hessian(looped):
  single, single_params = variant(looped, tiny(1, subset="layers"))
  params = looped.params  # same seed and shapes: one param tree for both
  assert jax.tree.all(jax.tree.map(np.array_equal, params, single_params))
  dim = models.count_params(params["layers"])
  h_looped = dense(landscape_tracking.Probe(looped), params, 1, "layers")  # layer stack, f64
  h_single = dense(single, params, 1, "layers")
  assert h_looped.dtype == np.float64 and h_looped.shape == (dim, dim)
  scale = np.abs(h_single).max()
  np.testing.assert_allclose(h_looped, h_single, rtol=0, atol=1e-12 * scale)
  # The tracked spectrum at the single model's loop count is that matrix's eigenvalues.
  result = single.spectrum(params)
  symmetric = 0.5 * (h_single + h_single.T)
  np.testing.assert_allclose(result["eigenvalues"], np.linalg.eigvalsh(symmetric), rtol=0,
                             atol=1e-8 * scale)  # chunked HVP columns vs jax.hessian
  assert result["loops"] == 1 and result["metrics"]["num_eigenvalues"] == dim
  assert result["metrics"]["lambda_max"] == pytest.approx(np.linalg.eigvalsh(symmetric)[-1])


@pytest.mark.slow
def test_exact_refuses_large_subsets_and_lanczos_gives_top_k(looped, monkeypatch):
  exact, _ = variant(looped, tiny(3, subset="layers/attn/qkv"))
  monkeypatch.setattr(landscape_tracking, "MAX_EXACT_DIM", 100)
  with pytest.raises(ConfigError, match="exceeds the limit"):
    exact.spectrum(looped.params)
  lz, _ = variant(looped, tiny(3, subset="layers/attn/qkv", method="lanczos", top_k=3,
                               num_iters=12))
  result = lz.spectrum(looped.params)
  assert len(result["eigenvalues"]) == 3
  assert result["paths"] == ["layers/attn/qkv/bias", "layers/attn/qkv/kernel"]
  assert result["eigenvalues"] == sorted(result["eigenvalues"])


@pytest.mark.parametrize("key,value", [
    ("method", "power"), ("probe_seed", 1), ("subset", "("), ("eps_fracs", (0.0,)),
    ("top_k", 100), ("every", -1)])
def test_bad_hessian_settings_are_one_sentence(key, value):
  with pytest.raises(ConfigError, match=rf"hessian\.{key}"):
    config_lib.validate(tiny_config(hessian={key: value}))


@pytest.mark.slow
def test_the_float64_probe_loss_is_float64_end_to_end(looped):
  """Central differences of the float64 twin's loss agree with its gradient to 1e-7: a float32
  cast anywhere (read-out, softmax) would leave them ~1e-2 apart at this step size."""
  probe = landscape_tracking.Probe(looped)
  with jax.enable_x64(True):
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), looped.params)
    x, unravel = jax.flatten_util.ravel_pytree(params)
    loss = probe.loss_fn(3, True)

    def f(x):
      return loss(unravel(x), probe.batch)

    v = jax.random.normal(jax.random.key(0), x.shape, jnp.float64)
    v = v / jnp.linalg.norm(v)
    grad = jax.grad(f)(x)
    eps = 1e-5
    central = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
    assert f(x).dtype == jnp.float64
    assert abs(float(central - grad @ v)) <= 1e-7 * float(jnp.linalg.norm(grad))


@pytest.mark.slow
def test_the_exact_spectrum_is_numpys_eigh_of_the_float64_hessian(looped):
  """Against a Hessian built without the analysis library: jax.hessian of the float64 model
  (models.graphdef) over the attention block, numpy.linalg.eigh."""
  config = tiny(3, method="exact", subset="layers/attn")
  exp = dataclasses.replace(looped, config=config)
  probe = landscape_tracking.Probe(exp)
  result = probe.spectrum(looped.params)
  batch = probe.batch
  with jax.enable_x64(True):
    graphdef = models.graphdef(config.model, exp.task, dtype="float64")
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), looped.params)
    x, unravel = jax.flatten_util.ravel_pytree(params["layers"]["attn"])

    def f(x):
      p = params | {"layers": params["layers"] | {"attn": unravel(x)}}
      return exp.task.loss(models.apply(graphdef, p, batch["inputs"], 3), batch)

    h = np.asarray(jax.hessian(f)(x), np.float64)
  expected = np.linalg.eigh(0.5 * (h + h.T))[0]
  got = np.asarray(result["eigenvalues"])
  assert got.shape == expected.shape == (x.shape[0],)
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10 * np.abs(expected).max())


@pytest.mark.slow
def test_a_float64_model_builds_and_runs_in_float64_under_64_bit_jax():
  config = tiny(3)
  config.model.dtype = "float64"
  with jax.enable_x64(True):
    exp = build.Experiment.build(config)
    batch = landscape_tracking.Probe(exp).batch
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), exp.params)
    assert models.apply(exp.graphdef, params, batch["inputs"]).dtype == jnp.float64
