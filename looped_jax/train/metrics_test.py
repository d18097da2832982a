"""Console progress: the ETA line."""

import io

from looped_jax.train import metrics


def _line(monkeypatch, total, step, elapsed, **kwargs) -> str:
  clock = iter([0.0, elapsed])
  monkeypatch.setattr(metrics.time, "perf_counter", lambda: next(clock))
  stream = io.StringIO()
  metrics.Progress(total, 0, stream=stream).update(step, {"loss": 1.0}, **kwargs)
  return stream.getvalue()


def test_eta_past_a_day_keeps_its_hours(monkeypatch):
  # 100 steps in 200 s, 499,900 to go: 999,800 s = 277 h 43 min 20 s (strftime would say 13:43:20)
  assert "| 0.5 steps/s | ETA 277:43:20" in _line(monkeypatch, 500_000, 100, 200.0)


def test_eta_is_the_time_budget_when_that_ends_first(monkeypatch):
  assert "ETA 0:01:30" in _line(monkeypatch, 500_000, 100, 200.0, seconds_left=90.0)
  assert "ETA 0:00:00" in _line(monkeypatch, 500_000, 100, 200.0, seconds_left=-5.0)
  assert "ETA 0:03:20" in _line(monkeypatch, 200, 100, 200.0, seconds_left=1e6)  # steps first
