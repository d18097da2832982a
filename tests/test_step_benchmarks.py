"""The step benchmarks run end to end at a tiny size and report self-consistent numbers."""

import argparse
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from helpers import REPO
from looped_jax.train import compiler

TINY = ["--d_model=16", "--heads=2", "--loops=3", "--window=2", "--batch=4", "--points=5",
        "--dims=3", "--warmup=1", "--steps=2"]


def run(script, *args):
  out = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", script), *args],
                       cwd=REPO, text=True, capture_output=True, timeout=300,
                       env=dict(os.environ))
  assert out.returncode == 0, out.stderr[-2000:]
  lines = out.stdout.strip().splitlines()
  assert len(lines) == 1, out.stdout  # the contract: one JSON line on stdout
  return json.loads(lines[0])


@pytest.mark.slow
def test_jax_step_throughput_reports_one_consistent_line():
  r = run("step_throughput.py", *TINY)
  assert (r["model"], r["loops"], r["window"], r["d_model"]) == ("looped", 3, 2, 16)
  assert r["median_s"] > 0 and len(r["times_s"]) == 2
  assert r["steps_per_s"] == pytest.approx(1 / r["median_s"])
  assert r["gflop_per_s"] == pytest.approx(r["gflop_per_step"] / r["median_s"])
  assert r["xla_options"] == compiler.AUTO["cpu"]  # the library's default, "auto"


def import_step_throughput():
  sys.path.insert(0, os.path.join(REPO, "benchmarks"))
  import step_throughput  # noqa: PLC0415 (benchmarks/ is not a package)
  return step_throughput


def parse(flags):
  step_throughput = import_step_throughput()
  parser = argparse.ArgumentParser()
  step_throughput.add_model_flags(parser)
  args = parser.parse_args(flags)
  args.remat, args.dtype, args.unroll = "none", "float32", -1
  return args


def test_standard_model_runs_its_layers_once():
  step_throughput = import_step_throughput()
  args = parse([*TINY, "--model=standard", "--layers=2"])
  c = step_throughput.yang_config(args)
  assert (c.model.num_layers, c.model.num_loops, c.model.injection) == (2, 1, "none")
  assert (c.train.grad_loops, c.train.loss_on) == (0, "last")
  assert step_throughput.shape(args)["loops"] == 1


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="the optional `torch` extra is not installed")
@pytest.mark.slow
def test_torch_baseline_counts_the_same_flops():
  import jax
  from looped_jax.train import build
  step_throughput = import_step_throughput()
  exp = build.Experiment.build(step_throughput.yang_config(parse(TINY)),
                                 devices=jax.devices()[:1])
  torch_result = run("torch_step.py", *TINY)
  assert torch_result["gflop_per_step"] == step_throughput.step_flops(exp, 3) / 1e9
  assert torch_result["median_s"] > 0 and len(torch_result["times_s"]) == 2
