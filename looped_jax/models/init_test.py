"""models/init.py: the initializers of each family follow their formulas."""

import math

import jax
import numpy as np
import pytest

from looped_jax import config as config_lib
from looped_jax.errors import ConfigError
from looped_jax.models import init


def _draw(initializer, shape=(256, 512)) -> np.ndarray:
  return np.asarray(initializer(jax.random.key(0), shape))


def test_torch_uniform_is_pytorch_linear_default():
  x = _draw(init.torch_uniform(20))
  bound = 1 / math.sqrt(20)
  assert np.abs(x).max() <= bound and np.abs(x).max() > 0.999 * bound
  assert x.std() == pytest.approx(bound / math.sqrt(3), rel=0.01)


@pytest.mark.parametrize("num_layers", [1, 12])
def test_schemes_agree_inside_the_backbone_and_differ_at_read_in_and_read_out(num_layers):
  gpt2, reference = init.ParamInit("gpt2", num_layers), init.ParamInit("reference_yang", num_layers)
  residual_std = 0.02 / math.sqrt(2 * num_layers)
  for scheme in (gpt2, reference):
    assert _draw(scheme.residual().kernel).std() == pytest.approx(residual_std, rel=0.01)
    assert _draw(scheme.hidden().kernel).std() == pytest.approx(0.02, rel=0.01)
    assert not _draw(scheme.hidden().bias, (512,)).any()
  assert _draw(gpt2.read_in(20).kernel).std() == pytest.approx(0.02, rel=0.01)
  assert not _draw(gpt2.read_out(64).bias, (1,)).any()
  assert np.abs(_draw(reference.read_out(64).bias, (4096,))).max() == pytest.approx(1 / 8, rel=0.01)
  assert _draw(reference.token_embedding(64)).std() == pytest.approx(1.0, rel=0.01)


def test_an_unknown_scheme_is_refused_with_the_choices():
  with pytest.raises(ValueError, match="gpt2, reference_yang"):
    init.ParamInit("pytorch")
  config = config_lib.base_config()
  config.model.init = "pytorch"
  with pytest.raises(ConfigError, match="model.init='pytorch' is not allowed"):
    config_lib.validate(config)
  config.model.init, config.model.layer_norm_eps = "gpt2", 0.0
  with pytest.raises(ConfigError, match="model.layer_norm_eps=0.0"):
    config_lib.validate(config)


def test_reference_trm_is_truncated_lecun_normal_with_the_embedding_scale():
  trm = init.ParamInit("reference_trm", 2)
  for fan_in, linear in ((256, trm.hidden()), (256, trm.residual()), (256, trm.read_out(256)),
                         (256, trm.read_in(256))):
    x = _draw(linear.kernel)  # [fan_in, fan_out]
    std = 1 / math.sqrt(fan_in)
    assert x.std() == pytest.approx(std, rel=0.01)  # the truncation is corrected for
    assert np.abs(x).max() <= 2 * std / 0.8796 + 1e-6  # cut at 2 sigma of the underlying normal
    assert not _draw(linear.bias, (64,)).any()
  embedding = _draw(trm.token_embedding(64))
  assert embedding.std() == pytest.approx(1 / 8, rel=0.01)
  assert trm.embedding_multiplier(64) == 8.0  # unit-scale embeddings in the forward pass
  assert init.ParamInit("gpt2").embedding_multiplier(64) == 1.0
  halt = init.ParamInit("gpt2").halt()
  assert not _draw(halt.kernel, (64, 2)).any()
  assert (_draw(halt.bias, (2,)) == init.HALT_BIAS).all()
