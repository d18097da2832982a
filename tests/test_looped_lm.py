"""Looped language models end to end: configs/looped_lm.py's variants build; a tiny run trains
on the default corpus from the CLI and --mode=generate continues a prompt from its checkpoint
(greedy, at another loop count, with a per-token exit); bad generation settings get one line."""

import json
import os

import pytest

from looped_jax import config as config_lib
from looped_jax.errors import ConfigError
from looped_jax.train import build

from helpers import cli, repo_config

SMALL = ["--config.model.d_model=32", "--config.model.num_heads=2", "--config.task.length=16",
         "--config.train.num_steps=4", "--config.train.log_every=2",
         "--config.train.checkpoint_every=4", "--config.train.warmup_steps=0",
         "--config.eval.every=4", "--config.eval.batch_size=8", "--config.eval.num_batches=1",
         "--config.eval.loops=()", "--config.generate.max_new_tokens=8"]


@pytest.mark.parametrize("variant", ["looped", "standard", "deep", "plt", "ouro", "check"])
def test_every_variant_builds(variant, tmp_path):
  c = repo_config("looped_lm", variant)
  c.task.build_dir = str(tmp_path)
  build.Experiment.build(c)


def test_unknown_variant_is_one_sentence():
  with pytest.raises(ConfigError, match="choose one of looped, standard"):
    repo_config("looped_lm", "huge")


@pytest.mark.parametrize("changes,message", [
    ({"model": {"plt": True, "injection": "none"}}, "needs model.injection='add'"),
    ({"model": {"plt": True, "timestep": True}}, "does not combine with model.timestep"),
    ({"model": {"plt": True, "plt_window": 0}}, "plt_window=0 must be >= 1"),
    ({"model": {"exit_gate": True}, "train": {"loss_on": "all"}}, "does not combine with"),
    ({"generate": {"exit": "gate"}}, "needs a model with an exit gate"),
    ({"generate": {"cache": "all"}}, "generate.cache"),
    ({"generate": {"max_new_tokens": 0}}, "max_new_tokens=0 must be >= 1"),
])
def test_bad_settings_are_refused(changes, message):
  c = repo_config("looped_lm", "looped")
  with pytest.raises(ConfigError, match=message):
    config_lib.validate(config_lib.apply_overrides(c, changes))


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["looped", "plt", "ouro"])
def test_train_then_generate_from_the_cli(variant, tmp_path):
  workdir, data = str(tmp_path / "run"), str(tmp_path / "data")
  common = [f"--config=configs/looped_lm.py:{variant}", f"--workdir={workdir}",
            f"--config.task.build_dir={data}", *SMALL]
  done = cli(*common)
  assert done.returncode == 0, done.stderr
  prompt = "The with statement"
  gen = cli(*common, "--mode=generate", f"--config.generate.prompt={prompt}",
            "--config.generate.num_loops=2")
  assert gen.returncode == 0, gen.stderr
  result = json.load(open(os.path.join(workdir, "generate.json")))
  assert result["prompt"] == prompt and result["step"] == 4 and result["num_loops"] == 2
  assert len(result["tokens"]) == 8 and len(result["loops_per_token"]) == 8
  assert result["text"] in gen.stdout
  if variant == "ouro":  # the learned exit from the CLI (the other criteria: decode_test.py)
    gen = cli(*common, "--mode=generate", "--config.generate.exit=gate",
              "--config.generate.exit_threshold=0.5", "--config.generate.cache=first_loop")
    assert gen.returncode == 0, gen.stderr
    result = json.load(open(os.path.join(workdir, "generate.json")))
    assert 1 <= result["mean_loops"] <= 3 and result["exit"] == "gate"


def test_generate_without_a_checkpoint_is_one_line(tmp_path):
  done = cli("--config=configs/looped_lm.py:check", f"--workdir={tmp_path}", "--mode=generate")
  assert done.returncode == 2
  assert done.stderr.strip().splitlines() == [
      f"error: --mode=generate needs a trained run, and {tmp_path} holds no checkpoint; check "
      "--workdir, or train first with --mode=train."]


@pytest.mark.slow
def test_the_docs_python_example_runs(tmp_path):
  import re
  import subprocess
  import sys
  from helpers import REPO
  with open(os.path.join(REPO, "docs", "looped_lm.md"), encoding="utf-8") as f:
    (block,) = re.findall(r"```python\n(.*?)```", f.read(), re.S)
  checks = ("\nassert out.tokens.shape == (1, 32) and out.loops.shape == (1, prompt.shape[1] + 31)"
            "\nassert 1 <= float(out.loops.mean()) <= 6\n")
  env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))  # the default corpus builds here
  done = subprocess.run([sys.executable, "-c", block + checks], cwd=REPO, text=True,
                        capture_output=True, timeout=300, env=env)
  assert done.returncode == 0, done.stderr[-3000:]
