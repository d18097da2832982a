"""Device mesh and partition rules, in one place.

The mesh has a `data` axis (batch parallelism). Parameters and optimizer state are
replicated; batches are split over `data`. The mesh shape comes from the config.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from looped_jax.errors import ConfigError

DATA = "data"


def make_mesh(mesh_config: Any, devices=None) -> Mesh:
  """A ("data",) mesh over `mesh.data` devices (-1: all of them)."""
  devices = list(devices if devices is not None else jax.devices())
  size = len(devices) if mesh_config.data == -1 else int(mesh_config.data)
  if size < 1 or size > len(devices) or len(devices) % size:
    raise ConfigError(f"mesh.data={mesh_config.data} does not fit the {len(devices)} available "
                      f"devices; use -1 or a divisor of {len(devices)}.")
  # Auto axes: XLA propagates shardings from the inputs; explicit PartitionSpecs pin them.
  return jax.make_mesh((size,), (DATA,), axis_types=(AxisType.Auto,), devices=devices[:size])


def check_batch(batch_size: int, mesh: Mesh, key: str) -> None:
  n = mesh.shape[DATA]
  if batch_size % n:
    raise ConfigError(f"{key}={batch_size} is not divisible by the {n} devices of the data axis; "
                      f"use a multiple of {n} or set mesh.data.")


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`; works for any rank."""
  return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def state_shardings(state: Any, mesh: Mesh) -> Any:
  """Partition rule for the train state: every leaf replicated (pure data parallelism)."""
  return jax.tree.map(lambda _: replicated(mesh), state)
