"""Runs a config: one run, or several variants side by side followed by a comparison plot."""

from __future__ import annotations

import os

import ml_collections

from looped_jax import config as config_lib
from looped_jax.analysis import report
from looped_jax.train import trainer


def expand(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
  """name -> the config of each variant ({"": config} when there are none)."""
  config_lib.validate(config)
  if not config.variants:
    return {"": config}
  base = config_lib.without_variants(config)
  return {name: config_lib.apply_overrides(base, dict(overrides))
          for name, overrides in config.variants.items()}


def run(config: ml_collections.ConfigDict, workdir: str, mode: str = "train", *,
        overwrite: bool = False) -> dict[str, dict[str, float]]:
  """Trains or evaluates every variant into workdir/<name>; returns name -> final metrics."""
  runs = expand(config)
  for cfg in runs.values():  # all variants valid before any workdir is touched
    trainer.Experiment.build(cfg)
  results = {}
  for name, cfg in runs.items():
    path = os.path.join(workdir, name) if name else workdir
    if mode == "train":
      results[name] = trainer.train(cfg, path, overwrite=overwrite, prefix=f"[{name}] " if name else "")
    else:
      results[name] = trainer.evaluate(cfg, path)
  if mode == "train" and len(runs) > 1:
    png = report.plot_comparison({n: os.path.join(workdir, n) for n in runs},
                                 os.path.join(workdir, "comparison.png"))
    print(f"comparison plot: {png}", flush=True)
  return results
