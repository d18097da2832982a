"""Host-side bookkeeping of a SHIFT run inside the trainer (docs/papers.md, "Gong et al.";
"Pitfalls" 7).

`ShiftRun` holds what the optimizer state does not: the active criterion with its running
state, one record per switch (step, eval metric before and after, recovery) and the
seconds spent in each stage. It round-trips through JSON (`to_dict` / `from_dict`) so that
the trainer stores it in the checkpoint's `meta` and a resumed run switches, and reports,
exactly as an uninterrupted one.

Dip and recovery use DIP_METRIC evaluated at the loop count the model trains with at the
time (stage k-1's before the switch into stage k, stage k's after), at eval steps only:
  dip = before - first value after (> 0: a drop);
  recovery_steps = 0 without a dip, else (first eval step with value >= before) - switch step.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from looped_jax import shift_criteria
from looped_jax.train import shift

DIP_METRIC = "accuracy"  # eval metric name (task.metrics key) behind dip and recovery


@dataclasses.dataclass
class ShiftRun:
  """Stage, criterion and switch log of one run; mutated in place by the trainer."""

  schedule: shift.ShiftSchedule
  stage: int = 0
  criterion: shift_criteria.Criterion | None = None
  # One per switch: {"stage", "step", "before", "after", "recovered_at"} (None: not yet).
  switches: list[dict[str, Any]] = dataclasses.field(default_factory=list)
  seconds: list[float] = dataclasses.field(default_factory=list)  # per stage, training only
  last_value: float | None = None  # latest DIP_METRIC at the active stage's loop count

  @classmethod
  def new(cls, schedule: shift.ShiftSchedule) -> ShiftRun:
    return cls(schedule, criterion=schedule.criteria[0],
               seconds=[0.0] * schedule.num_stages)

  @classmethod
  def from_dict(cls, schedule: shift.ShiftSchedule, d: dict[str, Any]) -> ShiftRun:
    crit = d["criterion"]
    return cls(schedule, stage=int(d["stage"]),
               criterion=None if crit is None else shift_criteria.from_dict(crit),
               switches=[dict(s) for s in d["switches"]], seconds=list(d["seconds"]),
               last_value=d["last_value"])

  def to_dict(self) -> dict[str, Any]:
    return {"stage": self.stage, "switches": self.switches, "seconds": self.seconds,
            "last_value": self.last_value,
            "criterion": None if self.criterion is None else self.criterion.to_dict()}

  @property
  def loops(self) -> int:
    """Loop count of the active stage's train step."""
    return self.schedule.loops[self.stage]

  def observe(self, step: int, signals: dict[str, float]) -> bool:
    """Feeds the criterion; True when the run should switch to the next stage now."""
    if self.criterion is None:
      return False
    self.criterion, fire = self.criterion.update(step, signals)
    return fire

  def switch(self, step: int, opt_state: shift.MultiStageState) -> shift.MultiStageState:
    """Moves to the next stage: optimizer state, criterion and the switch record."""
    self.stage += 1
    last = self.stage + 1 == self.schedule.num_stages
    self.criterion = None if last else self.schedule.criteria[self.stage]
    self.switches.append({"stage": self.stage, "step": step, "before": self.last_value,
                          "after": None, "recovered_at": None})
    self.last_value = None  # values at the new loop count only from now on
    return shift.switch_stage(opt_state, self.stage, moments=self.schedule.moments,
                              lr=self.schedule.lr)

  def on_eval(self, step: int, value: float) -> None:
    """Records DIP_METRIC (at the active stage's loop count) measured at `step`."""
    for s in self.switches:
      if s["before"] is None:
        continue
      if s["after"] is None:
        s["after"] = value
      if s["recovered_at"] is None and value >= s["before"]:
        s["recovered_at"] = step
    self.last_value = value

  def end_metrics(self) -> dict[str, float]:
    """`shift/...` results per switch into stage k (`/k`) and `perf/shift/...` seconds."""
    out: dict[str, float] = {}
    for s in self.switches:
      k = s["stage"]
      out[f"shift/switch_step/{k}"] = s["step"]
      if s["before"] is not None and s["after"] is not None:
        out[f"shift/dip/{k}"] = s["before"] - s["after"]
        if s["after"] >= s["before"]:
          out[f"shift/recovery_steps/{k}"] = 0
        elif s["recovered_at"] is not None:  # left out while not recovered
          out[f"shift/recovery_steps/{k}"] = s["recovered_at"] - s["step"]
    if self.switches:
      out["shift/switch_step"] = self.switches[0]["step"]
    out["shift/final_stage"] = self.stage
    out |= {f"perf/shift/stage_seconds/{k}": sec for k, sec in enumerate(self.seconds)}
    return out
