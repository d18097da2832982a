"""Logical axes of every parameter, the tensor-parallel / FSDP rules, and mesh validation."""

import jax
import ml_collections
import pytest
from jax.sharding import PartitionSpec as P

from looped_jax import config as config_lib
from looped_jax import models, tasks
from looped_jax.errors import ConfigError
from looped_jax.train import optim, partitioning, sharding

TP = {"data": 4, "model": 2}


def _params(task_name="markov", **model):
  config = config_lib.base_config()
  config.model.d_model, config.model.num_heads = 16, 2
  config.model.update(model)
  task = tasks.get(tasks.default_config(task_name))
  return jax.eval_shape(lambda: models.build(config.model, task)[1])


VARIANTS = {
    "gpt2 tokens concat timestep": dict(injection="concat", timestep=True),
    "gpt2 vectors internal recall": dict(injection="internal", task_name="linear_regression"),
    "attn_only no pre-norm, 2 layers": dict(block="attn_only", pre_norm=False, num_layers=2),
    "attn_only pre-norm, no positions": dict(block="attn_only", position="none"),
    "gpt2 prelude, core, coda": dict(prelude_layers=1, coda_layers=2),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_parameter_of_every_variant_has_logical_axes(name):
  params = _params(**VARIANTS[name])
  for mesh_shape, fsdp in (({"data": 8, "model": 1}, False), (TP, True)):
    specs = partitioning.param_specs(params, mesh_shape, fsdp)
    assert jax.tree.structure(specs, is_leaf=lambda x: isinstance(x, P)) == \
        jax.tree.structure(params)


def test_tensor_parallel_is_the_megatron_split():
  specs = partitioning.param_specs(_params(), TP, fsdp=False)
  attn, mlp = specs["layers"]["attn"], specs["layers"]["mlp"]
  assert attn["qkv"]["kernel"] == P(None, None, "model")  # column-parallel
  assert attn["qkv"]["bias"] == P(None, "model")
  assert attn["out"]["kernel"] == P(None, "model", None)  # row-parallel
  assert attn["out"]["bias"] == P(None, None)  # added after the reduction
  assert mlp["up"]["kernel"] == P(None, None, "model")
  assert mlp["down"]["kernel"] == P(None, "model", None)
  assert specs["embedding"]["embedding"] == P(None, None)
  # No model axis: nothing is split.
  plain = partitioning.param_specs(_params(), {"data": 8, "model": 1}, fsdp=False)
  assert all(all(a is None for a in spec) for spec in jax.tree.leaves(
      plain, is_leaf=lambda x: isinstance(x, P)))


def test_fsdp_shards_the_largest_free_divisible_dim_never_the_layer_axis():
  specs = partitioning.param_specs(_params(num_layers=8), TP, fsdp=True)
  # up kernel [8, 16, 64]: 64 is taken by `model`, the layer axis (8) is exempt -> 16.
  assert specs["layers"]["mlp"]["up"]["kernel"] == P(None, "data", "model")
  assert specs["layers"]["ln1"]["scale"] == P(None, "data")
  assert specs["positions"] == P("data", None)  # [max_len=..., 16]: first of the largest
  # A dimension the data axis does not divide stays replicated.
  assert partitioning.param_spec("head/bias", (6,), {"data": 4, "model": 1}, True) == P(None)


def test_optimizer_state_mirrors_the_parameter_specs():
  params = _params()
  config = config_lib.base_config()
  opt_state = jax.eval_shape(optim.make_optimizer(config.train).init, params)
  state = {"step": jax.ShapeDtypeStruct((), "int32"), "params": params, "opt_state": opt_state}
  specs = partitioning.state_specs(state, params, TP, fsdp=True)
  want = partitioning.param_specs(params, TP, fsdp=True)
  assert specs["params"] == want
  assert specs["opt_state"][0].mu == want and specs["opt_state"][0].nu == want
  assert specs["opt_state"][0].count == P() and specs["step"] == P()


def test_unknown_parameter_is_an_error():
  with pytest.raises(ValueError, match="LOGICAL_AXES"):
    partitioning.logical_axes("layers/attn/rotary/freqs", 2)


@pytest.mark.parametrize("mesh, match", [
    ({"model": 3}, "mesh.model=3 must divide model.num_heads=2 .*use one of 1, 2"),
    ({"data": 0}, "mesh.data"),
])
def test_mesh_config_against_the_model(mesh, match):
  config = config_lib.base_config()
  config.model.num_heads = 2
  config.mesh.update(mesh)
  with pytest.raises(ConfigError, match=match):
    config_lib.validate(config)


@pytest.mark.parametrize("mesh, match", [
    ({"data": -1, "model": 3}, "mesh.model=3 does not divide the 8 devices; use one of 1, 2, 4, 8"),
    ({"data": 3, "model": 2}, "mesh.data=3 with mesh.model=2 .* use -1 or one of 1, 2, 4"),
])
def test_mesh_against_the_devices(mesh, match):
  with pytest.raises(ConfigError, match=match):
    sharding.make_mesh(ml_collections.ConfigDict(mesh))


def test_mesh_shapes():
  mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": -1, "model": 2}))
  assert dict(mesh.shape) == {"data": 4, "model": 2}
  mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": 2, "model": 1}))
  assert dict(mesh.shape) == {"data": 2, "model": 1}
