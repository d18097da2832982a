"""XLA options: parsing, XLA's own check, and that they reach the compiled train step."""

import jax
import numpy as np
import pytest

from looped_jax.config import base_config
from looped_jax.errors import ConfigError
from looped_jax.train import compiler
from looped_jax.train import build
from looped_jax.train import workdir as workdir_lib

YNN_OFF = "xla_cpu_experimental_ynn_fusion_type="


def test_parse():
  assert compiler.parse("auto", "cpu") == compiler.AUTO["cpu"]
  assert compiler.parse("auto", "tpu") == {}
  assert compiler.parse("", "cpu") == {}
  assert compiler.parse(" xla_a=1 ; xla_b= ;", "gpu") == {"xla_a": "1", "xla_b": ""}
  for bad in ("xla_a", "a=1", "xla_a=1;oops"):
    with pytest.raises(ConfigError, match="FLAG=VALUE"):
      compiler.parse(bad, "cpu")


@pytest.mark.parametrize("options, named", [({"xla_no_such_flag": "1"}, "xla_no_such_flag"),
                                            ({"xla_cpu_experimental_ynn_fusion_type": "x"},
                                             "not a valid enum value")])
def test_xla_refuses_unknown_flags_and_values(options, named):
  with pytest.raises(ConfigError, match=named):
    compiler.check(options)


def _experiment(xla_options: str) -> build.Experiment:
  c = base_config()
  c.task = {"name": "prefix_sums", "n_bits": 8}
  c.model.update(d_model=16, num_heads=2, num_loops=2)
  c.train.batch_size = 8
  c.xla_options = xla_options
  return build.Experiment.build(c, devices=jax.devices()[:1])


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the flag is XLA:CPU's")
@pytest.mark.slow
def test_options_reach_the_compiled_step_and_keep_the_losses():
  hlo, losses = {}, {}
  for spec in ("", YNN_OFF):
    exp = _experiment(spec)
    state, batch = exp.initial_state(), exp.sampler(8)(jax.random.key(0), 0)
    step = exp.train_step(2)
    hlo[spec] = step.lower(state, batch).compile().as_text()
    losses[spec] = []
    for _ in range(3):
      state, metrics = step(state, batch)
      losses[spec].append(float(metrics["loss"]))
  assert "ynn" in hlo[""] and "ynn" not in hlo[YNN_OFF]  # XLA's default uses YNNPACK fusions
  np.testing.assert_allclose(losses[YNN_OFF], losses[""], rtol=1e-4)


def test_a_run_resumes_under_other_xla_options(tmp_path):
  c = base_config()
  c.xla_options = ""
  workdir_lib.prepare(str(tmp_path), c, overwrite=False)
  c.xla_options = YNN_OFF
  workdir_lib.prepare(str(tmp_path), c, overwrite=False)  # same run: accepted
  c.seed += 1
  with pytest.raises(ConfigError, match="different config"):
    workdir_lib.prepare(str(tmp_path), c, overwrite=False)
