"""Tables and plots of docs/where_depth_goes.md from trained runs, one workdir per seed.

  python docs/scripts/depth_report.py ilr     runs/ilr_s0 runs/ilr_s1 runs/ilr_s2
  python docs/scripts/depth_report.py padded  runs/pwp_s0 runs/pwp_s1 runs/pwp_s2
  python docs/scripts/depth_report.py relay   runs/relay_s0 ...   (after --mode=eval)
  python docs/scripts/depth_report.py cot     runs/cot_s0 ...     (after --mode=eval)

Each workdir is one seed's run of configs/ilr.py, configs/padded_word_problem.py,
configs/relay.py or configs/cot_vs_loop.py (a folder per variant). Reads the files the runs
wrote (summary.json, eval.json, loop_sweep.json, probes.json, cot_eval.json), writes one JSON
row per (seed, variant, measurement) to docs/data/<kind>.jsonl and a plot to
docs/img/<kind>.png (--out-dir to change the folder), and prints markdown tables of the mean
and the spread (min-max) over seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KINDS = ("ilr", "padded", "relay", "cot")


def _load(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def _variants(workdir: str) -> list[str]:
  return sorted(d for d in os.listdir(workdir) if os.path.isdir(os.path.join(workdir, d)))


def _stat(values: list[float], digits: int = 3) -> str:
  """'mean (min-max)' over seeds."""
  v = np.asarray(values, float)
  if len(v) == 1:
    return f"{v[0]:.{digits}f}"
  return f"{v.mean():.{digits}f} ({v.min():.{digits}f}-{v.max():.{digits}f})"


def ilr_rows(workdirs: list[str]) -> list[dict]:
  rows = []
  for seed, workdir in enumerate(workdirs):
    for variant in _variants(workdir):
      summary = _load(os.path.join(workdir, variant, "summary.json"))
      config = _load(os.path.join(workdir, variant, "config.json"))
      rows.append({"seed": seed, "variant": variant,
                   "layer_loops": config["model"]["layer_loops"],
                   "bits_per_byte": summary["eval/bits_per_token"],
                   "train_seconds": summary["train_seconds"]})
  return rows


def padded_rows(workdirs: list[str]) -> list[dict]:
  rows = []
  for seed, workdir in enumerate(workdirs):
    for variant in _variants(workdir):
      regime, n = variant.rsplit("_n", 1)
      summary = _load(os.path.join(workdir, variant, "summary.json"))
      config = _load(os.path.join(workdir, variant, "config.json"))
      rows.append({"seed": seed, "regime": regime, "length": int(n),
                   "num_layers": config["model"]["num_layers"],
                   "num_loops": config["model"]["num_loops"],
                   "pads": config["task"]["pad_factor"] * int(n),
                   "answer_accuracy": summary["eval/sequence_accuracy"]})
  return rows


def needed_loops(task: dict) -> int:
  """Loops the word problem's scan needs: n steps (linear) or ceil(log2 n) (doubling)."""
  n = task["length"]
  return n if task.get("scan", "doubling") == "linear" else max(1, math.ceil(math.log2(n)))


def relay_rows(workdirs: list[str]) -> list[dict]:
  rows = []
  for seed, workdir in enumerate(workdirs):
    for variant in _variants(workdir):
      sweep = _load(os.path.join(workdir, variant, "loop_sweep.json"))
      for setting in sweep["order"]:
        entry = sweep["settings"][setting]
        n = entry["task"]["length"]
        need = needed_loops(entry["task"])
        rows.append({"seed": seed, "variant": variant, "length": n, "kind": "sweep",
                     "loops": sweep["loops"],
                     "sequence_accuracy": entry["sequence_accuracy"],
                     "token_accuracy": entry["token_accuracy"],
                     "needed_loops": need,
                     "token_accuracy_at_needed_loops": entry["token_accuracy"][need - 1],
                     "sequence_accuracy_at_needed_loops": entry["sequence_accuracy"][need - 1],
                     "best_sequence_accuracy": max(entry["sequence_accuracy"])})
      probes = _load(os.path.join(workdir, variant, "probes.json"))
      rows.append({"seed": seed, "variant": variant, "kind": "probes", "loops": probes["loops"],
                   "steps_r2": probes["targets"]["steps"]["r2"],
                   "answer_r2": probes["targets"]["answer"]["r2"]})
  return rows


def cot_rows(workdirs: list[str]) -> list[dict]:
  rows = []
  for seed, workdir in enumerate(workdirs):
    for variant in _variants(workdir):
      run = os.path.join(workdir, variant)
      config = _load(os.path.join(run, "config.json"))
      ev = _load(os.path.join(run, "eval.json"))
      layers, loops = config["model"]["num_layers"], config["model"]["num_loops"]
      row = {"seed": seed, "variant": variant, "num_layers": layers, "num_loops": loops,
             "teacher_forced_value_accuracy": ev["eval/accuracy"]}
      if os.path.exists(os.path.join(run, "cot_eval.json")):
        cot = _load(os.path.join(run, "cot_eval.json"))
        row |= {"value_accuracy": cot["value_accuracy"], "answer_accuracy": cot["answer_accuracy"],
                "sequential_passes": cot["decode_steps"],
                "token_layer_passes": cot["layer_passes"]}
      else:  # one forward pass of `loops` loops over the whole description
        t = config["task"]
        seq_len = 4 * t["width"] * (t["depth"] + 1) * (1 + t["pad_factor"])
        row |= {"value_accuracy": ev["eval/accuracy"],
                "answer_accuracy": ev["eval/sequence_accuracy"], "sequential_passes": 1,
                "token_layer_passes": seq_len * layers * loops}
      rows.append(row)
  return rows


def _group(rows, *keys):
  out: dict = {}
  for r in rows:
    out.setdefault(tuple(r[k] for k in keys), []).append(r)
  return out


def ilr_table(rows) -> str:
  lines = ["| variant | layer_loops | held-out bits/byte |", "|---|---|---|"]
  for (variant,), group in sorted(_group(rows, "variant").items()):
    lines.append(f"| {variant} | {tuple(group[0]['layer_loops'])} | "
                 f"{_stat([r['bits_per_byte'] for r in group])} |")
  return "\n".join(lines)


def padded_table(rows) -> str:
  lengths = sorted({r["length"] for r in rows})
  lines = ["| regime | " + " | ".join(f"n = {n}" for n in lengths) + " |",
           "|---|" + "---|" * len(lengths)]
  for regime in ("depth", "loops", "pad", "log", "log_pad"):
    cells = []
    for n in lengths:
      group = [r for r in rows if r["regime"] == regime and r["length"] == n]
      if not group:
        cells.append("-")
        continue
      shape = f"k={group[0]['num_layers']} L={group[0]['num_loops']} p={group[0]['pads']}"
      cells.append(f"{_stat([r['answer_accuracy'] for r in group])} [{shape}]")
    lines.append(f"| {regime} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def relay_table(rows) -> str:
  sweeps = [r for r in rows if r["kind"] == "sweep"]
  lengths = sorted({r["length"] for r in sweeps})
  need = {r["length"]: r["needed_loops"] for r in sweeps}
  lines = ["| variant | " + " | ".join(f"n = {n} (L = {need[n]})" for n in lengths) + " |",
           "|---|" + "---|" * len(lengths)]
  for variant in ("relay", "final"):
    cells = []
    for n in lengths:
      group = [r for r in sweeps if r["variant"] == variant and r["length"] == n]
      cells.append(f"{_stat([r['sequence_accuracy_at_needed_loops'] for r in group])} / "
                   f"{_stat([r['token_accuracy_at_needed_loops'] for r in group])}")
    lines.append(f"| {variant} | " + " | ".join(cells) + " |")
  probes = [r for r in rows if r["kind"] == "probes"]
  lines += ["", "| variant | step | held-out R² after loop 0, 1, 2, ... (mean over seeds) |",
            "|---|---|---|"]
  for variant in ("relay", "final"):
    group = [r for r in probes if r["variant"] == variant]
    mean = np.mean([r["steps_r2"] for r in group], axis=0)
    for s, row in enumerate(mean):
      lines.append(f"| {variant} | {s + 1} | {', '.join(f'{x:.2f}' for x in row)} |")
  return "\n".join(lines)


def cot_table(rows) -> str:
  lines = ["| variant | k x L | answer accuracy (all values) | value accuracy | "
           "teacher-forced value accuracy | sequential passes | token-layer passes |",
           "|---|---|---|---|---|---|---|"]
  for (variant,), group in sorted(_group(rows, "variant").items()):
    g = group[0]
    lines.append(f"| {variant} | {g['num_layers']} x {g['num_loops']} | "
                 f"{_stat([r['answer_accuracy'] for r in group])} | "
                 f"{_stat([r['value_accuracy'] for r in group])} | "
                 f"{_stat([r['teacher_forced_value_accuracy'] for r in group])} | "
                 f"{g['sequential_passes']} | {g['token_layer_passes']} |")
  return "\n".join(lines)


def plot(kind: str, rows: list[dict], path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  if kind == "relay":
    sweeps = [r for r in rows if r["kind"] == "sweep"]
    lengths = sorted({r["length"] for r in sweeps})
    fig, axes = plt.subplots(1, len(lengths) + 1, figsize=(3.6 * (len(lengths) + 1), 3.0))
    for ax, n in zip(axes, lengths):
      for variant, style in (("relay", "-"), ("final", "--")):
        group = [r for r in sweeps if r["variant"] == variant and r["length"] == n]
        acc = np.asarray([r["sequence_accuracy"] for r in group])
        ax.plot(group[0]["loops"], acc.mean(0), style, label=variant)
        ax.fill_between(group[0]["loops"], acc.min(0), acc.max(0), alpha=0.2)
      ax.axvline(group[0]["needed_loops"], color="k", ls=":", lw=0.8)
      ax.set_title(f"n = {n} (trained at {lengths[0]})", fontsize=9)
      ax.set_xlabel("loops")
      ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("sequence accuracy")
    axes[0].legend(fontsize=7)
    group = [r for r in rows if r["kind"] == "probes" and r["variant"] == "relay"]
    mean = np.mean([r["steps_r2"] for r in group], axis=0)
    image = axes[-1].imshow(np.clip(mean, 0, 1), vmin=0, vmax=1, aspect="auto", cmap="viridis")
    axes[-1].set_xlabel("loop")
    axes[-1].set_ylabel("scan step")
    axes[-1].set_yticks(range(len(mean)), [str(s + 1) for s in range(len(mean))])
    axes[-1].set_title("relay: probe R² of each step", fontsize=9)
    fig.colorbar(image, ax=axes[-1])
  else:
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    if kind == "padded":
      lengths = sorted({r["length"] for r in rows})
      for regime in ("depth", "loops", "pad", "log", "log_pad"):
        acc = [[r["answer_accuracy"] for r in rows if r["regime"] == regime and r["length"] == n]
               for n in lengths]
        if not all(acc):
          continue
        mean = [np.mean(a) for a in acc]
        err = [[m - min(a) for m, a in zip(mean, acc)], [max(a) - m for m, a in zip(mean, acc)]]
        ax.errorbar(lengths, mean, yerr=err, marker="o", capsize=3, label=regime)
      ax.set_xscale("log", base=2)
      ax.set_xticks(lengths, [str(n) for n in lengths])
      ax.set_xlabel("word length n")
      ax.set_ylabel("answer accuracy")
      ax.set_ylim(-0.02, 1.02)
    else:
      key = "bits_per_byte" if kind == "ilr" else "value_accuracy"
      groups = sorted(_group(rows, "variant").items())
      values = [[r[key] for r in g] for _, g in groups]
      ax.bar(range(len(groups)), [np.mean(v) for v in values],
             yerr=[[np.mean(v) - min(v) for v in values], [max(v) - np.mean(v) for v in values]],
             capsize=4, color="0.6")
      for i, v in enumerate(values):
        ax.plot([i] * len(v), v, "k.", ms=4)
      if kind == "cot":  # what the CoT model gets when fed the true values instead of its own
        forced = [np.mean([r["teacher_forced_value_accuracy"] for r in g]) for _, g in groups]
        ax.plot(range(len(groups)), forced, "rx", ms=8, label="teacher-forced")
        ax.legend(fontsize=7)
      ax.set_xticks(range(len(groups)), [name for (name,), _ in groups])
      ax.set_ylabel("held-out bits per byte" if kind == "ilr" else "value accuracy")
      if kind == "ilr":
        ax.set_ylim(min(min(v) for v in values) - 0.02, max(max(v) for v in values) + 0.02)
    if kind == "padded":
      ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("kind", choices=KINDS)
  parser.add_argument("workdirs", nargs="+", help="one workdir per seed")
  parser.add_argument("--out-dir", default=os.path.join(ROOT, "docs"),
                      help="writes data/<name>.jsonl and img/<name>.png under it")
  parser.add_argument("--name", default="", help="file name stem (default: from the kind)")
  args = parser.parse_args(argv)
  for workdir in args.workdirs:
    if not os.path.isdir(workdir):
      parser.error(f"{workdir} is not a folder (one workdir per seed).")
  rows = {"ilr": ilr_rows, "padded": padded_rows, "relay": relay_rows,
          "cot": cot_rows}[args.kind](args.workdirs)
  name = args.name or {"padded": "padded_word_problem", "cot": "cot_vs_loop"}.get(args.kind,
                                                                                  args.kind)
  os.makedirs(os.path.join(args.out_dir, "data"), exist_ok=True)
  os.makedirs(os.path.join(args.out_dir, "img"), exist_ok=True)
  with open(os.path.join(args.out_dir, "data", f"{name}.jsonl"), "w") as f:
    for row in rows:
      f.write(json.dumps(row, sort_keys=True) + "\n")
  plot(args.kind, rows, os.path.join(args.out_dir, "img", f"{name}.png"))
  table = {"ilr": ilr_table, "padded": padded_table, "relay": relay_table,
           "cot": cot_table}[args.kind](rows)
  print(table)
  return 0


if __name__ == "__main__":
  sys.exit(main())
