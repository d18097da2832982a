"""Yang et al.'s models as the reference code builds them: initialisation and numerics.

The init test checks every parameter of the paper-sized (`:full`) looped and standard models
against the formula of the `reference_yang` scheme (models/init.py), not stored numbers. The
PyTorch test (optional `torch` extra) copies our weights into benchmarks/yang_torch.py's port of
the reference and compares per-loop predictions and loop-window gradients.
"""

import math
import os
import sys

import jax
import numpy as np
import pytest

from helpers import REPO, repo_config
from looped_jax import models, tasks
from looped_jax.train import experiment, step

pytestmark = pytest.mark.slow  # end-to-end: `pytest -m slow`

GPT2_STD = 0.02


def _yang_runs(arg: str) -> dict:
  return experiment.expand(repo_config("yang_icl", arg))


def _expected(path: str, d_in: int, d_model: int, num_layers: int) -> tuple[str, float]:
  """The reference's init of one parameter: ("uniform", bound) | ("normal", std) | ("const", c)."""
  if path.startswith("embedding/"):  # nn.Linear(d_in, D) default: weight and bias
    return "uniform", 1 / math.sqrt(d_in)
  if path.startswith("head/"):  # nn.Linear(D, 1) default
    return "uniform", 1 / math.sqrt(d_model)
  if path == "positions":
    return "normal", GPT2_STD
  if path.endswith(("/scale",)):
    return "const", 1.0
  if path.endswith("/bias"):
    return "const", 0.0
  if path.endswith(("attn/out/kernel", "mlp/down/kernel")):  # GPT-2's scaled residual init
    return "normal", GPT2_STD / math.sqrt(2 * num_layers)
  if path.endswith(("attn/qkv/kernel", "mlp/up/kernel")):
    return "normal", GPT2_STD
  raise AssertionError(f"no expected init for parameter {path}")


def _check_distribution(path: str, x: np.ndarray, kind: str, value: float) -> None:
  x = x.astype(np.float64).ravel()
  n = x.size
  if kind == "const":
    np.testing.assert_array_equal(x, value, err_msg=path)
    return
  mean, std = x.mean(), x.std()
  expected_std = value if kind == "normal" else value / math.sqrt(3)
  # 5-sigma bounds of the sample mean and std (std of s/sigma: ~sqrt(kurtosis - 1) / (2 sqrt n)).
  assert abs(mean) < 5 * expected_std / math.sqrt(n), (path, mean)
  assert abs(std / expected_std - 1) < 5 * 0.71 / math.sqrt(n), (path, std, expected_std)
  excess_kurtosis = np.mean(((x - mean) / std) ** 4) - 3 if n >= 2000 else None
  if kind == "uniform":
    assert np.all(np.abs(x) <= value), (path, np.abs(x).max(), value)
    if n >= 64:  # the extremes come within 20/n of the bounds (probability 1 - 2e-9)
      assert x.max() > value * (1 - 20 / n) and x.min() < -value * (1 - 20 / n), path
    if n >= 2000:  # uniform: excess kurtosis -1.2
      assert abs(excess_kurtosis + 1.2) < 0.2, (path, excess_kurtosis)
  elif n >= 2000:  # normal: 0
    assert abs(excess_kurtosis) < 0.25, (path, excess_kurtosis)


@pytest.mark.parametrize("variant", ["looped", "standard"])
def test_full_models_start_from_the_reference_init(variant):
  config = _yang_runs("linear_regression:full:looped:standard")[variant]
  assert config.model.init == "reference_yang" and config.model.layer_norm_eps == 1e-5
  task = tasks.get(config.task)
  _, params = models.build(config.model, task, seed=0)
  k = config.model.num_layers
  assert k == {"looped": 1, "standard": 12}[variant]
  leaves = jax.tree_util.tree_leaves_with_path(params)
  assert len(leaves) == 19  # every parameter of the model has a formula below
  for key_path, x in leaves:
    path = "/".join(str(getattr(p, "key", p)) for p in key_path)
    kind, value = _expected(path, task.vocab_size, config.model.d_model, k)
    _check_distribution(path, np.asarray(x), kind, value)


def test_gpt2_scheme_differs_from_the_reference_only_in_read_in_and_read_out():
  config = _yang_runs("linear_regression:small:looped")["looped"]
  task = tasks.get(config.task)
  _, reference = models.build(config.model, task, seed=3)
  config.model.init = "gpt2"
  _, gpt2 = models.build(config.model, task, seed=3)
  for name in reference:
    same = jax.tree.all(jax.tree.map(np.array_equal, reference[name], gpt2[name]))
    assert same == (name not in ("embedding", "head")), name
  assert np.std(gpt2["embedding"]["kernel"]) == pytest.approx(GPT2_STD, rel=0.15)
  assert np.all(gpt2["embedding"]["bias"] == 0) and np.all(gpt2["head"]["bias"] == 0)


# -- the function, against a PyTorch port of the reference (optional `torch` extra) ----------


def _torch_port():
  torch = pytest.importorskip("torch")
  sys.path.insert(0, os.path.join(REPO, "benchmarks"))
  import yang_torch  # pylint: disable=import-outside-toplevel
  return torch, yang_torch


def _relative(a: np.ndarray, b: np.ndarray) -> float:
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("variant", ["looped", "standard"])
def test_same_function_and_gradients_as_a_pytorch_port_of_the_reference(variant):
  torch, yang_torch = _torch_port()
  torch.set_num_threads(2)
  config = _yang_runs("linear_regression:full:looped:standard")[variant]
  task = tasks.get(config.task)
  graphdef, params = models.build(config.model, task, seed=1)
  m = config.model
  port = yang_torch.LoopedModel(task.vocab_size, m.d_model, m.num_heads, m.num_layers,
                                task.seq_len)
  yang_torch.load_jax_params(port, jax.device_get(params))
  batch = task.sample(jax.random.key(5), 4, step=10**6)  # past the curricula: every dim, point
  inputs, ys = np.array(batch["inputs"]), np.array(batch["ys"])  # writable: torch wraps them
  looped = variant == "looped"
  loops, window = (m.num_loops, config.train.grad_loops) if looped else (1, 1)

  # Per-loop predictions at the x positions, every loop: [L, B, n].
  ours = models.apply(graphdef, params, batch["inputs"], loops, per_loop=True)[..., 0::2, 0]
  with torch.no_grad():
    theirs = port(torch.from_numpy(inputs), loops, loops, looped)[..., 0::2].numpy()
  errors = [_relative(np.asarray(a), b) for a, b in zip(ours, theirs)]
  # float32 rounding, ~3e-7 at the looped :full shapes; flax's LayerNorm eps 1e-6 instead of the
  # reference's 1e-5 gives 1.5e-5, so this bound checks the eps too.
  assert max(errors) < 3e-6, errors

  # Gradients of the loop-window loss (mean over the last T loops, prompts and x positions).
  loss_on = "window" if looped else "last"
  our_loss, our_grads = jax.value_and_grad(step.loss_fn)(
      params, batch, graphdef=graphdef, task=task, loops=loops, grad_loops=window if looped
      else 0, loss_on=loss_on)
  port.zero_grad()
  preds = port(torch.from_numpy(inputs), loops, window, looped)[..., 0::2]
  their_loss = ((preds - torch.from_numpy(ys)) ** 2).mean()
  their_loss.backward()
  assert float(our_loss) == pytest.approx(their_loss.item(), rel=1e-5)
  theirs = {"embedding/kernel": port.read_in.weight.grad.T,
            "head/kernel": port.read_out.weight.grad.T,
            "positions": port.backbone.wpe.grad,
            "layers/attn/qkv/kernel": torch.stack([b.c_attn.weight.grad.T
                                                   for b in port.backbone.blocks]),
            "layers/mlp/down/kernel": torch.stack([b.mlp_proj.weight.grad.T
                                                   for b in port.backbone.blocks]),
            "layers/ln1/scale": torch.stack([b.ln_1.weight.grad for b in port.backbone.blocks])}
  grad_errors = {}
  for path, grad in theirs.items():
    ours_g = our_grads
    for key in path.split("/"):
      ours_g = ours_g[key]
    grad_errors[path] = _relative(np.asarray(ours_g), grad.numpy())
  print(f"{variant}: predictions {max(errors):.1e}, gradients {max(grad_errors.values()):.1e} "
        "(largest relative error)")  # pytest -s shows it
  # float32 rounding, ~6e-7 measured at these shapes
  assert max(grad_errors.values()) < 1e-5, grad_errors
