"""The cluster launch scripts, with fake `srun` / `gcloud` / python that record their calls
(the real multi-process path is tests/test_distributed.py)."""

import os
import stat
import subprocess

from helpers import REPO

LAUNCH = os.path.join(REPO, "launch")


def _fake(bin_dir, name: str, log) -> None:
  """An executable `name` that appends its arguments, one per line, and a separator to log."""
  path = bin_dir / name
  path.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" >> "{log}"\necho --- >> "{log}"\n')
  path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _calls(log) -> list[list[str]]:
  return [c.strip("\n").split("\n") for c in log.read_text().split("---\n") if c.strip()]


def _run(tmp_path, script: str, *args: str, **env) -> subprocess.CompletedProcess:
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir(exist_ok=True)
  for name in ("srun", "gcloud", "python"):
    _fake(bin_dir, name, tmp_path / "calls")
  env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", **env)
  return subprocess.run(["bash", os.path.join(LAUNCH, script), *args], env=env, text=True,
                        capture_output=True, timeout=60)


def test_slurm_script_runs_main_under_srun_with_distributed(tmp_path):
  done = _run(tmp_path, "slurm.sbatch", "--config=configs/quickstart.py", "--workdir=/shared/x")
  assert done.returncode == 0, done.stderr
  [call] = _calls(tmp_path / "calls")
  assert call == ["--kill-on-bad-exit=1", "python", "-m", "looped_jax.main", "--distributed",
                  "--config=configs/quickstart.py", "--workdir=/shared/x"]


def test_tpu_script_installs_then_starts_the_same_command_on_every_worker(tmp_path):
  done = _run(tmp_path, "tpu_pod.sh", "--config=configs/quickstart.py", "--workdir=/mnt/r x",
              TPU_NAME="pod", ZONE="z", REPO_URL="https://example.org/looped_jax.git", REF="abc")
  assert done.returncode == 0, done.stderr
  install, start = _calls(tmp_path / "calls")
  for call in (install, start):
    assert call[:5] == ["compute", "tpus", "tpu-vm", "ssh", "pod"]
    assert "--worker=all" in call and "--zone=z" in call
  install_cmd, start_cmd = install[-1], start[-1]
  assert "git clone 'https://example.org/looped_jax.git'" in install_cmd
  assert "git checkout -q 'abc'" in install_cmd and "pip install -q -e ." in install_cmd
  assert "python -m looped_jax.main --distributed --config=configs/quickstart.py " \
      r"--workdir=/mnt/r\ x" in start_cmd
  missing = _run(tmp_path, "tpu_pod.sh", "--config=x", TPU_NAME="pod")
  assert missing.returncode != 0 and "ZONE" in missing.stderr


def test_local_script_passes_flags_and_simulated_devices(tmp_path):
  done = _run(tmp_path, "local.sh", "--config=c.py", "--workdir=w", DEVICES="4",
              PYTHON=str(tmp_path / "bin" / "python"))
  assert done.returncode == 0, done.stderr
  assert _calls(tmp_path / "calls") == [["-m", "looped_jax.main", "--config=c.py", "--workdir=w"]]
