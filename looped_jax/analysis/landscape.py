"""River-valley metrics of a Hessian spectrum and matrix entropy / MI of representations.

Gong et al., arXiv 2510.10089 (docs/papers.md, "Gong et al."; the thresholds are our
choices, so every eps-dependent metric is reported for several eps, "Pitfalls" 8). With
eps = frac * lambda_max:

  river            {i : |lambda_i| <= eps}           flat floor
  valley           {i : lambda_i > eps}              walls; H_valley's eigenvalues
  negative         {i : lambda_i < -eps}             reported apart, never valley
  kappa(H_valley)  lambda_max / min valley lambda     >> 1: River-V-Valley (looped)
  Theorem 1's C    sum over eps < lambda < tau of 1/lambda (flattest walls dominate)

A spectrum from `dense_eigh` holds all dim eigenvalues; a Lanczos top-k spectrum only the
largest k, so its river dimension and entropy describe those k alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from looped_jax.errors import check

DEFAULT_EPS_FRACS = (1e-3, 1e-2)
# tau = TAU_FRAC * lambda_max: "low-curvature" valley walls are those at least 10x flatter
# than the sharpest direction (reconstruction; Theorem 1 leaves tau unspecified).
DEFAULT_TAU_FRAC = 0.1


def eps_key(name: str, frac: float) -> str:
  """Stable metric name, e.g. eps_key('kappa_valley', 1e-2) == 'kappa_valley@1e-02'."""
  return f"{name}@{frac:.0e}"


def spectral_entropy(eigenvalues) -> float:
  """-sum p log p with p_i = |lambda_i| / sum_j |lambda_j| (nats); nan for a zero spectrum."""
  mags = np.abs(np.asarray(eigenvalues, np.float64))
  total = mags.sum()
  if total == 0:
    return float("nan")
  p = mags[mags > 0] / total
  return float(-np.sum(p * np.log(p)))


def river_valley_metrics(eigenvalues, eps_fracs=DEFAULT_EPS_FRACS,
                         tau_frac: float = DEFAULT_TAU_FRAC) -> dict[str, float]:
  """Per-spectrum scalars of docs/papers.md, "Gong et al.", for each eps = frac * lambda_max.

  Args:
    eigenvalues: [N] eigenvalues, any order.
    eps_fracs: river/valley thresholds as fractions of lambda_max. If lambda_max <= 0
      the scale is max |lambda| instead (no valley then).
    tau_frac: tau = tau_frac * scale bounds Theorem 1's sum from above.

  Returns:
    Flat dict of python floats:
      num_eigenvalues, lambda_max, lambda_min, trace, spectral_entropy, tau, and per frac
      (suffix '@1e-03' etc., see `eps_key`): eps, river_dim, valley_dim, valley_min,
      kappa_valley (nan if the valley is empty), low_valley_dim and low_valley_inv_sum
      (count and sum of 1/lambda over eps < lambda < tau), neg_dim, neg_frac.
  """
  lam = np.asarray(eigenvalues, np.float64).ravel()
  check(lam.size > 0, "eigenvalues must be non-empty.")
  check(bool(np.all(np.isfinite(lam))), "eigenvalues must be finite.")
  check(0 < tau_frac, f"tau_frac={tau_frac} must be > 0.")
  lam_max = float(lam.max())
  scale = lam_max if lam_max > 0 else float(np.abs(lam).max())
  tau = tau_frac * scale
  out = {
      "num_eigenvalues": float(lam.size),
      "lambda_max": lam_max,
      "lambda_min": float(lam.min()),
      "trace": float(lam.sum()),
      "spectral_entropy": spectral_entropy(lam),
      "tau": tau,
  }
  for frac in eps_fracs:
    check(0 < frac < 1, f"eps fraction {frac} must be in (0, 1).")
    eps = frac * scale
    valley = lam[lam > eps]
    low = valley[valley < tau]
    neg = int(np.sum(lam < -eps))
    valley_min = float(valley.min()) if valley.size else float("nan")
    out.update({
        eps_key("eps", frac): eps,
        eps_key("river_dim", frac): float(np.sum(np.abs(lam) <= eps)),
        eps_key("valley_dim", frac): float(valley.size),
        eps_key("valley_min", frac): valley_min,
        eps_key("kappa_valley", frac): lam_max / valley_min if valley.size else float("nan"),
        eps_key("low_valley_dim", frac): float(low.size),
        eps_key("low_valley_inv_sum", frac): float(np.sum(1.0 / low)),
        eps_key("neg_dim", frac): float(neg),
        eps_key("neg_frac", frac): neg / lam.size,
    })
  return out


def _unit_rows(z: jax.Array) -> jax.Array:
  norms = jnp.linalg.norm(z, axis=-1, keepdims=True)
  return z / jnp.where(norms > 0, norms, 1.0)


def _entropy_of_psd(k: jax.Array) -> jax.Array:
  """-sum s log s over the eigenvalues s of a trace-1 PSD matrix (round-off negatives dropped)."""
  s = jnp.linalg.eigvalsh(k)
  s = jnp.where(s > 0, s, 0.0)
  return -jnp.sum(jnp.where(s > 0, s * jnp.log(jnp.where(s > 0, s, 1.0)), 0.0))


def _gram_entropy(features: jax.Array) -> jax.Array:
  """Entropy of K = F F^T / tr(F F^T) via the smaller of F F^T and F^T F (same nonzero spectrum)."""
  n, d = features.shape
  gram = features @ features.T if n <= d else features.T @ features
  return _entropy_of_psd(gram / jnp.trace(gram))


@jax.jit
def matrix_entropy(z: jax.Array) -> jax.Array:
  """Matrix entropy of representations (docs/papers.md, "Gong et al.").

  Args:
    z: [N, D] representations (e.g. states at a loop, flattened over batch and positions).

  Returns:
    H = -sum sigma_i log sigma_i over eig(K), K = Z Z^T / tr(Z Z^T) with unit-norm rows of Z;
    in [0, log min(N, D)] nats.
  """
  return _gram_entropy(_unit_rows(z))


@jax.jit
def mutual_information(za: jax.Array, zb: jax.Array) -> jax.Array:
  """Matrix mutual information I(A; B) = H(K_A) + H(K_B) - H(K_A o K_B / tr(K_A o K_B)).

  Args:
    za: [N, D_A] and zb: [N, D_B] representations of the same N inputs (e.g. input
      embedding vs final state, or loop t vs loop t+1).

  Returns:
    scalar, nats.
  """
  a, b = _unit_rows(za), _unit_rows(zb)
  n = a.shape[0]
  if n <= a.shape[1] * b.shape[1]:
    joint = _entropy_of_psd((a @ a.T) * (b @ b.T) / n)  # Hadamard product; trace = n / n.
  else:
    # (K_A o K_B)_ij = (a_i kron b_i) . (a_j kron b_j): a D_A * D_B feature Gram instead.
    joint = _gram_entropy(jnp.einsum("ni,nj->nij", a, b).reshape(n, -1))
  return _gram_entropy(a) + _gram_entropy(b) - joint
