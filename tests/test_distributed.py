"""Multi-process runs on 127.0.0.1 (jax.distributed, gloo): the same losses as one process,
and clean errors, not hangs, when a peer or the coordinator is gone.

Each subprocess simulates one CPU device (its own XLA_FLAGS, not the pytest process's 8).
"""

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from helpers import REPO, TINY, metric_records
from looped_jax.train import experiment

pytestmark = pytest.mark.slow  # end-to-end: `pytest -m slow`

QUICKSTART = os.path.join(REPO, "configs", "quickstart.py")
SHORT = {"train": {"num_steps": 4, "batch_size": 16, "log_every": 2, "checkpoint_every": 2},
         "eval": {"every": 4, "batch_size": 32, "num_batches": 1}}


def _env(devices: int = 1) -> dict:
  return dict(os.environ, JAX_PLATFORMS="cpu",
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _overrides(sections: dict) -> list[str]:
  return [f"--config.{s}.{k}={v}" for s, values in sections.items() for k, v in values.items()]


def _process(i: int, n: int, port: int, workdir: str, *args: str, log=None) -> subprocess.Popen:
  return subprocess.Popen(
      [sys.executable, "-u", "-m", "looped_jax.main", f"--workdir={workdir}", "--distributed",
       f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={n}", f"--process_id={i}",
       "--heartbeat_timeout=10", "--init_timeout=30", *args],  # later flags win
      cwd=REPO, env=_env(), text=True, stdout=log or subprocess.DEVNULL,
      stderr=subprocess.PIPE)


def _launch_two(workdir: str, *extra: str) -> subprocess.CompletedProcess:
  """The shortened quickstart on 2 processes through the launch script (later flags win)."""
  done = subprocess.run(
      ["bash", os.path.join(REPO, "launch", "local_multiprocess.sh"), "2",
       f"--config={QUICKSTART}", f"--workdir={workdir}", *_overrides(SHORT), *extra],
      cwd=REPO, env=_env() | {"PYTHON": sys.executable}, capture_output=True, text=True,
      timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return done


@pytest.mark.slow
def test_two_processes_match_one_process_with_two_devices(tmp_path):
  # A data axis of 2 spanning both processes.
  multi = str(tmp_path / "multi")
  done = _launch_two(multi)
  assert "[0] [looped] step 4/4" in done.stdout and "[1] [looped]" not in done.stdout
  # The same config in this process on 2 of its 8 simulated devices.
  spec = importlib.util.spec_from_file_location("quickstart", QUICKSTART)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for section, values in SHORT.items():
    config[section].update(values)
  config.mesh.data = 2
  single = str(tmp_path / "single")
  experiment.run(config, single)
  for variant in ("single", "looped"):
    got, want = (metric_records(os.path.join(d, variant)) for d in (multi, single))
    assert [r["step"] for r in got] == [r["step"] for r in want] == [2, 4, 4]
    for g, w in zip(got, want):
      assert g.keys() == w.keys()
      assert [g[k] for k in w] == pytest.approx([w[k] for k in w], rel=1e-5)
    assert sorted(os.listdir(os.path.join(multi, variant, "checkpoints"))) == ["2", "4"]
  assert os.path.exists(os.path.join(multi, "comparison.png"))
  # Multi-process orbax restore: without the step-4 checkpoints both variants resume at 2
  # and end with the same records.
  before = {v: metric_records(os.path.join(multi, v)) for v in ("single", "looped")}
  for variant in before:
    shutil.rmtree(os.path.join(multi, variant, "checkpoints", "4"))
  done = _launch_two(multi)
  assert done.stdout.count("resumed from the checkpoint at step 2") == 2
  assert {v: metric_records(os.path.join(multi, v)) for v in before} == before


@pytest.mark.slow
def test_two_processes_agree_to_stop_at_the_time_budget(tmp_path):
  """The budget check is a collective (process 0's clock decides): both processes stop at the
  first log step, finish the run's eval and checkpoint, and exit 0."""
  done = _launch_two(str(tmp_path), "--config.train.num_steps=40",
                     "--config.train.max_train_seconds=1e-6")
  assert "[0] [looped] step 2/40" in done.stdout and "step 4/40" not in done.stdout
  for variant in ("single", "looped"):
    summary = json.loads((tmp_path / variant / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["stopped_by"] == "max_train_seconds"
    assert sorted(os.listdir(tmp_path / variant / "checkpoints")) == ["2"]


@pytest.mark.slow
def test_killed_peer_stops_the_other_within_60_seconds(tmp_path):
  port, workdir = _free_port(), str(tmp_path / "run")
  args = [f"--config={TINY}", "--config.train.num_steps=100000", "--config.train.log_every=5",
          "--config.eval.every=100000", "--config.train.checkpoint_every=100000"]
  log = open(tmp_path / "stdout0", "w")
  survivor, victim = (_process(0, 2, port, workdir, *args, log=log),
                      _process(1, 2, port, workdir, *args))
  try:
    deadline = time.time() + 300
    while "step 10/" not in (tmp_path / "stdout0").read_text():  # both are training
      assert survivor.poll() is None and time.time() < deadline, "training did not start"
      time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    killed_at = time.time()
    _, stderr = survivor.communicate(timeout=90)
    elapsed = time.time() - killed_at
  finally:
    for proc in (survivor, victim):
      if proc.poll() is None:
        proc.kill()
  print(f"survivor exited with status {survivor.returncode} {elapsed:.2f} s after the kill")
  assert elapsed < 60, elapsed
  assert survivor.returncode == 3, stderr[-2000:]
  errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "a peer process died" in errors[0], stderr[-2000:]


@pytest.mark.slow
def test_a_signal_to_one_process_stops_both_at_the_same_step_with_a_checkpoint(tmp_path):
  """Preemption may reach only one process: they agree at the next log step (a collective),
  both save that step and exit with the signal's status and one line."""
  port, workdir = _free_port(), str(tmp_path / "run")
  args = [f"--config={TINY}", "--config.train.num_steps=100000", "--config.train.log_every=5",
          "--config.eval.every=100000", "--config.train.checkpoint_every=100000"]
  log = open(tmp_path / "stdout0", "w")
  procs = (_process(0, 2, port, workdir, *args, log=log), _process(1, 2, port, workdir, *args))
  try:
    deadline = time.time() + 300
    while "step 10/" not in (tmp_path / "stdout0").read_text():  # both are training
      assert all(p.poll() is None for p in procs) and time.time() < deadline, "no training"
      time.sleep(0.2)
    procs[1].send_signal(signal.SIGTERM)
    stderrs = [p.communicate(timeout=120)[1] for p in procs]
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  lines = [[ln for ln in err.splitlines() if ln.startswith("error: ")] for err in stderrs]
  assert [p.returncode for p in procs] == [143, 143], stderrs
  assert all(len(ls) == 1 and ls[0].startswith("error: stopped by SIGTERM at step ")
             for ls in lines), stderrs
  steps = {int(ls[0].split("at step ")[1].split(",")[0]) for ls in lines}
  assert len(steps) == 1 and steps.pop() % 5 == 0  # the same log step in both
  saved = [d for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()]
  assert saved == [lines[0][0].split("at step ")[1].split(",")[0]]


def test_unreachable_coordinator_is_a_clean_error(tmp_path):
  started = time.time()
  proc = _process(1, 2, _free_port(), str(tmp_path / "run"), f"--config={TINY}",
                  "--init_timeout=2")
  _, stderr = proc.communicate(timeout=60)
  assert proc.returncode == 3 and time.time() - started < 30
  assert stderr.strip().splitlines() == [line for line in stderr.strip().splitlines()
                                         if line.startswith("error: the coordinator")]
  assert not (tmp_path / "run").exists()
