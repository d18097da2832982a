"""In-context regression (Garg et al., arXiv 2208.01066; Yang et al., arXiv 2311.12424).

Function classes, prompt format and curricula: docs/papers.md, "Yang et al.".

Each prompt draws a fresh function f from a class and n points x_i; the model reads

  inputs   float32 [B, 2n, d]  x_i at position 2i, [y_i, 0, ..., 0] at 2i + 1
  targets  float32 [B, 2n]     y_i at 2i, 0 at odd positions
  weights  float32 [B, 2n]     1 at x-positions 2i of scored points, else 0
  xs       float32 [B, n, d]   the points (after every transformation below)
  ys       float32 [B, n]      y_i = y_scale * f(x_i) + noise (then renormalised if asked)

plus the sampled function parameters (`w`; `tree_features`, `tree_leaves`; `w1`, `w2`) and,
for the query prompting strategies, `query_index` int32 [B].

Curriculum (Yang): dims d_t = min(dims_start + (t // dims_interval) * dims_inc, n_dims), points
likewise. Shapes stay static at (n_points, n_dims): unused coordinates of x and of the
function's weights are zeroed (not for trees, which never use the dims curriculum) and points
past the active count get weight 0, which under causal attention equals a shorter prompt.

Out-of-distribution settings (the eval suite of dtsip/in-context-learning) are fields:
  x_covariance  "skewed": Cov(x) = U diag(1/(i+1)^2) U^T, "half_subspace": Cov(x) = U diag(1,..,1,
                0,..,0) U^T, both rescaled to trace d; U is a fixed Haar rotation from
                `covariance_seed`.
  x_scale       x -> x_scale * x.          y_scale  y -> y_scale * f(x).
  noise_std     additive N(0, noise_std^2) on y; `renormalize_ys` then rescales y so that its
                std over the batch's active points is sqrt(d) (Garg's "noisyLR" setting).
  prompting     "orthogonal_train_test": the query x_k is projected off span(x_1..x_{k-1}) and
                rescaled to its original norm; "overlapping_train_test": the query is a copy of a
                uniformly chosen earlier x_j; "random_quadrants": the in-context xs lie in one
                random orthant per prompt (|x| * sign pattern), the query is a plain Gaussian x.
                A query prompt scores one position per row, row b at k = b mod rows_per_prompt,
                so rows_per_prompt consecutive rows give one error-vs-k curve (Garg's separate
                forward pass per k). Orthogonal queries exist only for k < d.

Garg's covariance transforms and renormalisation assume the full dimension; evaluate them with
`curriculum=False`. Reconstruction choices: the sparse support is drawn among the active
coordinates (Yang's code draws it among all n_dims and then zeroes the inactive ones), and
renormalisation uses the active dimension count.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from looped_jax.errors import check, check_choice
from looped_jax.tasks import register
from looped_jax.tasks.base import Batch, RegressionTask

PROMPTINGS = ("standard", "orthogonal_train_test", "overlapping_train_test", "random_quadrants")
COVARIANCES = ("isotropic", "skewed", "half_subspace")
_HI = jax.lax.Precision.HIGHEST  # targets must not pick up TF32 rounding on GPUs


def curriculum_value(step: jax.Array | int, start: int, inc: int, interval: int,
                     end: int) -> jax.Array:
  """min(start + floor(step / interval) * inc, end) as int32; `step` may be traced."""
  step = jnp.maximum(jnp.asarray(step, jnp.int32), 0)
  return jnp.minimum(start + (step // interval) * inc, end).astype(jnp.int32)


def interleave(xs: jax.Array, ys: jax.Array) -> jax.Array:
  """xs [B, n, d], ys [B, n] -> [B, 2n, d]: x_i at 2i, [y_i, 0, ..., 0] at 2i + 1."""
  b, n, d = xs.shape
  y_tokens = jnp.zeros_like(xs).at[..., 0].set(ys)
  return jnp.stack([xs, y_tokens], axis=2).reshape(b, 2 * n, d)


def at_x_positions(values: jax.Array) -> jax.Array:
  """[B, n] -> [B, 2n] with values[:, i] at position 2i and 0 at odd positions."""
  return jnp.stack([values, jnp.zeros_like(values)], axis=2).reshape(values.shape[0], -1)


def covariance_factor(kind: str, n_dims: int, seed: int) -> np.ndarray:
  """T [d, d] float64 such that x = z @ T has Cov(x) = T^T T with trace d (Garg's
  `sample_transformation(eigenvalues, normalize=True)`). Fixed per (kind, seed)."""
  if kind == "skewed":
    eig = 1.0 / np.arange(1, n_dims + 1)
  elif kind == "half_subspace":
    eig = (np.arange(n_dims) < n_dims // 2).astype(np.float64)
  else:
    return np.eye(n_dims)
  g = np.random.default_rng(seed).standard_normal((n_dims, n_dims))
  q, r = np.linalg.qr(g)
  u = q * np.sign(np.diag(r))  # Haar-distributed rotation
  t = (u * eig) @ u.T
  return t * math.sqrt(n_dims / np.sum(eig**2))


@dataclasses.dataclass(frozen=True)
class InContextRegression(RegressionTask):
  """Shared prompt construction, curriculum and OOD options; subclasses define f."""

  n_dims: int = 20
  n_points: int = 41
  curriculum: bool = True
  dims_start: int = 5
  dims_inc: int = 1
  dims_interval: int = 5000
  points_start: int = 11
  points_inc: int = 2
  points_interval: int = 5000
  noise_std: float = 0.0
  renormalize_ys: bool = False
  x_covariance: str = "isotropic"
  covariance_seed: int = 0
  x_scale: float = 1.0
  y_scale: float = 1.0
  prompting: str = "standard"

  uses_dims_curriculum: ClassVar[bool] = True

  def __post_init__(self):
    check(self.n_dims >= 1 and self.n_points >= 1,
          f"task.n_dims={self.n_dims}, task.n_points={self.n_points} must both be >= 1.")
    for name in ("dims", "points"):
      start, inc, interval = (getattr(self, f"{name}_{s}") for s in ("start", "inc", "interval"))
      check(start >= 1 and inc >= 0 and interval >= 1,
            f"task.{name}_start={start}, {name}_inc={inc}, {name}_interval={interval} need "
            "start >= 1, inc >= 0, interval >= 1.")
    check(self.noise_std >= 0, f"task.noise_std={self.noise_std} must be >= 0.")
    check_choice("task.x_covariance", self.x_covariance, COVARIANCES)
    check_choice("task.prompting", self.prompting, PROMPTINGS)

  # --- static shape information -------------------------------------------------------------
  @property
  def seq_len(self) -> int:
    return 2 * self.n_points

  @property
  def vocab_size(self) -> int:
    return self.n_dims

  @property
  def normaliser(self) -> float:
    """Divides squared errors so that the zero predictor scores 1 (d; s for sparse LR; 1 for
    trees)."""
    return float(self.n_dims)

  @property
  def rows_per_prompt(self) -> int:
    """Rows that make one error-vs-k curve: 1, or one row per query position."""
    if self.prompting == "standard":
      return 1
    if self.prompting == "orthogonal_train_test":
      return min(self.n_points, self.n_dims)
    return self.n_points

  # --- curriculum -----------------------------------------------------------------------------
  def active_dims(self, step: jax.Array | int = 0) -> jax.Array:
    if not (self.curriculum and self.uses_dims_curriculum):
      return jnp.asarray(self.n_dims, jnp.int32)
    return curriculum_value(step, self.dims_start, self.dims_inc, self.dims_interval, self.n_dims)

  def active_points(self, step: jax.Array | int = 0) -> jax.Array:
    if not self.curriculum:
      return jnp.asarray(self.n_points, jnp.int32)
    return curriculum_value(step, self.points_start, self.points_inc, self.points_interval,
                            self.n_points)

  # --- the function class ---------------------------------------------------------------------
  def sample_function(self, key: jax.Array, batch_size: int, dim_mask: jax.Array) -> dict:
    """Parameters of B functions; `dim_mask` float [d] zeroes unused input coordinates."""
    raise NotImplementedError

  def evaluate(self, params: dict, xs: jax.Array) -> jax.Array:
    """f(xs): params from `sample_function`, xs [B, n, d] -> [B, n] (before y_scale, noise)."""
    raise NotImplementedError

  # --- sampling -------------------------------------------------------------------------------
  def sample(self, key: jax.Array, batch_size: int, step: jax.Array | int = 0) -> Batch:
    d_act, n_act = self.active_dims(step), self.active_points(step)
    dim_mask = (jnp.arange(self.n_dims) < d_act).astype(jnp.float32)
    k_x, k_f, k_q, k_noise = jax.random.split(key, 4)

    xs = self._sample_xs(k_x, batch_size) * dim_mask
    params = self.sample_function(k_f, batch_size, dim_mask)
    point_mask = (jnp.arange(self.n_points) < n_act)[None, :]  # [1, n]
    extra: dict[str, jax.Array] = {}
    if self.prompting == "standard":
      scored = jnp.broadcast_to(point_mask, (batch_size, self.n_points))
    else:
      xs, query_index = self._query_prompts(k_q, xs, n_act, d_act)
      scored = jnp.arange(self.n_points)[None, :] == query_index[:, None]
      extra["query_index"] = query_index

    ys = self.y_scale * self.evaluate(params, xs)
    if self.noise_std:
      ys = ys + self.noise_std * jax.random.normal(k_noise, ys.shape)
    if self.renormalize_ys:
      ys = ys * jnp.sqrt(d_act.astype(jnp.float32)) / _masked_std(ys, point_mask)
    ys = ys.astype(jnp.float32)

    return {
        "inputs": interleave(xs, ys),
        "targets": at_x_positions(ys),
        "weights": at_x_positions(scored.astype(jnp.float32)),
        "xs": xs,
        "ys": ys,
        **params,
        **extra,
    }

  def pointwise_error(self, outputs: jax.Array, batch: Batch) -> jax.Array:
    """Squared error at the x-positions: outputs [B, 2n, 1] -> [B, n] (unnormalised)."""
    return jnp.square(outputs[:, 0::2, 0].astype(jnp.float32) - batch["ys"])

  def _sample_xs(self, key: jax.Array, batch_size: int) -> jax.Array:
    xs = jax.random.normal(key, (batch_size, self.n_points, self.n_dims))
    if self.x_covariance != "isotropic":
      t = covariance_factor(self.x_covariance, self.n_dims, self.covariance_seed)
      xs = jnp.einsum("bnd,de->bne", xs, jnp.asarray(t, jnp.float32), precision=_HI)
    return self.x_scale * xs

  def _query_prompts(self, key, xs, n_act, d_act):
    """Builds one query per row: returns (xs with the query at its position, query_index)."""
    b, n, _ = xs.shape
    n_q = jnp.minimum(n_act, d_act) if self.prompting == "orthogonal_train_test" else n_act
    k = jnp.arange(b, dtype=jnp.int32) % n_q  # [B]
    original = jnp.take_along_axis(xs, k[:, None, None], axis=1)[:, 0]  # [B, d]
    before = (jnp.arange(n)[None, :] < k[:, None])[..., None]  # context rows [B, n, 1]
    context = xs
    if self.prompting == "random_quadrants":
      pattern = jnp.sign(jax.random.normal(key, (b, 1, xs.shape[-1])))
      context = jnp.abs(xs) * pattern
      query = original
    elif self.prompting == "overlapping_train_test":
      # j uniform on {0..k-1}; k = 0 has no context and keeps its own point (as in Garg).
      j = jnp.floor(jax.random.uniform(key, (b,)) * k).astype(jnp.int32)
      j = jnp.clip(j, 0, jnp.maximum(k - 1, 0))
      query = jnp.take_along_axis(xs, j[:, None, None], axis=1)[:, 0]
    else:
      query = _orthogonal_query(original, jnp.where(before, xs, 0.0), k)
    at_k = (jnp.arange(n)[None, :] == k[:, None])[..., None]
    return jnp.where(at_k, query[:, None, :], context), k


def _masked_std(ys: jax.Array, mask: jax.Array) -> jax.Array:
  """Std of ys [B, n] over the entries where mask [1, n] holds (Garg: over the whole batch)."""
  w = jnp.broadcast_to(mask, ys.shape).astype(ys.dtype)
  count = jnp.maximum(jnp.sum(w), 1.0)
  mean = jnp.sum(ys * w) / count
  return jnp.sqrt(jnp.sum(jnp.square(ys - mean) * w) / count)


def _orthogonal_query(query: jax.Array, context: jax.Array, k: jax.Array) -> jax.Array:
  """Projects query [B, d] off the row space of context [B, n, d] (k nonzero rows) and rescales
  it to its original norm (Garg's gen_orthogonal_train_test)."""
  _, s, vt = jnp.linalg.svd(context, full_matrices=False)  # vt [B, r, d]
  keep = (jnp.arange(s.shape[-1])[None, :] < k[:, None]) & (s > 1e-6 * s[:, :1])
  basis = vt * keep[..., None]
  q = query
  for _ in range(2):  # a second pass removes float32 round-off left by the first
    q = q - jnp.einsum("brd,br->bd", basis, jnp.einsum("brd,bd->br", basis, q, precision=_HI),
                       precision=_HI)
  norm = jnp.linalg.norm(query, axis=-1, keepdims=True)
  return q * norm / jnp.maximum(jnp.linalg.norm(q, axis=-1, keepdims=True), 1e-30)


@register("linear_regression")
@dataclasses.dataclass(frozen=True)
class LinearRegression(InContextRegression):
  """y = w^T x, w ~ N(0, I_d) with unused coordinates zeroed. Extra batch key: w [B, d]."""

  def sample_function(self, key, batch_size, dim_mask):
    return {"w": jax.random.normal(key, (batch_size, self.n_dims)) * dim_mask}

  def evaluate(self, params, xs):
    return jnp.einsum("bnd,bd->bn", xs, params["w"], precision=_HI)


@register("noisy_linear_regression")
@dataclasses.dataclass(frozen=True)
class NoisyLinearRegression(LinearRegression):
  """Linear regression with N(0, 0.1^2) label noise (Yang's `noisy_linear_regression`)."""

  noise_std: float = 0.1


@register("sparse_linear_regression")
@dataclasses.dataclass(frozen=True)
class SparseLinearRegression(LinearRegression):
  """y = w^T x with `sparsity` nonzero N(0, 1) coordinates of w at uniformly random active
  positions (all active ones while fewer than `sparsity` are active). Normalised by s."""

  sparsity: int = 3

  def __post_init__(self):
    super().__post_init__()
    check(1 <= self.sparsity <= self.n_dims,
          f"task.sparsity={self.sparsity} must lie in [1, n_dims={self.n_dims}].")

  @property
  def normaliser(self) -> float:
    return float(self.sparsity)

  def sample_function(self, key, batch_size, dim_mask):
    k_w, k_s = jax.random.split(key)
    w = jax.random.normal(k_w, (batch_size, self.n_dims))
    # Rank active coordinates by a uniform score (inactive ones rank last): the support is a
    # uniform s-subset of the active coordinates.
    scores = jnp.where(dim_mask > 0, jax.random.uniform(k_s, w.shape), 2.0)
    ranks = jnp.argsort(jnp.argsort(scores, axis=-1), axis=-1)
    return {"w": w * (ranks < self.sparsity) * dim_mask}


@register("decision_tree")
@dataclasses.dataclass(frozen=True)
class DecisionTree(InContextRegression):
  """Depth-`depth` binary tree: node m tests x[features[m]] > 0 (right child 2m + 2, left 2m + 1),
  leaves hold N(0, 1) values. Heap arrays of 2^(depth+1) - 1 nodes; only internal entries of
  `tree_features` and leaf entries of `tree_leaves` are used. No dims curriculum."""

  n_points: int = 101
  points_start: int = 26
  points_inc: int = 5
  depth: int = 4

  uses_dims_curriculum: ClassVar[bool] = False

  def __post_init__(self):
    super().__post_init__()
    check(self.depth >= 1, f"task.depth={self.depth} must be >= 1.")

  @property
  def normaliser(self) -> float:
    """1: leaves are N(0, 1), so the zero predictor already scores 1 (Garg's plot_utils)."""
    return 1.0

  def sample_function(self, key, batch_size, dim_mask):
    del dim_mask  # trees always see every coordinate
    k_f, k_v = jax.random.split(key)
    n_nodes = 2 ** (self.depth + 1) - 1
    return {
        "tree_features": jax.random.randint(k_f, (batch_size, n_nodes), 0, self.n_dims),
        "tree_leaves": jax.random.normal(k_v, (batch_size, n_nodes)),
    }

  def evaluate(self, params, xs):
    node = jnp.zeros(xs.shape[:2], jnp.int32)  # [B, n]
    for _ in range(self.depth):
      feature = jnp.take_along_axis(params["tree_features"], node, axis=1)
      value = jnp.take_along_axis(xs, feature[..., None], axis=2)[..., 0]
      node = 2 * node + 1 + (value > 0).astype(jnp.int32)
    return jnp.take_along_axis(params["tree_leaves"], node, axis=1)


@register("relu2nn")
@dataclasses.dataclass(frozen=True)
class Relu2NN(InContextRegression):
  """y = sqrt(2 / h) * ReLU(x W1) W2, W1 [d, h] and W2 [h] with N(0, 1) entries, h = `hidden`.
  Extra batch keys: w1 [B, d, h] (unused input rows zeroed), w2 [B, h]."""

  n_points: int = 101
  points_start: int = 26
  points_inc: int = 5
  hidden: int = 100

  def __post_init__(self):
    super().__post_init__()
    check(self.hidden >= 1, f"task.hidden={self.hidden} must be >= 1.")

  def sample_function(self, key, batch_size, dim_mask):
    k1, k2 = jax.random.split(key)
    w1 = jax.random.normal(k1, (batch_size, self.n_dims, self.hidden)) * dim_mask[:, None]
    return {"w1": w1, "w2": jax.random.normal(k2, (batch_size, self.hidden))}

  def evaluate(self, params, xs):
    h = jax.nn.relu(jnp.einsum("bnd,bdh->bnh", xs, params["w1"], precision=_HI))
    return math.sqrt(2.0 / self.hidden) * jnp.einsum("bnh,bh->bn", h, params["w2"], precision=_HI)


def function_classes() -> dict[str, type[InContextRegression]]:
  """Registered name -> class for the five in-context function classes."""
  classes: dict[str, Any] = {
      c.name: c for c in (LinearRegression, NoisyLinearRegression, SparseLinearRegression,
                          DecisionTree, Relu2NN)
  }
  return classes
