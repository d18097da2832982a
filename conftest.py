"""Test-wide setup, before jax is imported anywhere: 8 simulated CPU devices, and one
persistent XLA compilation cache per test run.

The cache is shared by the run's xdist workers and the subprocesses they start (the CLI and
multi-process tests): most of a tiny run's time is compiling programs that other tests have
compiled already. A fresh folder per run, so nothing carries over between runs.
"""
import os
import tempfile

os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
  os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(tempfile.gettempdir(),
                                                         f"looped_jax_tests_{_run}")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
