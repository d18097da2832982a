"""benchmarks/decode_speed.py runs end to end at a tiny size and reports consistent numbers:
the cache sizes are the exact multiples each strategy implies."""

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO


@pytest.mark.slow
def test_decode_benchmark_reports_every_model_and_exact_cache_ratios(tmp_path):
  save = str(tmp_path / "decode")
  out = subprocess.run(
      [sys.executable, os.path.join(REPO, "benchmarks", "decode_speed.py"), "--d_model=16",
       "--heads=2", "--layers=1", "--loops=2,4", "--tokens=4", "--rounds=1", f"--save={save}"],
      cwd=REPO, text=True, capture_output=True, timeout=600, env=dict(os.environ))
  assert out.returncode == 0, out.stderr[-2000:]
  result = json.load(open(save + ".json"))["results"]
  assert set(result) == {"standard"} | {
      f"{kind}:{n}" for n in (2, 4) for kind in ("deep", "plt", "rows")} | {
      f"looped:{n}/{c}" for n in (2, 4) for c in ("per_loop", "first_loop", "every_k")}
  assert result["standard"]["latency_vs_standard"] == 1.0
  for n in (2, 4):
    cache = {name: r["cache_vs_standard"] for name, r in result.items()}
    assert cache[f"looped:{n}/per_loop"] == n and cache[f"deep:{n}"] == n
    assert cache[f"looped:{n}/first_loop"] == 1 and cache[f"looped:{n}/every_k"] == 2
    assert cache[f"plt:{n}"] == 1 and result[f"plt:{n}"]["fixed_cache_bytes"] > 0
  for name, r in result.items():
    rows = int(name[5:]) if name.startswith("rows:") else 1
    assert r["tokens_per_second"] == pytest.approx(rows / r["seconds_per_token"])
