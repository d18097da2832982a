"""Runs a config in a mode: one run, or several variants side by side and their comparison plots.

The top of the flow config -> experiment -> train loop -> step: it expands variants, gives the
train loop the analysis hooks a config asks for, and runs --mode=eval (eval metrics, the ICL
report, loop sweeps) and --mode=hessian on a trained workdir.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from looped_jax import config as config_lib
from looped_jax import distributed, errors, run_files
from looped_jax.analysis import cot_eval, icl_report, landscape_tracking, loop_sweep, probes
from looped_jax.analysis import report
from looped_jax.errors import ConfigError
from looped_jax.models import decode
from looped_jax.train import build, sharding, trainer
from looped_jax.train import workdir as workdir_lib


def expand(config: ml_collections.ConfigDict,
           overrides: Sequence[str] = ()) -> dict[str, ml_collections.ConfigDict]:
  """name -> the config of each variant ({"": config} when there are none), with
  model.loops_per_log2 resolved into model.num_loops (config.resolve_loops).

  `overrides` are the keys set on the command line: they apply to every variant, so a
  variant that sets one of them itself is refused (the override would be silently lost).
  """
  config_lib.validate(config)
  if not config.variants:
    return {"": config_lib.resolve_loops(config)}
  base = config_lib.without_variants(config)
  for key in overrides:
    _check_no_variant_sets(key, config.variants)
  return {name: config_lib.resolve_loops(config_lib.apply_overrides(base, dict(variant)))
          for name, variant in config.variants.items()}


def _check_no_variant_sets(key: str, variants: ml_collections.ConfigDict) -> None:
  """Refuses a command-line key that a variant sets itself, naming every such variant."""
  clashes = {}
  for name, variant in variants.items():
    fixed = config_lib.flatten(variant)
    clash = next((f for f in fixed if f == key or f.startswith(key + ".")
                  or key.startswith(f + ".")), None)
    if clash is not None:
      clashes[name] = clash
  if clashes:
    name, clash = next(iter(clashes.items()))
    which = "variant" if len(clashes) == 1 else "variants"
    raise ConfigError(
        f"--config.{key} cannot apply: {clash} is set by {which} "
        f"{', '.join(map(repr, clashes))}; drop the override, or set it per variant, e.g. "
        f"--config.variants.{name}.{clash}=VALUE.")


def run(config: ml_collections.ConfigDict, workdir: str, mode: str = "train", *,
        overwrite: bool = False, overrides: Sequence[str] = ()) -> dict[str, dict[str, float]]:
  """Trains, evaluates (eval.json) or takes the Hessian spectrum (hessian.json) of every
  variant in workdir/<name>; returns name -> final metrics or spectrum.

  A file that cannot be written (a full disk) raises RunStopped: checkpoints are saved
  atomically, so the last good one is kept and rerunning the command resumes from it.
  """
  try:
    return _run(config, workdir, mode, overwrite, overrides)
  except OSError as e:
    raise errors.RunStopped(
        f"writing in {workdir} failed ({_os_reason(e)}); the run stopped and its last "
        "checkpoint is kept: free disk space or fix the folder, then rerun the same command "
        "to resume.") from None


def _os_reason(error: OSError) -> str:
  where = f" ({error.filename})" if error.filename else ""
  return f"{error.strerror or error}{where}"


def _run(config: ml_collections.ConfigDict, workdir: str, mode: str, overwrite: bool,
         overrides: Sequence[str]) -> dict[str, dict[str, float]]:
  errors.check_choice("--mode", mode, config_lib.MODES)
  workdir_lib.check_usable(workdir)
  runs = expand(config, overrides)
  host_devices = {cfg.mesh.host_devices for cfg in runs.values()}
  if len(host_devices) > 1:
    raise ConfigError(f"variants set mesh.host_devices to {sorted(host_devices)}; one process "
                      "has one device count, so give every variant the same value.")
  sharding.use_host_devices(host_devices.pop())
  for cfg in runs.values():  # all variants valid before any workdir is touched
    build.Experiment.build(cfg)
  if mode != "train":  # and every variant trained, before any result is written
    for name in runs:
      workdir_lib.check_has_run(os.path.join(workdir, name) if name else workdir, mode)
  results = {}
  for name, cfg in runs.items():
    path = os.path.join(workdir, name) if name else workdir
    if mode == "train":
      results[name] = trainer.train(cfg, path, overwrite=overwrite,
                                    prefix=f"[{name}] " if name else "", hooks=train_hooks(cfg))
    elif mode == "eval":
      results[name] = evaluate(cfg, path)
    elif mode == "generate":
      results[name] = generate(cfg, path)
      if distributed.is_primary():
        print(f"{name + ': ' if name else ''}{_generated_text(results[name])}", flush=True)
    else:
      results[name] = hessian(cfg, path)
      if distributed.is_primary():
        print(f"{name or 'run'}: {_spectrum_line(results[name])}", flush=True)
  dirs = {n: os.path.join(workdir, n) for n in runs} if len(runs) > 1 else {"": workdir}
  if not distributed.is_primary():  # plots and messages: process 0 only
    return results
  if mode == "train" and len(runs) > 1:
    png = report.plot_comparison(dirs, os.path.join(workdir, "comparison.png"))
    if png:
      print(f"comparison plot: {png}", flush=True)
  if mode == "eval" and len(runs) > 1:
    for png in icl_report.plot_variants(dirs, workdir):
      print(f"ICL variants plot: {png}", flush=True)
  if mode == "train" and report.has_spectra(dirs):
    png = report.plot_spectra(dirs, os.path.join(workdir, "spectra.png"))
    print(f"spectra plot: {png}", flush=True)
  return results


def train_hooks(config: ml_collections.ConfigDict) -> list:
  """The analyses a config asks the train loop to run (train/hooks.py)."""
  return [landscape_tracking.SpectraHook()] if config.hessian.every else []


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Evaluates the latest checkpoint in `workdir`; writes eval.json there."""
  exp = build.Experiment.build(config)
  latest, state = trainer.restore_latest(exp, workdir, "eval")
  params = exp.eval_params(state)  # the weight average when train.ema is on
  result = {"step": latest} | exp.evaluate(params)
  if icl_report.applies(exp.task):  # error vs k / vs loops with baselines, JSON + PNG
    result |= icl_report.write(exp, params, workdir)
  if distributed.is_primary():
    run_files.write_atomically(os.path.join(workdir, run_files.EVAL),
                                 json.dumps(result, indent=2, sort_keys=True))
  loop_sweep.write(exp, params, workdir)  # token tasks with eval.loop_sweep on
  probes.write(exp, params, workdir)  # eval.probes on
  cot_eval.write(exp, params, workdir)  # chain-of-thought tasks: greedy decoding
  return result


def hessian(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """The Hessian spectrum (config.hessian) of the latest checkpoint in `workdir`.

  Writes hessian.json there: step, loops, subset, method, paths, all computed eigenvalues
  (ascending) and their river/valley metrics. Runs whatever hessian.every is.
  """
  exp = build.Experiment.build(config)
  latest, state = trainer.restore_latest(exp, workdir, "hessian")
  result = {"step": latest} | landscape_tracking.Probe(exp).spectrum(state["params"])
  if distributed.is_primary():
    run_files.write_atomically(os.path.join(workdir, run_files.HESSIAN),
                                 json.dumps(result, indent=1, sort_keys=True))
  return result


def generate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Continues config.generate.prompt from the latest checkpoint (models/decode.py).

  Writes generate.json: step, settings, prompt and generated token ids and text (with the
  task's tokenizer, if it has one), the loops each generated token ran and their mean.
  """
  exp = build.Experiment.build(config)
  g = config.generate
  tokenizer = getattr(exp.task, "get_tokenizer", None)
  if g.prompt and tokenizer is None:
    raise ConfigError(f"generate.prompt is text, but task {exp.task.name!r} has no tokenizer; "
                      "leave it empty to continue a held-out sequence.")
  latest, state = trainer.restore_latest(exp, workdir, "generate")
  params = exp.eval_params(state)
  tokenizer = tokenizer() if tokenizer is not None else None
  if g.prompt:
    prompt = jnp.asarray([tokenizer.encode(g.prompt)], jnp.int32)
  else:
    batch = exp.task.held_out().sample(jax.random.key(config.eval_seed), 1)
    prompt = batch["inputs"][:, :32]
  loops = g.num_loops or config.model.num_loops
  out = decode.generate(
      exp.graphdef, params, prompt, jax.random.key(g.seed), max_new_tokens=g.max_new_tokens,
      num_loops=loops, cache_spec=decode.CacheSpec(g.cache, g.share_every),
      exit_spec=decode.ExitSpec(g.exit, g.exit_threshold, g.min_loops),
      temperature=g.temperature, top_k=g.top_k)
  prompt_ids = [int(i) for i in prompt[0]]
  tokens = [int(i) for i in out.tokens[0]]
  # loops[i]: the token fed in at position i; the generated tokens are fed from P on
  generated_loops = [int(n) for n in out.loops[0, len(prompt_ids) - 1:]]
  result = {"step": latest, "num_loops": loops, "cache": g.cache, "exit": g.exit,
            "exit_threshold": g.exit_threshold, "temperature": g.temperature,
            "prompt_tokens": prompt_ids, "tokens": tokens, "loops_per_token": generated_loops,
            "mean_loops": sum(generated_loops) / len(generated_loops)}
  if tokenizer is not None:
    result |= {"prompt": tokenizer.decode(prompt_ids), "text": tokenizer.decode(tokens)}
  if distributed.is_primary():
    run_files.write_atomically(os.path.join(workdir, run_files.GENERATE),
                               json.dumps(result, indent=1))
  return result


def _generated_text(result: dict[str, Any]) -> str:
  body = (f"{result['prompt']}[{result['text']}]" if "text" in result
          else f"{result['prompt_tokens']} -> {result['tokens']}")
  return (f"{body}\n(step {result['step']}, {result['num_loops']} loops, {result['cache']} "
          f"cache, exit {result['exit']}: {result['mean_loops']:.2f} loops per token) -> "
          f"{run_files.GENERATE}")


def _spectrum_line(result: dict) -> str:
  m = result["metrics"]
  kappa = {k: v for k, v in m.items() if k.startswith("kappa_valley@")}
  shown = " ".join(f"{k} {v:.4g}" for k, v in sorted(kappa.items()))
  return (f"step {result['step']} loops {result['loops']}: {len(result['eigenvalues'])} "
          f"eigenvalues, lambda_max {m['lambda_max']:.4g}, {shown} -> hessian.json")
