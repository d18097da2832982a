"""River-valley metrics and matrix entropy / MI on hand-built inputs with known answers."""

import jax.numpy as jnp
import numpy as np
import pytest

from looped_jax.analysis import landscape
from looped_jax.errors import ConfigError

# lambda_max = 10. eps@1e-3 = 0.01, eps@1e-2 = 0.1, tau = 0.1 * 10 = 1.
SPECTRUM = np.array([10.0, 5.0, 2.0, 0.5, 0.05, 0.005, 0.0, -0.002, -0.05, -0.5])


def test_metrics_on_hand_built_spectrum():
  m = landscape.river_valley_metrics(np.random.default_rng(0).permutation(SPECTRUM))
  assert all(isinstance(v, float) for v in m.values())
  assert m["num_eigenvalues"] == 10 and m["lambda_max"] == 10 and m["lambda_min"] == -0.5
  assert m["tau"] == pytest.approx(1.0)
  assert m["trace"] == pytest.approx(SPECTRUM.sum())

  # eps = 0.01: river {0.005, 0, -0.002}; valley {10, 5, 2, 0.5, 0.05}; negative {-0.05, -0.5}.
  assert m["eps@1e-03"] == pytest.approx(0.01)
  assert m["river_dim@1e-03"] == 3
  assert m["valley_dim@1e-03"] == 5
  assert m["valley_min@1e-03"] == pytest.approx(0.05)
  assert m["kappa_valley@1e-03"] == pytest.approx(200.0)
  assert m["low_valley_dim@1e-03"] == 2  # 0.5 and 0.05 are below tau = 1.
  assert m["low_valley_inv_sum@1e-03"] == pytest.approx(1 / 0.5 + 1 / 0.05)
  assert m["neg_dim@1e-03"] == 2 and m["neg_frac@1e-03"] == pytest.approx(0.2)

  # eps = 0.1: river {0.05, 0.005, 0, -0.002, -0.05}; valley {10, 5, 2, 0.5}; negative {-0.5}.
  assert m["river_dim@1e-02"] == 5
  assert m["valley_dim@1e-02"] == 4
  assert m["kappa_valley@1e-02"] == pytest.approx(20.0)
  assert m["low_valley_dim@1e-02"] == 1
  assert m["low_valley_inv_sum@1e-02"] == pytest.approx(2.0)
  assert m["neg_frac@1e-02"] == pytest.approx(0.1)

  p = np.abs(SPECTRUM) / np.abs(SPECTRUM).sum()
  p = p[p > 0]
  assert m["spectral_entropy"] == pytest.approx(-np.sum(p * np.log(p)))


def test_u_valley_vs_v_valley():
  """Uniform walls give kappa = 1 and entropy log N; spread walls give a large kappa and C."""
  u = landscape.river_valley_metrics([3.0] * 8 + [0.0] * 8, eps_fracs=(1e-2,))
  assert u["kappa_valley@1e-02"] == 1.0 and u["river_dim@1e-02"] == 8
  assert u["spectral_entropy"] == pytest.approx(np.log(8))
  assert u["low_valley_inv_sum@1e-02"] == 0.0
  v = landscape.river_valley_metrics([3.0, 1.0, 0.4, 0.1, 0.06] + [0.0] * 11, eps_fracs=(1e-2,))
  assert v["kappa_valley@1e-02"] == pytest.approx(50.0)
  assert v["low_valley_inv_sum@1e-02"] == pytest.approx(1 / 0.1 + 1 / 0.06)  # tau = 0.3.


def test_custom_tau_and_keys():
  m = landscape.river_valley_metrics(SPECTRUM, eps_fracs=(1e-2,), tau_frac=0.6)
  assert m["tau"] == pytest.approx(6.0)
  assert m["low_valley_inv_sum@1e-02"] == pytest.approx(1 / 5 + 1 / 2 + 1 / 0.5)
  assert landscape.eps_key("kappa_valley", 1e-2) == "kappa_valley@1e-02"
  assert not any(k.endswith("@1e-03") for k in m)


def test_non_positive_spectrum_has_no_valley():
  m = landscape.river_valley_metrics([-1.0, -0.5, -0.001], eps_fracs=(1e-2,))
  assert m["valley_dim@1e-02"] == 0 and np.isnan(m["kappa_valley@1e-02"])
  assert m["eps@1e-02"] == pytest.approx(0.01)  # scale = max |lambda| = 1.
  assert m["neg_dim@1e-02"] == 2 and m["river_dim@1e-02"] == 1
  assert np.isnan(landscape.spectral_entropy([0.0, 0.0]))
  with pytest.raises(ConfigError):
    landscape.river_valley_metrics([])
  with pytest.raises(ConfigError):
    landscape.river_valley_metrics([1.0, np.nan])


def direct_entropy(z):
  """Reference: the N x N definition, no Gram shortcut."""
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  k = z @ z.T
  return direct_entropy_of(k / np.trace(k))


def direct_entropy_of(k):
  s = np.linalg.eigvalsh(k)
  s = s[s > 1e-15]
  return -np.sum(s * np.log(s))


def test_matrix_entropy_known_values():
  assert float(landscape.matrix_entropy(jnp.tile(jnp.array([[1.0, 2.0, 3.0]]), (6, 1)))) == \
      pytest.approx(0.0, abs=1e-5)
  # Orthogonal rows of any norm: K = I / N, H = log N.
  z = jnp.diag(jnp.array([1.0, 2.0, 0.5, 3.0, 1.0])) @ jnp.eye(5, 8)
  assert float(landscape.matrix_entropy(z)) == pytest.approx(np.log(5), rel=1e-5)


@pytest.mark.parametrize("n, d", [(6, 10), (40, 4)])
def test_matrix_entropy_matches_direct_definition(n, d):
  z = np.random.default_rng(n).standard_normal((n, d))
  assert float(landscape.matrix_entropy(jnp.asarray(z))) == pytest.approx(direct_entropy(z),
                                                                           rel=1e-4)


def test_mutual_information_known_values_and_definition():
  eye = jnp.eye(5)
  assert float(landscape.mutual_information(eye, eye)) == pytest.approx(np.log(5), rel=1e-5)
  const = jnp.ones((5, 3))
  assert float(landscape.mutual_information(eye, const)) == pytest.approx(0.0, abs=1e-5)
  rng = np.random.default_rng(1)
  for n, da, db in [(8, 4, 3), (30, 2, 3)]:  # Hadamard path, then Kronecker-feature path.
    a, b = rng.standard_normal((n, da)), rng.standard_normal((n, db))
    ua = a / np.linalg.norm(a, axis=1, keepdims=True)
    ub = b / np.linalg.norm(b, axis=1, keepdims=True)
    hadamard = (ua @ ua.T) * (ub @ ub.T)
    expected = direct_entropy(a) + direct_entropy(b) - direct_entropy_of(
        hadamard / np.trace(hadamard))
    got = float(landscape.mutual_information(jnp.asarray(a), jnp.asarray(b)))
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert got >= -1e-5
