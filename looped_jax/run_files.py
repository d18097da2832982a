"""The names of everything a run writes into its folder (one owner for each name), and how
its JSON files are written (atomically).

No jax here: workdir rules, the report and the writers all import these names.
"""

import os

CONFIG = "config.json"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
METRICS = "metrics.jsonl"          # {"step", scalar...} per log step (train/metrics.py)
SPECTRA = "spectra.jsonl"          # {"step", "loops", "subset", "eigenvalues"} (hessian.track)
SUMMARY = "summary.json"           # the end of a training run: steps, time, final eval
EVAL = "eval.json"                 # --mode=eval's metrics
HESSIAN = "hessian.json"           # --mode=hessian's spectrum
GENERATE = "generate.json"         # --mode=generate's text and loops per token
ICL_REPORT = "icl_report.json"     # error vs k and vs loops with baselines (analysis/icl_report)
LOOP_SWEEP = "loop_sweep.json"     # accuracy vs test-time loops (analysis/loop_sweep)
PROBES = "probes.json"             # linear probes of the loop states (analysis/probes)
COT_EVAL = "cot_eval.json"         # decoded chain-of-thought accuracy (analysis/cot_eval)

# Entries the trainer, --mode=eval/hessian and the reports write into a run's folder
# (glob patterns; `--overwrite` deletes a folder only when every entry matches one).
RUN_ENTRIES = (CONFIG, CHECKPOINTS, TENSORBOARD, METRICS, SPECTRA, SUMMARY, EVAL, HESSIAN, GENERATE,
               ICL_REPORT, LOOP_SWEEP, "loop_sweep.png", PROBES, "probes.png", COT_EVAL,
               "error_vs_k*.png", "error_vs_loops.png", "spectra.png", "*.json.tmp")
# Entries written beside the variant folders of a config with variants.
VARIANTS_ENTRIES = ("comparison.png", "spectra.png", "error_vs_k.png", "error_vs_loops.png")


def write_atomically(path: str, text: str) -> None:
  """Writes `text` to `path` so that a crash leaves the old file or the new one, never half."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
