"""Tests of the run plots: the panels chosen and the files written."""

import json
import os

import matplotlib.pyplot as plt
import numpy as np

from looped_jax import jsonl, run_files
from looped_jax.analysis import report


def _write_jsonl(path, records):
  with open(path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)


def _fake_run(directory, scale, seed):
  os.makedirs(directory)
  rng = np.random.default_rng(seed)
  metrics, spectra = [], []
  for step in (100, 200, 300):
    eigs = np.sort(scale * rng.standard_normal(40) ** 3)
    metrics.append({"step": step, "loss": 3.0 / step, "eval/accuracy/simple": step / 400,
                    "eval/accuracy/complex": step / 900, "eval/accuracy": step / 600,
                    "eval/sequence_accuracy": 0.0,  # constant: no panel
                    "hessian/lambda_max": float(eigs[-1]), "hessian/spectral_entropy": 2.0,
                    **{f"hessian/{m}@1e-02": float(step) for m in
                       ("kappa_valley", "river_dim", "low_valley_inv_sum", "low_valley_dim")}})
    spectra.append({"step": step, "loops": 3, "eigenvalues": eigs.tolist()})
  _write_jsonl(os.path.join(directory, run_files.METRICS), metrics)
  _write_jsonl(os.path.join(directory, run_files.SPECTRA), spectra)


def test_comparison_panels_skip_constant_and_overall_metrics(tmp_path):
  dirs = {"single": str(tmp_path / "single"), "looped": str(tmp_path / "looped")}
  _fake_run(dirs["single"], 1.0, 0)
  _fake_run(dirs["looped"], 5.0, 1)
  records = {n: jsonl.read(os.path.join(d, run_files.METRICS)) for n, d in dirs.items()}
  assert report._varies(records, "eval/accuracy/complex")
  assert not report._varies(records, "eval/sequence_accuracy")
  assert not report._varies(records, "eval/never_logged")
  path = report.plot_comparison(dirs, str(tmp_path / "comparison.png"))
  assert os.path.getsize(path) > 10_000


def test_spectra_plot_written_for_runs_with_spectra(tmp_path):
  dirs = {"single": str(tmp_path / "single"), "looped": str(tmp_path / "looped"),
          "none": str(tmp_path / "none")}
  _fake_run(dirs["single"], 1.0, 0)
  _fake_run(dirs["looped"], 5.0, 1)
  os.makedirs(dirs["none"])
  assert report.has_spectra(dirs)
  assert not report.has_spectra({"none": dirs["none"]})
  path = report.plot_spectra(dirs, str(tmp_path / "spectra.png"))
  assert os.path.getsize(path) > 10_000


def test_runs_named_by_seed_are_drawn_as_bands(tmp_path):
  names = ["single_s0", "single_s1", "looped_s0", "looped_s1", "looped_s2"]
  dirs = {n: str(tmp_path / n) for n in names}
  for i, n in enumerate(names):
    _fake_run(dirs[n], 1.0 + i, i)
  assert report.plot_comparison(dirs, str(tmp_path / "comparison.png"))
  assert report.plot_spectra(dirs, str(tmp_path / "spectra.png"))
  _, ax = plt.subplots()
  records = {n: jsonl.read(os.path.join(d, run_files.METRICS)) for n, d in dirs.items()}
  report.plot_runs(ax, records, "hessian/lambda_max")
  assert [line.get_label() for line in ax.get_lines()] == ["single (2 seeds)", "looped (3 seeds)"]
  assert len(ax.collections) == 2  # one shaded min-max range per model
  plt.close("all")
