"""The README's Python examples run as written and do what their comments say."""

import os
import re
import subprocess
import sys
import textwrap

import pytest

from helpers import REPO

pytestmark = pytest.mark.slow  # end-to-end: `pytest -m slow`

CHECKS = textwrap.dedent("""
    assert per_loop.shape == (8, 16, 22, 1) and deeper.shape == (16, 22, 1)
    assert top.shape == (5,) and bool((top[:-1] >= top[1:]).all())

    reverse = tasks.get(tasks.default_config("reverse", length=4))
    batch = reverse.sample(jax.random.key(0), 2)
    x = batch["inputs"][:, :4]
    assert (batch["targets"][:, 4:] == x[:, ::-1]).all() and batch["weights"][:, 4:].all()
    graphdef, params = models.build(model, reverse, seed=0)
    logits = models.apply(graphdef, params, batch["inputs"], 2)
    assert logits.shape == (2, 8, 4) and bool(jax.numpy.isfinite(reverse.loss(logits, batch)))
    print("ok")
""")


def test_readme_python_examples_run():
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
  assert len(blocks) == 2  # "Use it from Python" and "Add a task"
  script = "\n".join(blocks) + CHECKS
  result = subprocess.run([sys.executable, "-c", script], cwd=REPO, text=True,
                          capture_output=True, timeout=300, env=dict(os.environ))
  assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
