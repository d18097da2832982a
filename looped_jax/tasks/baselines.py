"""Classical in-context baselines with a model's call signature (docs/papers.md, "Yang et al.").

  baseline(inputs [B, 2n, d]) -> outputs [B, 2n, 1] float64 numpy

The prediction at x-position 2k uses only (x_1..x_{k-1}, y_1..y_{k-1}) and the query x_k; it is
written at position 2k (odd positions hold 0), and position 0 predicts 0. Each baseline reads xs
from the even positions and y from channel 0 of the odd ones, so it runs on any prompt a model
sees (curriculum, OOD settings) and is scored by the same `pointwise_error`.

Everything runs in float64: numpy for the closed forms, Lasso and trees; jax under
`jax.enable_x64` with HIGHEST precision for the gradient-descent network. Python loops run over
positions k (and tree levels, CD sweeps), never over prompts, except the homotopy that finishes
the few Lasso problems coordinate descent leaves unsolved.

  name            constructor                    what (reference: dtsip/in-context-learning)
  zero            zero()                         0
  least_squares   least_squares()                min-norm OLS = pinv(X) y (Garg's lstsq)
  ridge           ridge(alpha=0.01)              argmin |y - Xw|^2 + alpha |w|^2
  lasso           lasso(alpha=0.01)              sklearn's Lasso objective, no intercept, exact
  knn             knn(n_neighbors=3)             uniform k-NN (Garg's NNModel)
  averaging       averaging()                    w = sum_i y_i x_i / k (Garg's AveragingModel)
  decision_tree   decision_tree(max_depth=4)     CART as sklearn's DecisionTreeRegressor
  relu_net_gd     relu_net_gd(hidden=100, ...)   Garg's GDModel: 2-layer ReLU net, Adam

Cost on 2000 prompts, d = 20, n = 41 (2 shared CPU cores): least squares, ridge, averaging and
k-NN under a second each; Lasso from seconds (alpha = 1) to about two minutes (alpha = 1e-4);
trees (n = 101) about two minutes; the GD network ~1 s per prompt on CPU (use a GPU). XGBoost
is not included.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from looped_jax.errors import ConfigError
from looped_jax.registry import Registry

Predictor = Callable[[np.ndarray], np.ndarray]

LASSO_ALPHAS = (1.0, 0.1, 0.01, 0.001, 0.0001)  # Garg's grid for sparse LR
_BASELINES = Registry("baseline")
register = _BASELINES.register  # function decorator: @register("name")


def names() -> tuple[str, ...]:
  return _BASELINES.names()


def get(name: str, **kwargs) -> Predictor:
  """Builds the baseline `name` with constructor keyword arguments `kwargs`."""
  return _BASELINES.lookup(name)(**kwargs)


def relevant_baselines(task_name: str) -> dict[str, Predictor]:
  """Garg's per-task baseline set (plus zero; ridge for noisy LR), name -> predictor."""
  common = {"zero": zero(), "least_squares": least_squares(), "3nn": knn(3),
            "averaging": averaging()}
  if task_name == "noisy_linear_regression":
    return common | {"ridge_alpha=0.01": ridge(0.01)}
  if task_name == "sparse_linear_regression":
    return common | {f"lasso_alpha={a:g}": lasso(a) for a in LASSO_ALPHAS}
  if task_name == "decision_tree":
    return common | {"tree_depth=4": decision_tree(4), "tree_depth=inf": decision_tree(None)}
  if task_name == "relu2nn":
    return common | {"relu_net_gd": relu_net_gd()}
  return common


# --- prompt plumbing ------------------------------------------------------------------------


def split_prompt(inputs) -> tuple[np.ndarray, np.ndarray]:
  """inputs [B, 2n, d] -> xs [B, n, d], ys [B, n] in float64."""
  inputs = np.asarray(inputs, dtype=np.float64)
  return inputs[:, 0::2, :], inputs[:, 1::2, 0]


def to_outputs(preds: np.ndarray) -> np.ndarray:
  """preds [B, n] (prediction of y_k at index k) -> outputs [B, 2n, 1], zeros at odd positions."""
  out = np.zeros((preds.shape[0], 2 * preds.shape[1], 1), np.float64)
  out[:, 0::2, 0] = preds
  return out


def _per_position(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Predictor:
  """Wraps fn(xs, ys) -> preds [B, n] into the model signature."""
  @functools.wraps(fn)
  def predictor(inputs):
    xs, ys = split_prompt(inputs)
    return to_outputs(fn(xs, ys))
  return predictor


# --- closed-form baselines ------------------------------------------------------------------


@register("zero")
def zero() -> Predictor:
  """Predicts 0 everywhere (normalised error 1 on the isotropic classes)."""
  return _per_position(lambda xs, ys: np.zeros_like(ys))


@register("least_squares")
def least_squares(rank_tol: float = 1e-10) -> Predictor:
  """Minimum-norm least squares on the first k points, i.e. pinv(X_<k) y_<k (exact
  interpolation while k <= rank). Computed by a recursive pseudo-inverse update (Greville), one
  vectorised O(B d^2) step per point instead of B n SVDs; x_k counts as a new direction when its
  squared residual off the current row space exceeds rank_tol |x_k|^2 (float32 prompts put
  round-off at ~1e-14, generic Gaussian points at >= 1e-4)."""
  def fn(xs, ys):
    b, n, d = xs.shape
    preds = np.zeros_like(ys)
    w = np.zeros((b, d))
    perp = np.broadcast_to(np.eye(d), (b, d, d)).copy()  # projector off the row space of X_<k
    m = np.zeros((b, d, d))  # (X_<k^T X_<k)^+
    for k in range(n):
      x, y = xs[:, k], ys[:, k]
      preds[:, k] = np.einsum("bd,bd->b", x, w)
      if k == n - 1:
        break
      err = y - preds[:, k]
      c = np.einsum("bij,bj->bi", perp, x)
      cc = np.einsum("bd,bd->b", c, c)
      new = cc > rank_tol * np.maximum(np.einsum("bd,bd->b", x, x), 1e-300)
      mx = np.einsum("bij,bj->bi", m, x)
      xmx = np.einsum("bd,bd->b", x, mx)
      for case, rows in ((True, new), (False, ~new)):
        if not rows.any():
          continue
        i = slice(None) if rows.all() else np.flatnonzero(rows)  # slices avoid copies
        ci, mi, ei = c[i], mx[i], err[i]
        if case:  # x adds a direction c: fit it exactly along c, keep the old fit (Greville)
          inv = 1.0 / cc[i]
          cross = mi[:, :, None] * ci[:, None, :]
          w[i] += (ei * inv)[:, None] * ci
          cc_outer = ci[:, :, None] * ci[:, None, :]
          m[i] += (((1.0 + xmx[i]) * inv**2)[:, None, None] * cc_outer
                   - (cross + cross.transpose(0, 2, 1)) * inv[:, None, None])
          perp[i] -= inv[:, None, None] * cc_outer
        else:  # x lies in the row space: recursive least squares within it
          g = mi / (1.0 + xmx[i])[:, None]
          w[i] += g * ei[:, None]
          m[i] -= g[:, :, None] * mi[:, None, :]
    return preds
  return _per_position(fn)


@register("ridge")
def ridge(alpha: float = 0.01) -> Predictor:
  """w = (X^T X + alpha I)^{-1} X^T y on the first k points (recursive least squares from
  M = I / alpha). alpha = sigma^2 / prior variance gives the posterior mean; 0.01 is
  Bayes-optimal for noisy_linear_regression (sigma = 0.1, w ~ N(0, I))."""
  if alpha <= 0:
    raise ConfigError(f"ridge alpha={alpha} must be > 0 (use least_squares for alpha = 0).")

  def fn(xs, ys):
    b, n, d = xs.shape
    preds = np.zeros_like(ys)
    w = np.zeros((b, d))
    m = np.broadcast_to(np.eye(d) / alpha, (b, d, d)).copy()  # (X^T X + alpha I)^{-1}
    for k in range(n):
      x = xs[:, k]
      preds[:, k] = np.einsum("bd,bd->b", x, w)
      mx = np.einsum("bij,bj->bi", m, x)
      g = mx / (1.0 + np.einsum("bd,bd->b", x, mx))[:, None]
      w = w + g * (ys[:, k] - preds[:, k])[:, None]
      m = m - g[:, :, None] * mx[:, None, :]
    return preds
  return _per_position(fn)


@register("averaging")
def averaging() -> Predictor:
  """w_k = sum_{i<k} y_i x_i / k; expected normalised error (d + 1) / k on isotropic LR."""
  def fn(xs, ys):
    sums = np.cumsum(xs * ys[..., None], axis=1)  # sums[:, i] = sum_{j<=i} y_j x_j
    counts = np.arange(1, xs.shape[1] + 1)[None, :, None]
    w = np.zeros_like(xs)
    w[:, 1:] = (sums / counts)[:, :-1]
    return np.einsum("bnd,bnd->bn", xs, w)
  return _per_position(fn)


@register("knn")
def knn(n_neighbors: int = 3) -> Predictor:
  """Mean y of the min(k, n_neighbors) nearest earlier points (Euclidean, uniform weights)."""
  def fn(xs, ys):
    n = xs.shape[1]
    sq = np.sum(xs**2, axis=-1)
    dist = sq[:, :, None] + sq[:, None, :] - 2 * np.einsum("bid,bjd->bij", xs, xs)
    earlier = np.arange(n)[None, :] < np.arange(n)[:, None]  # [query i, point j]: j < i
    dist = np.where(earlier[None], dist, np.inf)
    m = min(n_neighbors, n)
    nearest = np.argsort(dist, axis=-1, kind="stable")[..., :m]  # [B, n, m]
    valid = np.arange(m)[None, :] < np.arange(n)[:, None]  # [n, m]: fewer than m earlier points
    y_near = np.take_along_axis(np.broadcast_to(ys[:, None, :], dist.shape), nearest, axis=-1)
    return np.sum(y_near * valid, axis=-1) / np.maximum(valid.sum(-1), 1)
  return _per_position(fn)


# --- Lasso by coordinate descent ------------------------------------------------------------


@register("lasso")
def lasso(alpha: float = 0.01, cd_sweeps: int = 50, chunk: int = 256) -> Predictor:
  """Lasso without intercept, w = argmin (1/2k) |y - Xw|^2 + alpha |w|_1 on the first k points
  (sklearn's objective), solved exactly: see `solve_lasso`."""
  if alpha <= 0:
    raise ConfigError(f"lasso alpha={alpha} must be > 0.")

  def fn(xs, ys):
    b, n, d = xs.shape
    preds = np.zeros_like(ys)
    for lo in range(0, b, chunk):
      x, y = xs[lo:lo + chunk], ys[lo:lo + chunk]
      gram, xty = _prefix_moments(x, y)  # problems (prompt, k = 1..n-1)
      w = solve_lasso(gram, xty, alpha, cd_sweeps).reshape(x.shape[0], n - 1, d)
      preds[lo:lo + chunk, 1:] = np.einsum("bkd,bkd->bk", x[:, 1:], w)
    return preds
  return _per_position(fn)


def _prefix_moments(xs: np.ndarray, ys: np.ndarray):
  """Per (prompt, k = 1..n-1), averaged over the first k points: X^T X / k [P, d, d] and
  X^T y / k [P, d], P = B (n - 1)."""
  b, n, d = xs.shape
  k = np.arange(1, n)[None, :]
  gram = np.cumsum(np.einsum("bni,bnj->bnij", xs, xs), axis=1)[:, :-1] / k[..., None, None]
  xty = np.cumsum(xs * ys[..., None], axis=1)[:, :-1] / k[..., None]
  return gram.reshape(-1, d, d), xty.reshape(-1, d)


def solve_lasso(gram: np.ndarray, xty: np.ndarray, alpha: float, cd_sweeps: int = 50,
                check_every: int = 5) -> np.ndarray:
  """argmin_w 0.5 w^T G w - c^T w + alpha |w|_1 for P problems: G [P, d, d], c [P, d] -> [P, d].

  Cyclic coordinate descent, vectorised over problems. Every `check_every` sweeps each live
  problem is solved exactly on the support and signs of its iterate and retired once that
  solution satisfies the KKT conditions (|c - G w| <= alpha, = alpha sign(w) on the support).
  CD alone crawls when k < d makes G rank-deficient (its iterates keep more than k nonzeros for
  thousands of sweeps), so problems still live after `cd_sweeps` are finished by the exact
  homotopy (LARS-Lasso) path. Every returned solution passes the KKT check, else RuntimeError.
  Coordinates with G_jj = 0 (unused dimensions) stay 0.
  """
  p, d = xty.shape
  w = np.zeros((p, d))
  live = np.arange(p)
  g, c, ww = gram, xty, w.copy()
  dg = np.einsum("pii->pi", g)
  gww = np.zeros((p, d))  # G w, kept up to date
  for sweep in range(1, cd_sweeps + 1):
    for j in range(d):
      rho = c[:, j] - gww[:, j] + dg[:, j] * ww[:, j]
      new = np.sign(rho) * np.maximum(np.abs(rho) - alpha, 0.0)
      new = np.where(dg[:, j] > 0, new / np.where(dg[:, j] > 0, dg[:, j], 1.0), 0.0)
      gww += g[:, j] * (new - ww[:, j])[:, None]  # G symmetric: row j = column j
      ww[:, j] = new
    if sweep % check_every and sweep != cd_sweeps:
      continue
    refit, exact = _support_refit(g, c, ww, alpha)
    w[live[exact]] = refit[exact]
    keep = ~exact
    live = live[keep]
    if not live.size:
      break
    g, c, dg, ww, gww = g[keep], c[keep], dg[keep], ww[keep], gww[keep]
  for i in live:
    w[i] = lasso_homotopy(gram[i], xty[i], alpha)
  bad = ~lasso_kkt(gram, xty, w, alpha)
  if bad.any():
    raise RuntimeError(f"lasso(alpha={alpha}): {bad.sum()} of {p} solutions fail the KKT check")
  return w


def lasso_kkt(gram, xty, w, alpha, rtol: float = 1e-3, round_off: float = 1e-10) -> np.ndarray:
  """Whether w [P, d] is optimal: c - G w = alpha sign(w) on the support and |c - G w| <= alpha
  off it, up to rtol * alpha (relative to alpha, so near-tied coordinates are told apart even
  for tiny alpha) plus round_off * max|c|. -> [P] bool."""
  grad = xty - np.einsum("pij,pj->pi", gram, w)
  tol = rtol * alpha + round_off * np.max(np.abs(xty), axis=-1, keepdims=True)
  on = w != 0
  on_ok = np.abs(grad - alpha * np.sign(w)) <= tol
  off_ok = np.abs(grad) <= alpha + tol
  return np.all(np.where(on, on_ok, off_ok), axis=-1) & np.all(np.isfinite(w), axis=-1)


def _support_refit(gram, xty, w, alpha):
  """The exact solution on the support and signs of w, and whether it is optimal.
  [P, d, d], [P, d], [P, d] -> ([P, d], [P] bool)."""
  d = w.shape[-1]
  on = w != 0
  sign = np.sign(w)
  a = np.where(on[:, :, None] & on[:, None, :], gram, 0.0) + (~on)[:, :, None] * np.eye(d)
  rhs = np.where(on, xty - alpha * sign, 0.0)
  with np.errstate(all="ignore"):
    try:
      sol = np.linalg.solve(a, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:  # singular G_SS (support larger than k): least-norm instead
      sol = np.einsum("pij,pj->pi", np.linalg.pinv(a), rhs)
  sol = np.where(on, sol, 0.0)
  same_signs = np.all(np.sign(sol) == sign, axis=-1)
  return sol, same_signs & lasso_kkt(gram, xty, sol, alpha)


def lasso_homotopy(gram: np.ndarray, xty: np.ndarray, alpha: float) -> np.ndarray:
  """Exact Lasso solution of one problem (G [d, d], c [d]) by the LARS-Lasso homotopy: follow
  w(lam) from lam = max|c| down to alpha, adding a coordinate when its correlation |c - G w|
  reaches lam and dropping one when it crosses zero."""
  d = xty.shape[0]
  w = np.zeros(d)
  lam = lam0 = np.max(np.abs(xty))  # event times below ~1e-12 lam0 are round-off
  active = np.zeros(d, bool)
  if lam <= alpha:
    return w
  active[np.argmax(np.abs(xty))] = True
  sign = np.sign(xty)
  dropped = -1  # a coordinate just dropped sits at |corr| = lam: no rejoin at t = 0
  for _ in range(8 * d + 8):
    idx = np.flatnonzero(active)
    direction = np.zeros(d)
    direction[idx] = np.linalg.lstsq(gram[np.ix_(idx, idx)], sign[idx], rcond=None)[0]
    corr = xty - gram @ w  # lam * sign on the active set
    b = gram @ direction  # d corr / d t = -b, t = lam_now - lam
    steps = [(lam - alpha, "stop", -1)]
    with np.errstate(divide="ignore", invalid="ignore"):
      for j in np.flatnonzero(~active & (np.diag(gram) > 0)):
        floor = 1e-9 if j == dropped else 1e-12  # skip the drop point's own t = 0 root
        for t in ((corr[j] - lam) / (b[j] - 1.0), (corr[j] + lam) / (b[j] + 1.0)):
          if np.isfinite(t) and t > floor * lam0:
            steps.append((t, "join", j))
      for j in idx:
        t = -w[j] / direction[j]
        if np.isfinite(t) and t > 1e-12 * lam0:
          steps.append((t, "drop", j))
    t, kind, j = min(steps, key=lambda s: s[0])
    w = w + t * direction
    lam -= t
    if kind == "stop":
      break
    if kind == "join":
      active[j] = True
      sign[j] = np.sign(corr[j] - t * b[j])
      dropped = -1
    else:
      active[j] = False
      w[j] = 0.0
      dropped = j
  w[~active] = 0.0
  # Polish: solve the final active set exactly, removing drift accumulated along the path.
  idx = np.flatnonzero(active)
  if idx.size:
    exact = np.linalg.lstsq(gram[np.ix_(idx, idx)], xty[idx] - alpha * sign[idx], rcond=None)[0]
    if np.all(np.sign(exact) == sign[idx]):
      w[idx] = exact
  return w


# --- greedy regression tree -----------------------------------------------------------------


@register("decision_tree")
def decision_tree(max_depth: int | None = 4) -> Predictor:
  """CART regression tree (squared error, midpoint thresholds, x <= t goes left, leaf = mean),
  grown greedily on the first k points. Only the root-to-query path is grown: greedy splits of
  a node do not depend on its siblings, so the prediction equals the full tree's. Equal-score
  splits go to the lowest feature index, then the lowest threshold (sklearn breaks them at
  random). max_depth=None splits until leaves are pure."""
  if max_depth is not None and max_depth < 1:
    raise ConfigError(f"decision_tree max_depth={max_depth} must be >= 1 or None.")

  def fn(xs, ys):
    b, n, d = xs.shape
    order = np.argsort(xs, axis=1, kind="stable")  # [B, n, d] points sorted per feature
    x_sorted = np.take_along_axis(xs, order, axis=1)
    y_sorted = np.take_along_axis(np.broadcast_to(ys[..., None], xs.shape), order, axis=1)
    preds = np.zeros_like(ys)
    for k in range(1, n):
      member = np.broadcast_to(np.arange(n) < k, (b, n)).copy()
      _grow_path(xs, xs[:, k], x_sorted, y_sorted, order, member, max_depth)
      preds[:, k] = np.sum(member * ys, axis=1) / member.sum(axis=1)
    return preds
  return _per_position(fn)


def _grow_path(xs, query, x_sorted, y_sorted, order, member, max_depth):
  """Narrows member [B, n] (in place) to the leaf that holds each prompt's query [B, d]."""
  live = np.arange(xs.shape[0])
  depth = 0
  while live.size and (max_depth is None or depth < max_depth):
    m = np.take_along_axis(member[live][:, :, None], order[live], axis=1)  # [L, n, d] sorted
    xv, yv = x_sorted[live], y_sorted[live] * m
    # Counts, sums of y and of y^2 over members up to each sorted position (yv is masked).
    cnt, s1, s2 = np.cumsum(m, axis=1), np.cumsum(yv, axis=1), np.cumsum(yv * yv, axis=1)
    tot, t1, t2 = cnt[:, -1:], s1[:, -1:], s2[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
      sse = (s2 - s1**2 / cnt) + ((t2 - s2) - (t1 - s1)**2 / (tot - cnt))
    # Next member value after each sorted position: a split needs distinct neighbours.
    masked = np.where(m, xv, np.inf)
    nxt = np.concatenate([np.minimum.accumulate(masked[:, ::-1], axis=1)[:, ::-1][:, 1:],
                          np.full_like(masked[:, :1], np.inf)], axis=1)
    valid = m & (cnt < tot) & (nxt > xv)
    sse = np.where(valid, sse, np.inf)
    # Ties (equal partitions reached through different features) go to the lowest feature,
    # then the lowest threshold, so that round-off in the cumulative sums does not decide.
    flat = np.swapaxes(sse, 1, 2).reshape(live.size, -1)  # feature-major
    lowest = np.min(flat, axis=1, keepdims=True)
    best = np.argmax(flat <= lowest + 1e-12 * (np.abs(lowest) + t2[:, 0, :1]), axis=1)
    feat, pos = np.unravel_index(best, (sse.shape[2], sse.shape[1]))
    parent = t2[:, 0, 0] - t1[:, 0, 0]**2 / tot[:, 0, 0]
    ok = np.isfinite(lowest[:, 0]) & (parent > 1e-12 * tot[:, 0, 0])
    rows = np.arange(live.size)
    thr = 0.5 * (xv[rows, pos, feat] + nxt[rows, pos, feat])
    go_left = query[live, feat] <= thr
    side = (xs[live, :, feat] <= thr[:, None]) == go_left[:, None]
    member[live[ok]] &= side[ok]
    live = live[ok]
    depth += 1


# --- 2-layer ReLU network by gradient descent -----------------------------------------------


@register("relu_net_gd")
def relu_net_gd(hidden: int = 100, lr: float = 5e-3, steps: int = 100, batch_size: int = 100,
                seed: int = 0) -> Predictor:
  """Garg's GDModel: per prompt and k, a fresh Linear(d, h) -> ReLU -> Linear(h, 1) (PyTorch
  default uniform init) trained by Adam on the MSE of the first k points, `steps` steps of
  random minibatches of `batch_size` points (the full prefix when k <= batch_size), then
  evaluated at x_k. Float64 jax; cost O(B n^2 d h steps), so use a GPU for thousands of
  prompts."""
  def predictor(inputs):
    xs, ys = split_prompt(inputs)
    b, n, _ = xs.shape
    preds = np.zeros_like(ys)
    with jax.enable_x64(True):
      xj, yj = jnp.asarray(xs), jnp.asarray(ys)
      base = jax.random.key(seed)
      for k in range(1, n):
        preds[:, k] = np.asarray(_gd_fit_predict(jax.random.fold_in(base, k), xj, yj, k,
                                                 hidden, lr, steps, batch_size))
    return to_outputs(preds)
  return predictor


@functools.partial(jax.jit, static_argnums=(4, 5, 6, 7))
def _gd_fit_predict(key, xs, ys, k, hidden, lr, steps, batch_size):
  """Trains B networks on the first k points of each prompt; returns predictions at x_k [B]."""
  b, n, d = xs.shape
  hi = jax.lax.Precision.HIGHEST

  def init(key):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    u = lambda kk, shape, fan_in: jax.random.uniform(
        kk, shape, xs.dtype, -1.0 / np.sqrt(fan_in), 1.0 / np.sqrt(fan_in))
    return {"w1": u(k1, (d, hidden), d), "b1": u(k2, (hidden,), d),
            "w2": u(k3, (hidden,), hidden), "b2": u(k4, (), hidden)}

  def apply(params, x):
    h = jax.nn.relu(jnp.dot(x, params["w1"], precision=hi) + params["b1"])
    return jnp.dot(h, params["w2"], precision=hi) + params["b2"]

  prefix = jnp.arange(n) < k
  opt = optax.adam(lr)

  def fit_one(key, x, y):
    k_init, k_steps = jax.random.split(key)
    params = init(k_init)

    def step(carry, step_key):
      params, state = carry
      # A random minibatch of the prefix: the batch_size smallest uniform scores.
      scores = jnp.where(prefix, jax.random.uniform(step_key, (n,)), 2.0)
      chosen = prefix & (jnp.argsort(jnp.argsort(scores)) < batch_size)
      loss = lambda p: jnp.sum(chosen * (apply(p, x) - y) ** 2) / jnp.sum(chosen)
      grads = jax.grad(loss)(params)
      updates, state = opt.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)),
                                  jax.random.split(k_steps, steps))
    return apply(params, x[k])

  return jax.vmap(fit_one)(jax.random.split(key, b), xs, ys)
