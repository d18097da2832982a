"""The command line end to end: artifacts of a run, and one-line errors on bad input."""

import json
import os

import pytest

from helpers import TINY, cli, cli_each

pytestmark = pytest.mark.slow  # end-to-end: `pytest -m slow`


def test_train_then_eval_writes_every_artifact(tmp_path):
  workdir = str(tmp_path / "run")
  done = cli(f"--config={TINY}", f"--workdir={workdir}")
  assert done.returncode == 0, done.stderr
  assert "step 60/60" in done.stdout
  files = os.listdir(workdir)
  assert {"config.json", "metrics.jsonl", "summary.json", "checkpoints", "tensorboard"} <= set(files)
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(workdir, "tensorboard")))
  assert "60" in os.listdir(os.path.join(workdir, "checkpoints"))
  evaluated = cli(f"--config={TINY}", f"--workdir={workdir}", "--mode=eval")
  assert evaluated.returncode == 0, evaluated.stderr
  with open(os.path.join(workdir, "eval.json")) as f, open(os.path.join(workdir, "summary.json")) as g:
    ev, summary = json.load(f), json.load(g)
  assert ev["step"] == 60
  assert ev["eval/loss"] == pytest.approx(summary["eval/loss"], rel=1e-6)


BAD_INPUTS = {
    "unknown key": (["--config.model.widht=3"], "model.widht"),
    "unknown task field": (["--config.task.vocabb=3"], "vocabb"),
    "loops <= 0": (["--config.model.num_loops=0"], "model.num_loops"),
    "heads do not divide width": (["--config.model.num_heads=3"], "model.num_heads"),
    "unknown task": (["--config.task.name=nonesuch"], "task.name"),
    "unknown block": (["--config.model.block=mamba"], "model.block"),
    "batch vs devices": (["--config.train.batch_size=12"], "train.batch_size"),
    "mesh larger than devices": (["--config.mesh.data=16"], "mesh.data"),
    "model axis vs heads": (["--config.mesh.model=3"], "mesh.model=3 must divide model.num_heads"),
    "bad flag value": (["--mode=bogus"], "--mode"),
    "unknown XLA option": (["--config.xla_options=xla_no_such_flag=1"], "xla_no_such_flag"),
    "rope on odd head width": (["--config.model.position=rope", "--config.model.num_heads=16"],
                               "model.position='rope'"),
    "recursion with injection": (["--config.model.recursion=trm",
                                  "--config.model.injection=add"], "model.injection='none'"),
    "halting without deep supervision": (["--config.model.halting=True"],
                                         "train.supervision_steps > 0"),
    "unknown cross-entropy": (["--config.train.cross_entropy=sparsemax"],
                              "train.cross_entropy"),
}


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory):
  """name -> (the CLI's result, its workdir) for every row, one forked process each."""
  workdirs = {name: tmp_path_factory.mktemp("bad") / "run" for name in BAD_INPUTS}
  names = sorted(BAD_INPUTS)
  done = cli_each([[f"--config={TINY}", f"--workdir={workdirs[n]}", *BAD_INPUTS[n][0]]
                   for n in names])
  return {n: (d, workdirs[n]) for n, d in zip(names, done)}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_touches_nothing(bad_input_runs, name):
  done, workdir = bad_input_runs[name]
  assert done.returncode == 2, done.stderr
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
  assert BAD_INPUTS[name][1] in lines[0]
  assert "Traceback" not in done.stderr
  assert not workdir.exists()


def test_workdir_of_another_config_is_refused_unless_overwrite(tmp_path):
  workdir = tmp_path / "run"
  first = cli(f"--config={TINY}", f"--workdir={workdir}", "--config.train.num_steps=20")
  assert first.returncode == 0, first.stderr
  before = sorted(os.listdir(workdir)), (workdir / "metrics.jsonl").read_text()
  other = cli(f"--config={TINY}", f"--workdir={workdir}", "--config.model.d_model=32")
  assert other.returncode == 2
  assert "different config" in other.stderr and "model.d_model" in other.stderr
  assert (sorted(os.listdir(workdir)), (workdir / "metrics.jsonl").read_text()) == before
  replaced = cli(f"--config={TINY}", f"--workdir={workdir}", "--config.model.d_model=32",
                 "--config.train.num_steps=20", "--overwrite")
  assert replaced.returncode == 0, replaced.stderr
  assert json.loads((workdir / "config.json").read_text())["model"]["d_model"] == 32
