"""--mode=eval on an in-context regression config: the ICL report of every variant."""

import json
import os

import numpy as np
import pytest

from helpers import REPO, cli

pytestmark = pytest.mark.slow  # end-to-end: `pytest -m slow`

TINY_ICL = os.path.join(REPO, "tests", "tiny_icl_config.py")


def test_eval_writes_error_vs_k_and_vs_loops_with_baselines(tmp_path):
  workdir = str(tmp_path / "run")
  trained = cli(f"--config={TINY_ICL}", f"--workdir={workdir}")
  assert trained.returncode == 0, trained.stderr
  done = cli(f"--config={TINY_ICL}", f"--workdir={workdir}", "--mode=eval")
  assert done.returncode == 0, done.stderr
  looped, standard = (os.path.join(workdir, v) for v in ("looped", "standard"))
  for name in ("icl_report.json", "error_vs_k.png", "error_vs_k_skewed.png", "eval.json"):
    assert os.path.getsize(os.path.join(looped, name)) > 0
    assert os.path.getsize(os.path.join(standard, name)) > 0
  assert os.path.getsize(os.path.join(looped, "error_vs_loops.png")) > 0
  assert not os.path.exists(os.path.join(standard, "error_vs_loops.png"))  # one loop: no sweep
  for name in ("error_vs_k.png", "error_vs_loops.png"):  # the variants side by side
    assert os.path.getsize(os.path.join(workdir, name)) > 0

  with open(os.path.join(looped, "icl_report.json")) as f:
    report = json.load(f)
  d, k = 4, report["k_at_2d"]
  assert k == 2 * d and report["settings"] == {"standard": {}, "skewed": {"x_covariance": "skewed"}}
  std = report["error_vs_k"]["standard"]
  base = {n: np.array(c["mean"], float) for n, c in std["baselines"].items()}
  assert set(base) == {"zero", "least_squares", "averaging"}
  assert np.all(base["least_squares"][d + 1:] < 1e-6)  # exact past d
  assert base["least_squares"][0] == base["zero"][0]  # no examples: least squares predicts 0
  assert np.all(np.abs(base["zero"] - 1) < 0.5)
  model = np.array(std["model"]["mean"], float)
  assert np.all(np.isfinite(model)) and std["model"]["count"] == [64] * 9
  low, high = (np.array(std["model"][b], float) for b in ("bootstrap_low", "bootstrap_high"))
  assert np.all(low <= model + 1e-12) and np.all(model <= high + 1e-12)
  # The model's distance to least squares is its error where least squares is exact.
  np.testing.assert_allclose(std["model_to_least_squares"]["mean"][d + 1:], model[d + 1:],
                             rtol=1e-4, atol=1e-9)

  sweep = report["error_vs_loops"]
  assert sweep["loops"][0] == 1 and sweep["loops"][-1] == 30 == report["max_loops"]
  at_trained = np.array(sweep["curves"]["3"]["mean"], float)
  np.testing.assert_allclose(at_trained, model, rtol=1e-4, atol=1e-7)  # same prompts, same loops

  with open(os.path.join(looped, "eval.json")) as f:
    ev = json.load(f)
  assert ev[f"icl/model@k={k}"] == std["model"]["mean"][k]
  assert ev[f"icl/least_squares@k={k}"] < 1e-6
  assert np.isfinite(ev[f"icl/model@k={k}@loops=30"])
  with open(os.path.join(standard, "icl_report.json")) as f:
    assert json.load(f)["error_vs_loops"] is None
