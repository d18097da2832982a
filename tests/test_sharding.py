"""On 8 simulated devices: FSDP and tensor-parallel meshes train like data parallelism, with
parameters really split; checkpoints restore under another mesh."""

import json

import jax
import numpy as np
import pytest

from helpers import tiny_config
from looped_jax.errors import ConfigError
from looped_jax.train import checkpoint
from looped_jax.train import build
from looped_jax.train import workdir as workdir_lib

MESHES = {
    "data": {"data": 8},
    "fsdp": {"data": 8, "fsdp": True},
    "tensor": {"data": 4, "model": 2},
    "tensor+fsdp": {"data": 4, "model": 2, "fsdp": True},
}


def _experiment(mesh):
  config = tiny_config(mesh=mesh, train={"batch_size": 16})
  config.model.update(block="gpt2", num_loops=2)  # attention and MLP: every TP split
  return build.Experiment.build(config)


def _losses(exp, steps=2):
  state, sample = exp.initial_state(), exp.sampler(exp.config.train.batch_size)
  key, losses = jax.random.key(exp.config.data_seed), []
  for step in range(steps):
    state, metrics = exp.train_step(2)(state, sample(jax.random.fold_in(key, step), step))
    losses.append(float(metrics["loss"]))
  return losses, state


def _spec(x):
  return tuple(x.sharding.spec) + (None,) * (x.ndim - len(x.sharding.spec))


@pytest.fixture(scope="module")
def data_parallel():
  return _losses(_experiment(MESHES["data"]))


@pytest.mark.parametrize("name", ["fsdp", "tensor"])
@pytest.mark.slow
def test_mesh_matches_data_parallel_and_shards_parameters(name, data_parallel):
  mesh = MESHES[name]
  losses, state = _losses(_experiment(mesh))
  np.testing.assert_allclose(losses, data_parallel[0], rtol=1e-4)
  params, adam = state["params"], state["opt_state"][0]
  qkv, down = params["layers"]["attn"]["qkv"]["kernel"], params["layers"]["mlp"]["down"]["kernel"]
  if mesh.get("model", 1) > 1:  # [k, D, 3D] column- and [k, 4D, D] row-parallel
    assert _spec(qkv)[2] == "model" and _spec(down)[1] == "model"
    assert qkv.addressable_shards[0].data.shape[2] == qkv.shape[2] // 2
  if mesh.get("fsdp"):
    assert "data" in _spec(qkv) and "data" in _spec(adam.mu["layers"]["attn"]["qkv"]["kernel"])
    size = mesh["data"] * mesh.get("model", 1)
    assert qkv.addressable_shards[0].data.size == qkv.size // size
  # Every leaf of the state was updated on its own sharding: the step keeps them.
  assert _spec(adam.nu["layers"]["mlp"]["down"]["kernel"]) == _spec(down)


@pytest.mark.slow
def test_checkpoint_restores_under_another_mesh(tmp_path, data_parallel):
  saved = data_parallel[1]
  ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  ckpt.save(3, saved, {"step": 3})
  target = _experiment(MESHES["tensor+fsdp"])
  state, meta = ckpt.restore(3, target.initial_state())
  ckpt.close()
  assert meta == {"step": 3}
  want = jax.tree.map(lambda s: s.spec, target.state_shardings)
  assert jax.tree.map(lambda x: x.sharding.spec, state) == want
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(saved)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_workdir_resumes_under_another_mesh_but_not_another_model(tmp_path):
  config = tiny_config(mesh={"data": 8})
  workdir_lib.prepare(str(tmp_path), config, overwrite=False)
  moved = tiny_config(mesh={"data": 4, "model": 2, "fsdp": True})
  workdir_lib.prepare(str(tmp_path), moved, overwrite=False)
  assert json.loads((tmp_path / "config.json").read_text())["mesh"]["model"] == 2
  other = tiny_config(mesh={"data": 8})
  other.model.d_model = 32
  with pytest.raises(ConfigError, match="model.d_model"):
    workdir_lib.prepare(str(tmp_path), other, overwrite=False)


@pytest.mark.slow
def test_host_devices_splits_the_cpu_for_a_new_process(tmp_path):
  from helpers import cli
  result = cli("--config=tests/tiny_config.py", f"--workdir={tmp_path}",
               "--config.mesh.host_devices=2", "--config.train.num_steps=2")
  assert result.returncode == 0, result.stderr
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["mesh"] == {"data": 2, "model": 1}  # not the 8 devices of XLA_FLAGS


def test_host_devices_refuses_a_count_jax_no_longer_can_take():
  from looped_jax.train import sharding
  jax.devices()  # JAX has started with this process's 8 CPU devices
  sharding.use_host_devices(0)
  sharding.use_host_devices(8)  # already so
  with pytest.raises(ConfigError, match=r"host_devices=2 cannot apply.* 8 CPU devices"):
    sharding.use_host_devices(2)
