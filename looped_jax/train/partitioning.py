"""Logical axis names of every parameter and the rules that map them onto the mesh.

Two steps, both plain data so they can be read in one place:

1. `LOGICAL_AXES`: '/'-joined parameter path (regex, full match) -> one logical name per
   array dimension. "layers" is the leading axis of the k stacked layers.
2. `rules(mesh_shape)`: logical name -> mesh axis. Tensor parallelism over `model` is the
   Megatron split: the QKV and MLP-in projections are column-parallel (their output
   features "qkv" / "mlp" are split), the attention out-projection and MLP-out are
   row-parallel (their input features "heads" / "mlp" are split), so each block needs one
   reduction after attention and one after the MLP. Everything else is replicated over
   `model`.

FSDP (`fsdp=True`) then shards every parameter over `data` as well: its largest dimension
that is still unsharded, divisible by the data-axis size and not the scanned "layers" axis
(slicing a sharded scan axis would gather the whole stack every layer). Optimizer state
leaves that mirror a parameter (Adam's mu/nu, SHIFT's per-stage copies) get that
parameter's spec; scalars (counts, stage) are replicated.

A parameter without a row in `LOGICAL_AXES` is an error, not silently replicated: a new
module must say how it is laid out (`partitioning_test.py` builds every model variant).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import jax
from jax.sharding import PartitionSpec as P

from looped_jax.tree_paths import path_string

DATA = "data"
MODEL = "model"

# (path regex, logical axes). First match wins.
LOGICAL_AXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # input side
    (r"embedding/embedding", ("vocab", "embed")),  # token ids
    (r"embedding/kernel", ("input", "embed")),  # vector inputs
    (r"embedding/bias", ("embed",)),
    (r"positions", ("position", "embed")),
    (r"adapter/kernel", ("concat", "embed")),  # concat injection: W [h; e]
    (r"adapter/bias", ("embed",)),
    (r"recall/kernel", ("embed_in", "embed")),  # internal recall W_x
    (r"recall/bias", ("embed",)),
    # timestep modulation (small: replicated under tensor parallelism)
    (r"timestep/embed1/kernel", ("freq", "embed")),
    (r"timestep/embed2/kernel", ("embed_in", "embed")),
    (r"timestep/embed[12]/bias", ("embed",)),
    (r"timestep/out/kernel", ("embed", "modulation")),
    (r"timestep/out/bias", ("modulation",)),
    # the k stacked layers: attention (fused QKV) and MLP, Megatron-split
    (r"(layers|prelude|coda|high_layers)/ln\d?/(scale|bias)", ("layers", "embed")),
    (r"(layers|prelude|coda|high_layers)/attn/qkv/kernel", ("layers", "embed", "qkv")),  # column-parallel
    (r"(layers|prelude|coda|high_layers)/attn/qkv/bias", ("layers", "qkv")),
    (r"(layers|prelude|coda|high_layers)/attn/out/kernel", ("layers", "heads", "embed")),  # row-parallel
    (r"(layers|prelude|coda|high_layers)/attn/out/bias", ("layers", "embed")),
    (r"(layers|prelude|coda|high_layers)/mlp/up/kernel", ("layers", "embed", "mlp")),  # column-parallel
    (r"(layers|prelude|coda|high_layers)/mlp/up/bias", ("layers", "mlp")),
    (r"(layers|prelude|coda|high_layers)/mlp/down/kernel", ("layers", "mlp", "embed")),  # row-parallel
    (r"(layers|prelude|coda|high_layers)/mlp/down/bias", ("layers", "embed")),
    # the Parallel Loop Transformer's G-SWA gate, one per attention channel (split as heads)
    (r"(layers|prelude|coda|high_layers)/attn/gate/kernel", ("layers", "embed", "heads")),
    (r"(layers|prelude|coda|high_layers)/attn/gate/bias", ("layers", "heads")),
    # post_norm blocks: SwiGLU with gate and up fused ([gate | up] halves of one "mlp" axis:
    # a model-axis split keeps both halves correct, as any sharding does, at some traffic)
    (r"(layers|prelude|coda|high_layers)/mlp/gate_up/kernel", ("layers", "embed", "mlp")),
    (r"(layers|prelude|coda|high_layers)/mlp/gate_up/bias", ("layers", "mlp")),
    # output side
    (r"ln_f/(scale|bias)", ("embed",)),
    (r"head/kernel", ("embed", "output")),
    (r"head/bias", ("output",)),
    (r"halt_head/kernel", ("embed", "halt")),  # (q_halt, q_continue)
    (r"halt_head/bias", ("halt",)),
    (r"exit_head/kernel", ("embed", "exit")),  # Ouro's exit gate
    (r"exit_head/bias", ("exit",)),
)

# Logical axes split over `model` by tensor parallelism; all others map to None.
TENSOR_PARALLEL = {"qkv": MODEL, "heads": MODEL, "mlp": MODEL}
NOT_FSDP = ("layers",)  # logical axes FSDP never shards


def rules(mesh_shape: Mapping[str, int]) -> dict[str, str]:
  """Logical axis -> mesh axis for a mesh of this shape (no `model` axis: no TP)."""
  return dict(TENSOR_PARALLEL) if mesh_shape.get(MODEL, 1) > 1 else {}


def logical_axes(name: str, ndim: int) -> tuple[str, ...]:
  """The logical axes of the parameter at `name` ('/'-joined path)."""
  for pattern, axes in LOGICAL_AXES:
    if re.fullmatch(pattern, name):
      if len(axes) != ndim:
        raise ValueError(f"parameter {name} has {ndim} dims but LOGICAL_AXES names {axes}.")
      return axes
  raise ValueError(f"parameter {name} has no row in partitioning.LOGICAL_AXES; add its "
                   "logical axes there.")


def param_spec(name: str, shape: tuple[int, ...], mesh_shape: Mapping[str, int],
               fsdp: bool) -> P:
  """PartitionSpec of one parameter: tensor-parallel rules, then FSDP over `data`."""
  axes = logical_axes(name, len(shape))
  table = rules(mesh_shape)
  spec = [table.get(a) for a in axes]
  for dim, mesh_axis in enumerate(spec):
    if mesh_axis is not None and shape[dim] % mesh_shape[mesh_axis]:
      raise ValueError(f"parameter {name} dim {dim} ({axes[dim]}={shape[dim]}) does not "
                       f"divide over the {mesh_shape[mesh_axis]} devices of mesh axis "
                       f"{mesh_axis!r}.")
  n = mesh_shape.get(DATA, 1)
  if fsdp and n > 1:
    free = [d for d in range(len(shape))
            if spec[d] is None and axes[d] not in NOT_FSDP and shape[d] % n == 0]
    if free:
      spec[max(free, key=lambda d: (shape[d], -d))] = DATA  # largest; the first on ties
  return P(*spec)


def param_specs(params: Any, mesh_shape: Mapping[str, int], fsdp: bool) -> Any:
  """The PartitionSpec tree of a parameter tree (arrays or ShapeDtypeStructs)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: param_spec(path_string(path), tuple(x.shape), mesh_shape, fsdp), params)


def state_specs(state: Any, params: Any, mesh_shape: Mapping[str, int], fsdp: bool) -> Any:
  """Specs of any tree holding copies of `params` (train state, optimizer state).

  A leaf whose dict-key path ends with a parameter's path and has its shape gets that
  parameter's spec; every other leaf (step counters, scalars) is replicated.
  """
  by_name = {}
  for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = path_string(path)
    by_name[name] = (tuple(x.shape), param_spec(name, tuple(x.shape), mesh_shape, fsdp))

  def spec(path, x):
    name = path_string(path)
    matches = [n for n, (shape, _) in by_name.items()
               if (name == n or name.endswith("/" + n)) and tuple(x.shape) == shape]
    return by_name[max(matches, key=len)][1] if matches else P()

  return jax.tree_util.tree_map_with_path(spec, state)
