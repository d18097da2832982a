"""Bad inputs and faults, one table row each: a one-sentence ConfigError, nothing changed.

Rows run in-process (experiment.run, the trainer's and the CLI's functions); only the exit
path itself (status, one stderr line) runs the command line in a subprocess. Each row
builds its own small workdir from tests/tiny_config.py, so most take well under a second.
"""

import dataclasses
import json
import os
from typing import Callable

import pytest
from helpers import tiny_config

from looped_jax import config as config_lib
from looped_jax.errors import ConfigError
from looped_jax.train import experiment


def snapshot(root) -> dict[str, bytes | None]:
  """Every path under `root` with the bytes of each file (None for folders)."""
  out = {}
  for folder, dirs, files in os.walk(root):
    for d in dirs:
      out[os.path.relpath(os.path.join(folder, d), root)] = None
    for f in files:
      path = os.path.join(folder, f)
      with open(path, "rb") as h:
        out[os.path.relpath(path, root)] = h.read()
  return out


def fake_run(path, config=None, **extra_files) -> str:
  """A folder as the trainer leaves it (config.json, metrics.jsonl, a checkpoint folder),
  without training: enough for every check made before a run starts."""
  os.makedirs(os.path.join(path, "checkpoints", "20"), exist_ok=True)
  with open(os.path.join(path, "config.json"), "w") as f:
    f.write(config_lib.to_json(config or tiny_config()))
  with open(os.path.join(path, "metrics.jsonl"), "w") as f:
    f.write(json.dumps({"step": 10, "loss": 1.0}) + "\n")
  for name, text in extra_files.items():
    with open(os.path.join(path, name), "w") as f:
      f.write(text)
  return str(path)


def with_variants(**variants):
  config = tiny_config()
  config.variants = variants
  return config


@dataclasses.dataclass
class Row:
  """experiment.run(config, workdir, mode, overwrite) on what `prepare` leaves in tmp_path."""

  prepare: Callable  # tmp_path -> workdir
  named: str  # a fragment of the one-line message
  config: Callable = tiny_config
  mode: str = "train"
  overwrite: bool = False


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)
  return path


WORKDIR_ROWS = {
    "overwrite on a folder of someone's files": Row(
        lambda t: os.path.dirname(_write(str(t / "w" / "notes.txt"), "mine")),
        "notes.txt was not written by looped_jax", overwrite=True),
    "overwrite on a run with a foreign file in it": Row(
        lambda t: fake_run(t / "w", tiny_config(model={"d_model": 32}), **{"notes.txt": "x"}),
        "notes.txt was not written by looped_jax", overwrite=True),
    "overwrite on variant folders with a foreign file": Row(
        lambda t: (fake_run(t / "w" / "a"), _write(str(t / "w" / "data.csv"), "1"))[0] and str(t / "w"),
        "data.csv was not written by looped_jax", overwrite=True),
    "overwrite on a variant folder holding a foreign file": Row(
        lambda t: (fake_run(t / "w" / "a", **{"mine.py": ""}), str(t / "w"))[1],
        "mine.py was not written", overwrite=True),
    "workdir is a file": Row(lambda t: _write(str(t / "w"), "x"), "is a file, not a folder"),
    "workdir inside a file": Row(lambda t: os.path.join(_write(str(t / "f"), "x"), "w"),
                                 "is a file; give a path whose parents are folders"),
    "workdir not writable": Row(lambda t: "/proc/looped_jax_run", "is not writable"),
    "eval on an empty folder": Row(lambda t: (os.makedirs(t / "w"), str(t / "w"))[1],
                                   "holds no checkpoint", mode="eval"),
    "eval on a missing folder": Row(lambda t: str(t / "nope"), "holds no checkpoint", mode="eval"),
    "hessian on a missing folder": Row(lambda t: str(t / "nope"), "holds no checkpoint",
                                       mode="hessian"),
    "eval on variants, one untrained": Row(
        lambda t: (fake_run(t / "w" / "a"), str(t / "w"))[1], "w/b holds no checkpoint",
        config=lambda: with_variants(a={"model": {"num_loops": 2}}, b={"model": {"num_loops": 3}}),
        mode="eval"),
    "unknown mode": Row(lambda t: str(t / "w"), "--mode='tran' is not allowed", mode="tran"),
    "config.json damaged": Row(lambda t: os.path.dirname(_write(str(t / "w" / "config.json"), '{"mod')),
                               "config.json is unreadable or damaged"),
    "config.json of another program": Row(
        lambda t: os.path.dirname(_write(str(t / "w" / "config.json"), '{"lr": 1}')),
        "is not a looped_jax config"),
    "overwrite on config.json of another program": Row(
        lambda t: os.path.dirname(_write(str(t / "w" / "config.json"), '[1, 2]')),
        "is not a looped_jax config", overwrite=True),
    "another config's run, no overwrite": Row(
        lambda t: fake_run(t / "w", tiny_config(model={"d_model": 32})), "model.d_model"),
}


@pytest.mark.parametrize("name", sorted(WORKDIR_ROWS))
def test_workdir_problem_is_one_sentence_and_changes_nothing(tmp_path, name):
  row = WORKDIR_ROWS[name]
  workdir = row.prepare(tmp_path)
  before = snapshot(tmp_path)
  with pytest.raises(ConfigError) as raised:
    experiment.run(row.config(), workdir, row.mode, overwrite=row.overwrite)
  message = str(raised.value)
  assert row.named in message and "\n" not in message, message
  assert snapshot(tmp_path) == before


def test_overwrite_replaces_a_run_it_wrote_and_variant_folders_of_runs(tmp_path):
  from looped_jax.train import workdir as workdir_lib
  config = tiny_config()
  other = fake_run(tmp_path / "run", tiny_config(model={"d_model": 32}), **{"summary.json": "{}"})
  workdir_lib.prepare(other, config, overwrite=True)
  assert sorted(os.listdir(other)) == ["config.json"]
  variants = tmp_path / "variants"
  fake_run(variants / "a"), fake_run(variants / "b"), _write(str(variants / "comparison.png"), "")
  workdir_lib.prepare(str(variants), config, overwrite=True)
  assert sorted(os.listdir(variants)) == ["config.json"]
  same = fake_run(tmp_path / "same", config)  # the same config resumes: nothing deleted
  workdir_lib.prepare(same, config, overwrite=True)
  assert sorted(os.listdir(same)) == ["checkpoints", "config.json", "metrics.jsonl"]


GOOD = json.dumps({"step": 10, "loss": 1.0}) + "\n" + json.dumps({"step": 20, "loss": 0.5}) + "\n"
TORN_ROWS = {  # file content -> records kept on resume at step 20
    "half a record": (GOOD + '{"step": 30, "lo', 2),
    "an empty record": (GOOD + "{", 2),
    "a NUL-filled tail": (GOOD + "\0\0\0\0", 2),
    "a record without its newline": (GOOD + json.dumps({"step": 20, "x": 1.0}), 3),
}


@pytest.mark.parametrize("file", ["metrics.jsonl", "spectra.jsonl"])
@pytest.mark.parametrize("name", sorted(TORN_ROWS))
def test_a_torn_last_line_is_dropped_with_one_warning_on_resume(tmp_path, capsys, name, file):
  from looped_jax import jsonl
  from looped_jax.train import metrics
  text, kept = TORN_ROWS[name]
  path = tmp_path / file
  path.write_text(text)
  if file == "metrics.jsonl":
    metrics.MetricWriter(str(tmp_path), resume_step=20).close()
  else:
    jsonl.Log(str(path), resume_step=20, create=False)  # SpectraHook's log
  records = [json.loads(line) for line in path.read_text().splitlines()]
  assert len(records) == kept and path.read_text().endswith("\n")
  warnings = capsys.readouterr().err.strip().splitlines()
  assert len(warnings) == (kept == 2) and all(w.startswith("warning: ") for w in warnings)


@pytest.mark.parametrize("damage", ['{"step": 1', "not json", '{"loss": 1.0}', "[1, 2]"])
def test_a_damaged_line_before_the_last_is_refused_and_kept(tmp_path, damage):
  from looped_jax.train import metrics
  path = tmp_path / "metrics.jsonl"
  path.write_text(GOOD + damage + "\n" + GOOD)
  with pytest.raises(ConfigError, match=r"line 3 of .*metrics.jsonl is not a JSON record"):
    metrics.MetricWriter(str(tmp_path), resume_step=20)
  assert path.read_text() == GOOD + damage + "\n" + GOOD


# Checkpoints: one 20-step run (checkpoints at 10 and 20) is copied and damaged per row.
RUN_TRAIN = {"num_steps": 20, "log_every": 5, "checkpoint_every": 10}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  from looped_jax.train import trainer
  path = str(tmp_path_factory.mktemp("trained") / "run")
  trainer.train(tiny_config(train=RUN_TRAIN), path, quiet=True)
  return path


def _copy(trained, tmp_path) -> str:
  import shutil
  shutil.copytree(trained, tmp_path / "run")
  return str(tmp_path / "run")


def _files(step_dir, pattern):
  import glob
  return sorted(glob.glob(os.path.join(step_dir, pattern), recursive=True))


def _truncate(path, size=None):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2 if size is None else size)


def _flip_byte(path):
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 0x01
  open(path, "wb").write(bytes(data))


def _change_digest(step_dir):
  """The bytes of one array changed and still readable: what only the digest can tell."""
  path = os.path.join(step_dir, "meta", "metadata")
  meta = json.load(open(path))
  name = sorted(meta["digests"])[0]
  meta["digests"][name] = f"{int(meta['digests'][name], 16) ^ 1:08x}"
  json.dump(meta, open(path, "w"))


DAMAGE_ROWS = {
    "every data file truncated": lambda d: [_truncate(f, 10) for f in _files(d, "state/**/d/*")],
    "the array data truncated": lambda d: _truncate(_files(d, "state/d/*")[0]),
    "a bit flipped in the array data": lambda d: _flip_byte(_files(d, "state/d/*")[0]),
    "array bytes that differ from their digest": _change_digest,
    "meta cut short": lambda d: _truncate(os.path.join(d, "meta", "metadata")),
    "meta emptied": lambda d: _truncate(os.path.join(d, "meta", "metadata"), 0),
    "the state's tree metadata damaged": lambda d: _truncate(os.path.join(d, "state", "_METADATA")),
    "the array data deleted": lambda d: os.remove(_files(d, "state/d/*")[0]),
    "the state folder deleted": lambda d: __import__("shutil").rmtree(os.path.join(d, "state")),
    "the meta folder deleted": lambda d: __import__("shutil").rmtree(os.path.join(d, "meta")),
}


@pytest.mark.parametrize("name", sorted(DAMAGE_ROWS))
@pytest.mark.slow
def test_a_damaged_latest_checkpoint_is_reported_once_and_the_one_before_restored(
    trained, tmp_path, name):
  from looped_jax.train import build, checkpoint
  run = _copy(trained, tmp_path)
  DAMAGE_ROWS[name](os.path.join(run, "checkpoints", "20"))
  before = snapshot(tmp_path)
  exp = build.Experiment.build(tiny_config(train=RUN_TRAIN))
  ckpt = checkpoint.Checkpointer(os.path.join(run, "checkpoints"), create=False)
  warnings = []
  step, state, meta = ckpt.restore_newest_intact(exp.initial_state(), set_aside=False,
                                                 warn=warnings.append)
  ckpt.close()
  assert (step, meta["step"], int(state["step"])) == (10, 10, 10)
  assert len(warnings) == 1 and "step 20" in warnings[0] and "\n" not in warnings[0]
  assert "--overwrite" not in warnings[0]
  assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_no_intact_checkpoint_is_one_line_that_advises_no_deletion(trained, tmp_path):
  run = _copy(trained, tmp_path)
  for step in (10, 20):
    _truncate(_files(os.path.join(run, "checkpoints", str(step)), "state/d/*")[0])
  before = snapshot(tmp_path)
  with pytest.raises(ConfigError, match="no checkpoint in .* can be restored") as raised:
    experiment.run(tiny_config(train=RUN_TRAIN), run)
  assert "--overwrite" not in str(raised.value) and "\n" not in str(raised.value)
  assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_a_damaged_latest_checkpoint_and_a_torn_metrics_line_resume_exactly(
    trained, tmp_path, capsys):
  """Training resumes from step 10, sets the damaged step 20 aside, and ends with the
  metrics of the uninterrupted run; eval uses the newest intact checkpoint too."""
  from helpers import metric_records
  run = _copy(trained, tmp_path)
  _truncate(_files(os.path.join(run, "checkpoints", "20"), "state/d/*")[0])
  with open(os.path.join(run, "metrics.jsonl"), "a") as f:
    f.write('{"step": 20, "lo')
  capsys.readouterr()
  experiment.run(tiny_config(train=RUN_TRAIN), run)
  warnings = capsys.readouterr().err.strip().splitlines()
  assert len(warnings) == 2 and all(w.startswith("warning: ") for w in warnings), warnings
  assert metric_records(run) == metric_records(trained)
  assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == ["10", "20", "damaged-20"]


@pytest.mark.slow
def test_eval_falls_back_to_the_newest_intact_checkpoint(trained, tmp_path):
  run = _copy(trained, tmp_path)
  _flip_byte(_files(os.path.join(run, "checkpoints", "20"), "state/d/*")[0])
  experiment.run(tiny_config(train=RUN_TRAIN), run, "eval")
  assert json.load(open(os.path.join(run, "eval.json")))["step"] == 10
  assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == ["10", "20"]


@pytest.mark.parametrize("when", ["during the save", "in the background"])
@pytest.mark.slow
def test_a_failed_save_stops_the_run_at_once_keeping_the_last_good_checkpoint(
    tmp_path, monkeypatch, when):
  import errno

  import orbax.checkpoint as ocp
  from helpers import metric_records

  from looped_jax.errors import RunStopped
  save, failed = ocp.CheckpointManager.save, []

  def failing_save(manager, step, *args, **kwargs):
    if step == 20 and when == "during the save":
      raise OSError(errno.ENOSPC, "No space left on device")
    if step == 20:
      failed.append(step)  # nothing written, as when the disk fills in the background
      return True
    return save(manager, step, *args, **kwargs)

  def check_for_errors(manager):
    if failed:
      raise ValueError("RESOURCE_EXHAUSTED: Failed writing: No space left on device")

  monkeypatch.setattr(ocp.CheckpointManager, "save", failing_save)
  monkeypatch.setattr(ocp.CheckpointManager, "check_for_errors", check_for_errors)
  run = str(tmp_path / "run")
  config = tiny_config(train={"num_steps": 40, "log_every": 5, "checkpoint_every": 10})
  with pytest.raises(RunStopped, match="failed [(]no space left on device[)]; the run stopped "
                     "and the checkpoint at step 10 is kept") as raised:
    experiment.run(config, run)
  assert "\n" not in str(raised.value)
  assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == ["10"]
  assert max(r["step"] for r in metric_records(run)) == 20  # stopped at once, not at step 30


@pytest.mark.parametrize("signum", ["SIGTERM"])  # SIGINT: the command-line test below
@pytest.mark.slow
def test_a_signal_saves_at_the_next_step_and_the_resumed_run_equals_an_uninterrupted_one(
    trained, tmp_path, monkeypatch, signum):
  """The signal arrives while step 8 runs (log steps are 5, 10): the run saves step 8 with
  the metrics of steps 6-8 and stops; the rerun's step-10 line averages steps 6-10 as the
  uninterrupted run's does."""
  import signal

  from helpers import metric_records

  from looped_jax.errors import RunStopped
  from looped_jax.train import build
  sampler = build.Experiment.sampler

  def sampler_that_signals(exp, batch_size):
    sample = sampler(exp, batch_size)

    def signalling(key, step):
      if step == 7:
        signal.raise_signal(getattr(signal, signum))
      return sample(key, step)
    return signalling

  run = str(tmp_path / "run")
  handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
  with monkeypatch.context() as patch:
    patch.setattr(build.Experiment, "sampler", sampler_that_signals)
    with pytest.raises(RunStopped, match=f"stopped by {signum} at step 8, with a checkpoint of "
                       "that step saved; rerun the same command to resume") as raised:
      experiment.run(tiny_config(train=RUN_TRAIN), run)
  assert raised.value.status == 128 + getattr(signal, signum)
  assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == ["8"]
  assert {s: signal.getsignal(s) for s in handlers} == handlers  # handlers restored
  experiment.run(tiny_config(train=RUN_TRAIN), run)
  assert metric_records(run) == metric_records(trained)


@pytest.mark.slow
def test_ctrl_c_on_the_command_line_is_one_line_saying_how_to_resume(tmp_path):
  import signal
  import subprocess
  import sys
  import time

  from helpers import REPO, TINY
  workdir = tmp_path / "run"
  proc = subprocess.Popen(
      [sys.executable, "-m", "looped_jax.main", f"--config={TINY}", f"--workdir={workdir}",
       "--config.train.num_steps=1000000", "--config.train.checkpoint_every=1000000",
       "--config.eval.every=1000000"],
      cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 240
  while time.time() < deadline and not (workdir / "metrics.jsonl").exists():
    time.sleep(0.1)
  while time.time() < deadline and not (workdir / "metrics.jsonl").read_text():
    time.sleep(0.1)
  proc.send_signal(signal.SIGINT)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 130, stderr
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: stopped by SIGINT at step "), stderr
  assert lines[0].endswith("rerun the same command to resume.")
  step = int(lines[0].split("at step ")[1].split(",")[0])
  assert os.listdir(workdir / "checkpoints") == [str(step)]


@pytest.mark.parametrize("signum, status, start", [
    ("SIGINT", 130, "error: interrupted; nothing was lost"),
    ("SIGTERM", 143, "error: stopped by SIGTERM; nothing was lost")])
@pytest.mark.slow
def test_a_signal_outside_the_train_loop_ends_with_one_line_and_its_status(
    tmp_path, signum, status, start):
  """While the config file loads (a get_config that waits), as while --mode=eval runs: no
  traceback, no silent exit, nothing written."""
  import signal
  import subprocess
  import sys
  import time

  from helpers import REPO
  marker = tmp_path / "loading"
  config = tmp_path / "slow.py"
  config.write_text(BASE + "import pathlib, time\n\n\ndef get_config():\n"
                    f"  pathlib.Path({str(marker)!r}).touch()\n  time.sleep(120)\n"
                    "  return base_config()\n")
  workdir = tmp_path / "run"
  proc = subprocess.Popen(
      [sys.executable, "-m", "looped_jax.main", f"--config={config}", f"--workdir={workdir}",
       "--mode=eval"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
      # A test run started in the background inherits SIGINT ignored; a terminal's is not.
      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  deadline = time.time() + 120
  while time.time() < deadline and not marker.exists():
    time.sleep(0.05)
  proc.send_signal(getattr(signal, signum))
  _, stderr = proc.communicate(timeout=60)
  assert proc.returncode == status, stderr
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(start), stderr
  assert not workdir.exists()


# Config files: loaded by config_file.load before absl sees them.
BASE = "from looped_jax.config import base_config\n"
CONFIG_FILE_ROWS = {  # file name, its text (None: not written), :ARG -> message fragment
    "missing file": ("nope.py", None, None, "does not exist"),
    "a folder": ("folder", "", None, "is a folder"),
    "not a Python file": ("config.yaml", "a: 1\n", None, "is not a Python file"),
    "syntax error": ("c.py", "def get_config(:\n", None, "SyntaxError at line 1"),
    "import error": ("c.py", "import no_such_module_here\n", None, "ModuleNotFoundError"),
    "raises at import": ("c.py", "1 / 0\n", None, "ZeroDivisionError"),
    "no get_config": ("c.py", "x = 1\n", None, "defines no get_config()"),
    "returns None": ("c.py", "def get_config():\n  pass\n", None, "returned NoneType"),
    "returns a dict": ("c.py", "def get_config():\n  return {}\n", None, "returned dict"),
    "sets a wrong type": ("c.py", BASE + "def get_config():\n  c = base_config()\n"
                          "  c.train.num_steps = 'many'\n  return c\n", None, "TypeError"),
    "raises inside": ("c.py", "def get_config():\n  raise KeyError('model')\n", None,
                      "get_config() failed (KeyError"),
    ":ARG to a config without one": ("c.py", BASE + "def get_config():\n  return base_config()\n",
                                     "x", "takes no :ARG (got 'x')"),
    "needs an arg it has no default for": ("c.py", BASE + "def get_config(arg):\n  return "
                                           "base_config()\n", None, "get_config() failed"),
}


@pytest.mark.parametrize("name", sorted(CONFIG_FILE_ROWS))
def test_a_config_file_problem_is_one_sentence(tmp_path, name):
  from looped_jax import config_file
  file, text, arg, named = CONFIG_FILE_ROWS[name]
  path = tmp_path / file
  if text is not None and file == "folder":
    path.mkdir()
  elif text is not None:
    path.write_text(text)
  with pytest.raises(ConfigError) as raised:
    config_file.load(str(path) + (f":{arg}" if arg is not None else ""))
  assert named in str(raised.value) and "\n" not in str(raised.value), str(raised.value)


CONFIGS = sorted(os.path.basename(p) for p in
                 __import__("glob").glob(os.path.join(os.path.dirname(os.path.dirname(
                     os.path.abspath(__file__))), "configs", "*.py")))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_refuses_an_unknown_arg(name):
  from helpers import REPO

  from looped_jax import config_file
  with pytest.raises(ConfigError, match="nonsense") as raised:
    config_file.load(os.path.join(REPO, "configs", name) + ":nonsense")
  assert "\n" not in str(raised.value)


def _set(**flat):
  """tiny_config with dotted keys set, e.g. _set(**{"train.learning_rate": inf})."""
  def make():
    config = tiny_config()
    for key, value in flat.items():
      section, _, leaf = key.rpartition(".")
      node = config
      for part in section.split(".") if section else ():
        node = node[part]
      with node.ignore_type():
        node[leaf] = value
    return config
  return make


VALUE_ROWS = {
    "learning_rate inf": (_set(**{"train.learning_rate": float("inf")}), "train.learning_rate=inf"),
    "learning_rate nan": (_set(**{"train.learning_rate": float("nan")}), "train.learning_rate=nan"),
    "learning_rate negative": (_set(**{"train.learning_rate": -1.0}), "must be positive"),
    "weight_decay nan": (_set(**{"train.weight_decay": float("nan")}), "train.weight_decay=nan"),
    "b2 = 1": (_set(**{"train.b2": 1.0}), "train.b2=1.0 must be in [0, 1)"),
    "grad_clip negative": (_set(**{"train.grad_clip": -1.0}), "train.grad_clip=-1.0"),
    "loss window longer than the loops": (
        _set(**{"train.loss_on": "window", "train.grad_loops": 5}),
        "train.grad_loops=5 is the window of train.loss_on='window' and must be <= "
        "model.num_loops=3"),
    "num_steps negative": (_set(**{"train.num_steps": -1}), "train.num_steps=-1"),
    "a string for an integer": (_set(**{"model.num_loops": "3"}), "must be an integer"),
    "a bool for an integer": (_set(**{"model.d_model": True}), "must be an integer"),
    "a number for a bool": (_set(**{"model.causal": 1}), "must be True or False"),
    "an integer for a tuple": (_set(**{"eval.loops": 3}), "eval.loops=3 must be a tuple"),
    "a string in eval.loops": (_set(**{"eval.loops": ("4",)}), "eval.loops contains '4'"),
    "a number for a string": (_set(**{"model.block": 2}), "model.block=2 must be a string"),
    "max_train_seconds inf": (_set(**{"train.max_train_seconds": float("inf")}),
                              "must be a finite number"),
    "float64 without 64-bit JAX": (_set(**{"model.dtype": "float64"}),
                                   "model.dtype='float64' needs 64-bit JAX: set JAX_ENABLE_X64=1"),
    "an unknown dtype": (_set(**{"model.dtype": "float16"}),
                         "choose one of 'float32', 'bfloat16', 'float64'"),
}


@pytest.mark.parametrize("name", sorted(VALUE_ROWS))
def test_a_bad_value_is_one_sentence_and_touches_nothing(tmp_path, name):
  make, named = VALUE_ROWS[name]
  with pytest.raises(ConfigError) as raised:
    experiment.run(make(), str(tmp_path / "run"))
  assert named in str(raised.value) and "\n" not in str(raised.value), str(raised.value)
  assert not (tmp_path / "run").exists()


def quickstart_like():
  return with_variants(single={"model": {"num_loops": 1}}, looped={"model": {"num_loops": 3}})


@pytest.mark.parametrize("override, named", [
    ("model.num_loops", "model.num_loops is set by variants 'looped', 'single'; drop"),
    ("model", "model.num_loops is set by variants 'looped', 'single'; drop"),
])
def test_an_override_a_variant_sets_itself_is_refused_naming_the_variant(tmp_path, override,
                                                                         named):
  with pytest.raises(ConfigError, match=named) as raised:
    experiment.run(quickstart_like(), str(tmp_path / "run"), overrides=[override])
  assert "--config.variants.looped.model.num_loops=VALUE" in str(raised.value)
  assert not (tmp_path / "run").exists()


def test_an_override_no_variant_sets_applies_to_every_variant():
  runs = experiment.expand(quickstart_like(), overrides=["model.d_model"])
  assert set(runs) == {"single", "looped"}
  # the key is set in the base config (as config_flags does); every variant keeps it
  config = quickstart_like()
  config.model.d_model = 32
  assert {n: c.model.d_model for n, c in experiment.expand(config, ["model.d_model"]).items()} == {
      "single": 32, "looped": 32}


def test_zero_steps_with_variants_trains_nothing_and_draws_no_empty_plot(tmp_path, monkeypatch):
  from looped_jax.train import build
  monkeypatch.setattr(build.Experiment, "evaluate", lambda exp, params: {})  # no compiles
  config = quickstart_like()
  config.train.num_steps = 0
  results = experiment.run(config, str(tmp_path))
  assert set(results) == {"single", "looped"}
  assert not (tmp_path / "comparison.png").exists()


FLAG_ROWS = {  # command-line arguments after --workdir -> message fragment
    "override not an int": (["--config.train.num_steps=abc"], "--config.train.num_steps=abc"),
    "override not a bool": (["--config.model.causal=maybe"], "--config.model.causal=maybe"),
    "override a float for an int": (["--config.model.num_loops=2.5"], "--config.model.num_loops"),
    "override of no key": (["--config.model.widht=3"], "--config.model.widht names no config key"),
    "unknown mode": (["--mode=bogus"], "--mode"),
    "config file missing": (["--config=configs/nope.py"], "configs/nope.py does not exist"),
    "config :ARG unknown": (["--config=configs/gong_markov.py:nonsense"], "gong_markov.py:nonsense"),
    "config :ARG to a config without one": (["--config=configs/quickstart.py:fast"],
                                            "takes no :ARG"),
}


@pytest.fixture(scope="module")
def bad_flag_runs(tmp_path_factory):
  """name -> (the CLI's result, its workdir), one forked process per row: absl's flag
  registry keeps state between parses in one process."""
  from helpers import TINY, cli_each
  names = sorted(FLAG_ROWS)
  workdirs = {name: tmp_path_factory.mktemp("flag") / "run" for name in names}
  rows = []
  for name in names:
    args = FLAG_ROWS[name][0]
    config = [] if any(a.startswith("--config=") for a in args) else [f"--config={TINY}"]
    rows.append([*config, f"--workdir={workdirs[name]}", *args])
  return {n: (d, workdirs[n]) for n, d in zip(names, cli_each(rows))}


@pytest.mark.parametrize("name", sorted(FLAG_ROWS))
@pytest.mark.slow
def test_a_bad_flag_exits_2_with_one_line(bad_flag_runs, name):
  done, workdir = bad_flag_runs[name]
  named = FLAG_ROWS[name][1]
  assert done.returncode == 2, done.stderr
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], done.stderr
  assert not workdir.exists()
