"""Runs the command line once per argument list, each in a fork of one interpreter.

`python tests/cli_forks.py < rows.json` with rows = [[arg, ...], ...] prints one JSON list of
{"status", "stdout", "stderr"}, as `python -m looped_jax.main ARGS` would give for each row.
Every row gets its own process (absl's flag registry and JAX's backend start fresh in each)
but the imports, most of a short CLI run's time, are paid once.
"""

import json
import os
import sys
import tempfile
import traceback

from looped_jax import main
from looped_jax.train import experiment  # noqa: F401 - main imports it lazily; once, here

# Imports only: JAX's backend, which starts threads, starts in each child, after the fork.


def run_forked(argv: list[str], folder: str) -> dict:
  out, err = (os.path.join(folder, name) for name in ("stdout", "stderr"))
  pid = os.fork()
  if pid == 0:  # the child: the command line with its own stdout and stderr files
    code = 1
    try:
      for fd, path in ((1, out), (2, err)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
      sys.argv = ["looped_jax.main", *argv]
      main.run()
      code = 0
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # as the interpreter would: the traceback on stderr, status 1
      traceback.print_exc()
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(code)  # no parent's atexit handlers in the child
  _, status = os.waitpid(pid, 0)
  with open(out) as o, open(err) as e:
    return {"status": os.waitstatus_to_exitcode(status), "stdout": o.read(), "stderr": e.read()}


if __name__ == "__main__":
  rows = json.load(sys.stdin)
  with tempfile.TemporaryDirectory() as folder:
    results = [run_forked(argv, folder) for argv in rows]
  print(json.dumps(results))
