"""Settings resolution and failure classification (the multi-process runs themselves:
tests/test_distributed.py)."""

from looped_jax import distributed


def test_flags_win_over_the_environment(monkeypatch):
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("JAX_PROCESS_ID", "3")
  from_env = distributed.Settings().resolved()
  assert (from_env.coordinator_address, from_env.num_processes, from_env.process_id) == (
      "10.0.0.1:1234", 4, 3)
  flags = distributed.Settings("127.0.0.1:5", num_processes=2, process_id=0).resolved()
  assert (flags.coordinator_address, flags.num_processes, flags.process_id) == (
      "127.0.0.1:5", 2, 0)


def test_nothing_set_is_left_to_cluster_detection(monkeypatch):
  for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    monkeypatch.delenv(name, raising=False)
  s = distributed.Settings().resolved()
  assert (s.coordinator_address, s.num_processes, s.process_id) == (None, None, None)


def test_one_process_never_reports_a_peer_failure():
  assert distributed.process_count() == 1 and distributed.is_primary()
  assert not distributed.is_peer_failure(ValueError("Gloo all-reduce failed: connection reset"))
  distributed.barrier("no-op with one process")
