"""Where depth goes, end to end: the ILR, padding, RELAY and CoT-vs-loop configs expand into
valid runs (log-depth loop counts resolved per length); a loop-aligned run trains and
evaluates from the CLI with its loop sweep at longer lengths and its linear probes."""

import json
import os

import pytest

from looped_jax.errors import ConfigError
from looped_jax.train import experiment

from helpers import cli, repo_config


@pytest.mark.parametrize("name,arg", [("ilr", "all"), ("padded_word_problem", "s3"),
                                      ("padded_word_problem", "s5"), ("relay", "linear"),
                                      ("relay", "doubling"),
                                      ("cot_vs_loop", "all")])
def test_configs_expand_into_valid_runs(name, arg):
  runs = experiment.expand(repo_config(name, arg))
  assert len(runs) > 1
  if name == "padded_word_problem":  # L(n) = ceil(log2 n) for log_pad, 3 for the others
    loops = {v: int(c.model.num_loops) for v, c in runs.items()}
    assert [loops[f"log_pad_n{n}"] for n in (8, 16, 32)] == [3, 4, 5]
    assert {loops[f"loops_n{n}"] for n in (8, 16, 32)} == {3}
    assert runs["pad_n32"].task.pad_factor == 1 and runs["loops_n16"].task.pad_factor == 0
    assert "pad_n16" not in runs and len(runs) == 13
    assert [loops[f"log_n{n}"] for n in (8, 16, 32)] == [3, 4, 5]
  if name == "ilr":
    assert tuple(runs["first"].model.layer_loops) == (2, 1, 1, 1)
  for bad in ("nope",):
    with pytest.raises(ConfigError, match="choose one of"):
      repo_config(name, bad)


@pytest.mark.slow
def test_relay_trains_and_evaluates_with_probes_and_longer_lengths(tmp_path):
  workdir = str(tmp_path / "relay")
  common = ["--config=configs/relay.py:check", f"--workdir={workdir}"]
  for mode in ("train", "eval"):
    done = cli(*common, f"--mode={mode}")
    assert done.returncode == 0, done.stderr
  for variant in ("relay", "final"):
    with open(os.path.join(workdir, variant, "loop_sweep.json")) as f:
      sweep = json.load(f)
    assert sweep["order"] == ["train", "n16", "n32"] and sweep["max_loops"] == 16
    with open(os.path.join(workdir, variant, "probes.json")) as f:
      probes = json.load(f)
    assert probes["loops"] == list(range(9))
    assert len(probes["targets"]["steps"]["r2"]) == 8  # the linear scan of 8 elements
    assert all(len(row) == 9 for row in probes["targets"]["steps"]["r2"])
    assert os.path.exists(os.path.join(workdir, variant, "probes.png"))
