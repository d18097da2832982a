"""Hessian tracking in the train loop through its hook (spectra.jsonl, hessian/... metrics,
exact resume) and --mode=hessian (hessian.json), on one tiny run."""

import json
import os
import shutil

import pytest

from helpers import metric_records, tiny_config
from looped_jax import run_files
from looped_jax.train import experiment, trainer

pytestmark = pytest.mark.slow  # end-to-end: `pytest -m slow`


def test_tracking_resumes_exactly_and_mode_hessian_matches(tmp_path):
  config = tiny_config(model={"d_model": 8}, train={"num_steps": 20, "checkpoint_every": 10,
                                                    "keep_checkpoints": 3, "batch_size": 8},
                       eval={"every": 20, "batch_size": 8},
                       hessian={"every": 10, "subset": "layers/attn/out", "probe_batch_size": 8})
  config.task.length = 8
  full = str(tmp_path / "full")
  hooks = experiment.train_hooks(config)
  trainer.train(config, full, quiet=True, hooks=hooks)
  spectra = [json.loads(line) for line in open(os.path.join(full, "spectra.jsonl"))]
  assert [r["step"] for r in spectra] == [10, 20]
  assert all(r["loops"] == 3 and r["subset"] == "layers/attn/out" for r in spectra)
  assert len(spectra[0]["eigenvalues"]) == 8 * 8 + 8
  tracked = [r for r in metric_records(full) if "hessian/lambda_max" in r]
  assert [r["step"] for r in tracked] == [10, 20]
  assert tracked[-1]["hessian/lambda_max"] == pytest.approx(max(spectra[-1]["eigenvalues"]))
  assert "hessian/kappa_valley@1e-02" in tracked[-1]
  # Interrupted after step 10's checkpoint, with records of steps 11-20 already written.
  resumed = str(tmp_path / "resumed")
  shutil.copytree(full, resumed)
  shutil.rmtree(os.path.join(resumed, "checkpoints", "20"))
  trainer.train(config, resumed, quiet=True,
                hooks=experiment.train_hooks(config))  # fresh hooks, as a new process has
  assert metric_records(resumed) == metric_records(full)
  with open(os.path.join(full, "spectra.jsonl")) as a, open(os.path.join(resumed, "spectra.jsonl")) as b:
    assert a.read() == b.read()
  # --mode=hessian on the latest checkpoint reproduces the last tracked spectrum.
  result = experiment.run(config, full, "hessian")[""]
  with open(os.path.join(full, run_files.HESSIAN)) as f:
    written = json.load(f)
  assert written["step"] == 20 and written["eigenvalues"] == pytest.approx(
      spectra[-1]["eigenvalues"], abs=1e-9)
  assert written["metrics"] == pytest.approx(result["metrics"], nan_ok=True)
