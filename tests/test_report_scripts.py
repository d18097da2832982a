"""docs/scripts: the Gong horizon and SHIFT reports on made-up runs whose verdicts are known."""

import importlib.util
import json
import os

import pytest

from helpers import REPO

spec = importlib.util.spec_from_file_location(
    "gong_horizon_report", os.path.join(REPO, "docs", "scripts", "gong_horizon_report.py"))
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)

STEPS = 250  # one step per epoch


def fake_run(root, name, complex_at, entropy_at, valley, seconds_per_step=1.0):
  """A finished run: eval every 10 steps, a spectrum every 50."""
  folder = root / name
  folder.mkdir()
  (folder / "config.json").write_text(json.dumps({"train": {"num_steps": STEPS}}))
  (folder / "summary.json").write_text("{}")
  records = []
  for step in range(10, STEPS + 1, 10):
    records.append({"step": step, "loss": 1.0, "perf/train_seconds": seconds_per_step * step})
    records.append({"step": step, "eval/accuracy/complex": complex_at(step),
                    "eval/accuracy/simple": 0.9, "eval/loss": 1.0})
    if step % 50 == 0:
      records.append({"step": step, "hessian/spectral_entropy": entropy_at(step),
                      "hessian/lambda_max": 10.0, "hessian/river_dim@1e-02": 100.0,
                      "hessian/low_valley_dim@1e-02": valley,
                      "hessian/low_valley_inv_sum@1e-02": valley / 2})
  (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def paper_like(root):
  """Looped rises late on complex samples with an entropy dip; Single stays flat; SHIFT
  gets there on cheap single-loop steps."""
  dip = lambda s: {50: 3.0, 100: 2.0, 150: 2.6, 200: 2.62, 250: 2.63}[s]
  for k in (0, 1):
    fake_run(root, f"looped_s{k}", lambda s: 0.40 + (0.10 * (s - 150) / 100 if s > 150 else 0),
             dip, valley=50)
    fake_run(root, f"single_s{k}", lambda s: 0.40, lambda s: 3.0 - s / 1000, valley=20)
    fake_run(root, f"shift_s{k}", lambda s: 0.40 + (0.10 * (s - 100) / 100 if s > 100 else 0),
             dip, valley=50, seconds_per_step=0.4)


def test_paper_like_runs_meet_every_threshold(tmp_path, capsys):
  paper_like(tmp_path)
  assert script.main([str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert out.count("**met**") == 5, out
  numbers = json.loads(out.strip().splitlines()[-1])
  assert numbers["gap"] == pytest.approx([0.10, 0.10])
  assert numbers["rise"]["looped"] == pytest.approx([0.10, 0.10])
  # SHIFT reaches 0.49 at step 190, 0.4 s a step, against Looped's 250 s
  assert numbers["shift"]["time_ratio"] == pytest.approx([190 * 0.4 / 250] * 2)


def test_flat_looped_runs_meet_none_of_the_sample_and_phase_thresholds(tmp_path, capsys):
  for k in (0, 1):
    for model in ("looped", "single", "shift"):
      fake_run(tmp_path, f"{model}_s{k}", lambda s: 0.40, lambda s: 3.0, valley=20)
  assert script.main([str(tmp_path)]) == 0
  out = capsys.readouterr().out
  for item in ("1.", "2.", "3.", "4."):
    line = next(ln for ln in out.splitlines() if ln.startswith(item))
    assert line.endswith("**not met**"), line


def test_entropy_phases():
  assert script.has_phases([3.0, 2.0, 2.6, 2.62, 2.63])
  assert not script.has_phases([3.0, 2.0, 2.6, 2.9, 2.63])  # not stable at the end
  assert not script.has_phases([2.0, 2.6, 2.62, 2.63])  # no fall first
  assert not script.falls_and_rises([3.0, 2.9, 2.8])


def test_shift_report_reads_seeded_looped_and_shift_runs(tmp_path, capsys):
  spec = importlib.util.spec_from_file_location(
      "shift_report", os.path.join(REPO, "docs", "scripts", "shift_report.py"))
  shift_report = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(shift_report)
  paper_like(tmp_path)
  for k in (0, 1):
    for model, acc in (("looped", 0.6), ("shift", 0.55)):
      (tmp_path / f"{model}_s{k}" / "loop_sweep.json").write_text(json.dumps(
          {"settings": {"long": {"at_train_loops": {"token_accuracy": acc}}}}))
  assert shift_report.main([str(tmp_path), "--metric=eval/accuracy/complex",
                            "--length_setting=long"]) == 0
  out = capsys.readouterr().out
  assert "long token accuracy, SHIFT - looped: -5 [-5, -5] points" in out
  assert "**not met**" in out  # 5 points behind at twice the length
  rows = json.loads(out.strip().splitlines()[-1])
  assert [r["time_ratio"] for r in rows] == pytest.approx([190 * 0.4 / 250] * 2)


def _script(name: str):
  """docs/scripts/NAME.py as a module (docs/scripts is not a package)."""
  path = os.path.join(REPO, "docs", "scripts", f"{name}.py")
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def test_trm_report_tables_means_over_seeds_and_the_copy_floor(tmp_path, capsys):
  config = {"task": {"name": "parity", "n_bits": 4}, "eval_seed": 2}
  for name, whole in (("trm_s0", 0.2), ("trm_s1", 0.4), ("looped_s0", 0.1), ("looped_s1", 0.1),
                      ("trm_no_ema_s0", 0.05)):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    records = [{"step": 50, "loss": 1.0, "perf/train_seconds": 300.0},
               {"step": 50, "eval/sequence_accuracy": whole, "eval/accuracy": 0.9,
                "eval@1/sequence_accuracy": whole / 2, "eval/halting/sequence_accuracy": whole,
                "eval/halting/steps": 3.0}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
  out_file = tmp_path / "table.jsonl"
  assert _script("trm_report").main([str(tmp_path), f"--jsonl={out_file}"]) == 0
  out = capsys.readouterr().out
  assert "| trm | 2 | 30.0 [20.0, 40.0] | 90.0 [90.0, 90.0] |" in out
  assert "| looped | 2 | 10.0 [10.0, 10.0] |" in out
  assert "eval@1 15.0 [10.0, 20.0]" in out and "steps used 3.0 [3.0, 3.0]" in out
  assert "| trm_no_ema_s0 | 5.0 |" in out
  # parity: the input never equals a target bit at the answer slot ("=" is token 2)
  assert "copy-the-input cell accuracy: 0.0%" in out
  assert len(out_file.read_text().splitlines()) == 5


def test_depth_report_tables_padded_runs_by_regime_and_length(tmp_path, capsys):
  report = _script("depth_report")
  seeds = []
  for seed in range(2):
    root = tmp_path / f"pwp_s{seed}"
    for regime, loops, pad in (("loops", 3, 0), ("log_pad", 5, 1)):
      for n in (8, 32):
        run = root / f"{regime}_n{n}"
        run.mkdir(parents=True)
        accuracy = 1.0 if regime == "log_pad" or n == 8 else 0.2 + 0.1 * seed
        (run / "summary.json").write_text(json.dumps({"eval/sequence_accuracy": accuracy}))
        (run / "config.json").write_text(json.dumps(
            {"model": {"num_layers": 1, "num_loops": loops}, "task": {"pad_factor": pad}}))
    seeds.append(str(root))
  assert report.main(["padded", *seeds, f"--out-dir={tmp_path / 'docs'}"]) == 0
  table = capsys.readouterr().out
  assert "| loops | 1.000 (1.000-1.000) [k=1 L=3 p=0] | 0.250 (0.200-0.300) [k=1 L=3 p=0] |" in table
  assert "[k=1 L=5 p=32]" in table
  rows = [json.loads(line) for line in open(tmp_path / "docs" / "data" / "padded_word_problem.jsonl")]
  assert len(rows) == 8 and (tmp_path / "docs" / "img" / "padded_word_problem.png").exists()
  with pytest.raises(SystemExit):
    report.main(["padded", str(tmp_path / "missing")])
