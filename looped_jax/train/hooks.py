"""What the train loop calls besides the train step: analyses given to it by the caller.

A hook is any object with

  start(exp, workdir, step, primary) -> None
      once, before the first step: `exp` is the run's build.Experiment, `step` the step the
      run starts or resumes from (a hook that appends to a log cuts it back to this step),
      `primary` whether this process writes files;
  due(step, last) -> bool
      after each update: whether to run at this step (`last`: the run's final step);
  __call__(step, params) -> dict[str, float]
      runs the analysis on the current params; the scalars go to metrics.jsonl and
      TensorBoard (their time is not counted as training time);
  close() -> None
      at the end of the run, also after a failure.

The trainer imports no analysis: experiment.py (the layer above) decides which hooks a config
asks for, e.g. analysis/landscape_tracking.SpectraHook for hessian.every > 0.
"""

from __future__ import annotations

from typing import Any, Protocol


class Hook(Protocol):

  def start(self, exp: Any, workdir: str, step: int, primary: bool) -> None:
    ...

  def due(self, step: int, last: bool) -> bool:
    ...

  def __call__(self, step: int, params: Any) -> dict[str, float]:
    ...

  def close(self) -> None:
    ...
