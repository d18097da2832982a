"""The device mesh, the shardings of the train state and of batches, and global batches.

The mesh is ("data", "model") from the config: `mesh.data` devices of batch parallelism
(-1: all devices left after `mesh.model`), `mesh.model` devices of tensor parallelism, and
`mesh.fsdp` to shard parameters and optimizer state over `data` too. Which parameter
dimension goes where is decided in `partitioning.py` (logical axes + rules).

Batches are split over `data` and replicated over `model`. With one process the sampler is
jitted with that output sharding; with several, each process runs the sampler (a pure
function of the key and step) on its own default device, keeps the rows its devices hold,
and the global array is assembled with `jax.make_array_from_process_local_data`: the global
batch equals the one-process one.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from looped_jax.errors import ConfigError
from looped_jax.train import partitioning

DATA, MODEL = partitioning.DATA, partitioning.MODEL


def _divisors(n: int) -> str:
  return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def use_host_devices(count: int) -> None:
  """Makes JAX run the CPU as `count` devices (config mesh.host_devices; 0: leave as is).

  Must come before JAX's first computation. Data parallelism over CPU devices runs each
  device's share of the step on its own thread, which keeps both cores of a small machine
  busy through the many small ops of a d = 64 model (docs/performance.md).
  """
  if count == 0:
    return
  try:
    jax.config.update("jax_num_cpu_devices", count)
  except RuntimeError:  # JAX has started: acceptable only if it already has that many
    running = len(jax.devices("cpu"))
    if running != count:
      raise ConfigError(f"mesh.host_devices={count} cannot apply: this process already runs "
                        f"JAX with {running} CPU devices; use mesh.host_devices=0 or "
                        f"{running}.") from None


def make_mesh(mesh_config: Any, devices=None) -> Mesh:
  """A ("data", "model") mesh of `mesh.data` x `mesh.model` devices.

  One process may use the first data * model of its devices (e.g. mesh.data=1 on 8); with
  several processes every device must take part.
  """
  devices = list(devices if devices is not None else jax.devices())
  n, model = len(devices), int(mesh_config.get("model", 1))
  if model < 1 or n % model:
    raise ConfigError(f"mesh.model={model} does not divide the {n} devices; use one of "
                      f"{_divisors(n)}.")
  data = n // model if mesh_config.data == -1 else int(mesh_config.data)
  if data < 1 or (n // model) % data:
    raise ConfigError(f"mesh.data={mesh_config.data} with mesh.model={model} does not fit the "
                      f"{n} devices; use -1 or one of {_divisors(n // model)}.")
  if jax.process_count() > 1 and data * model != n:
    raise ConfigError(f"mesh.data={mesh_config.data} x mesh.model={model} uses {data * model} "
                      f"of the {n} devices of this {jax.process_count()}-process run; every "
                      f"device must take part: use mesh.data=-1 or {n // model}.")
  # Auto axes: XLA propagates shardings from the inputs; explicit PartitionSpecs pin them.
  return jax.make_mesh((data, model), (DATA, MODEL), axis_types=(AxisType.Auto,) * 2,
                       devices=devices[:data * model])


def check_batch(batch_size: int, mesh: Mesh, key: str) -> None:
  n = mesh.shape[DATA]
  if batch_size % n:
    raise ConfigError(f"{key}={batch_size} is not divisible by the {n} devices of the data axis; "
                      f"use a multiple of {n} or set mesh.data.")


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`, replicated over `model`; works for any rank."""
  return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def state_shardings(state: Any, mesh: Mesh, fsdp: bool = False) -> Any:
  """NamedShardings of the train state {"step", "params", "opt_state"} (see partitioning)."""
  specs = partitioning.state_specs(state, state["params"], dict(mesh.shape), fsdp)
  return jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs)


def process_rows(sharding: NamedSharding, batch_size: int) -> tuple[int, int]:
  """[lo, hi): the rows of a `batch_size` batch that this process's devices hold."""
  bounds = {(s[0].start or 0, batch_size if s[0].stop is None else s[0].stop)
            for s in sharding.addressable_devices_indices_map((batch_size,)).values()}
  lo, hi = min(b[0] for b in bounds), max(b[1] for b in bounds)
  if sum(b - a for a, b in bounds) != hi - lo:
    raise ValueError(f"this process's batch rows {sorted(bounds)} are not contiguous.")
  return lo, hi


def batch_sampler(sample: Callable, batch_size: int, mesh: Mesh) -> Callable:
  """(key, step) -> the global batch of `sample(key, batch_size, step)`, split over `data`."""
  sharding = batch_sharding(mesh)
  if jax.process_count() == 1:
    return jax.jit(lambda key, step: sample(key, batch_size, step), out_shardings=sharding)
  lo, hi = process_rows(sharding, batch_size)
  # Sampled on this process's default device; the rows of other processes are dropped.
  local = jax.jit(lambda key, step: jax.tree.map(lambda x: x[lo:hi],
                                                 sample(key, batch_size, step)))

  def global_batch(key, step):
    rows = jax.device_get(local(key, step))
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(
        sharding, np.asarray(x), (batch_size, *x.shape[1:])), rows)

  return global_batch
