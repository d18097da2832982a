"""SHIFT's policy without jax: the stages (`ShiftSchedule`) and when to switch between them,
as small host-side state machines (docs/papers.md, "Gong et al."). The optax side is
train/shift.py; config validation parses schedules here without importing train/.

Each criterion is a frozen dataclass holding its settings and its running state. The
trainer calls, after every optimizer update,

  criterion, fire = criterion.update(step, signals)

where `step` is the global number of updates done so far (1 after the first update; the
multi-stage optimizer state's `count`) and `signals` maps signal names to host floats for
this step. A signal may be absent on steps where it was not measured (e.g. `eval_loss`
only at eval steps). `fire` becomes True on the step the switch should happen.

Windowed criteria check every `every` steps, at steps with `step % every == 0`. At each
check the mean of the values received since the previous check is the window mean; a
check whose window received no value is skipped (its streak is unchanged).

State is plain ints/floats/None/str: `to_dict()` is JSON-serialisable and `from_dict`
restores the criterion exactly, settings included. Settings are validated on
construction with one-sentence `ConfigError`s (a `ValueError`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from looped_jax import errors

# Signal names the trainer passes, and whether lower ("min") or higher ("max") is better.
TRAIN_LOSS = "train_loss"
EVAL_LOSS = "eval_loss"
GRAD_NORM = "grad_norm"
SIMPLE_ACC = "simple_acc"
GRAD_COSINE = "grad_cosine"  # cos(∇ single, ∇ looped) on W_Q, W_K (Gong et al.'s Theorem 3)
SCP_SIGNALS = {TRAIN_LOSS: "min", EVAL_LOSS: "min", GRAD_NORM: "min", SIMPLE_ACC: "max"}
GRAD_COSINE_PARTS = ("qk", "all")  # W_Q and W_K, or every parameter (train/shift_signals.py)

_STATE = {"state": True}  # field metadata: running state, not a setting


def _state_field(default):
  return dataclasses.field(default=default, metadata=_STATE)


class Criterion:
  """Base class: `update`, JSON conversion, and the list of settings."""

  kind: ClassVar[str] = ""

  def update(self, step: int, signals: Mapping[str, Any]) -> tuple[Self, bool]:
    """Consumes one step's signals; returns the new criterion and whether to switch now.

    Args:
      step: global updates done so far (1 after the first update).
      signals: signal name -> scalar (float, numpy or jax scalar) measured at `step`.
    """
    raise NotImplementedError

  def to_dict(self) -> dict[str, Any]:
    """Settings and state as JSON-ready values, with the `kind` tag."""
    return {"kind": self.kind, **dataclasses.asdict(self)}

  @classmethod
  def settings(cls) -> tuple[str, ...]:
    """Names of the fields a config may set (the rest is running state)."""
    return tuple(f.name for f in dataclasses.fields(cls) if not f.metadata.get("state"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class FixedStep(Criterion):
  """Switches once the global step reaches `step` (e.g. where Single-Attn stalls)."""

  kind: ClassVar[str] = "fixed_step"
  step: int

  def __post_init__(self):
    _check_int(f"{self.kind}.step", self.step, low=0)

  def update(self, step, signals):
    del signals
    return self, step >= self.step


@dataclasses.dataclass(frozen=True, kw_only=True)
class BudgetFraction(Criterion):
  """Switches once `fraction` of the `total_steps` training budget is spent."""

  kind: ClassVar[str] = "budget_fraction"
  fraction: float
  total_steps: int

  def __post_init__(self):
    _check_float(f"{self.kind}.fraction", self.fraction, low=0.0, high=1.0)
    _check_int(f"{self.kind}.total_steps", self.total_steps, low=1)

  @property
  def switch_step(self) -> int:
    # Rounded first so that 0.3 * 1000 = 300.00000000000006 gives 300, not 301.
    return math.ceil(round(self.fraction * self.total_steps, 6))

  def update(self, step, signals):
    del signals
    return self, step >= self.switch_step


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Windowed(Criterion):
  """Window means of one signal every `every` steps; a streak of passing checks."""

  signal: str
  every: int
  patience: int
  window_sum: float = _state_field(0.0)
  window_n: int = _state_field(0)
  prev_mean: float | None = _state_field(None)  # last check's window mean
  streak: int = _state_field(0)  # consecutive passing checks

  def __post_init__(self):
    errors.check(isinstance(self.signal, str) and bool(self.signal),
                 f"{self.kind}.signal={self.signal!r} must be a non-empty signal name.")
    _check_int(f"{self.kind}.every", self.every, low=1)
    _check_int(f"{self.kind}.patience", self.patience, low=1)

  def _observe(self, step: int, signals: Mapping[str, Any]) -> tuple[Self, float | None]:
    """Adds this step's value to the window; returns the window mean at a check."""
    s = self
    if self.signal in signals:
      s = dataclasses.replace(s, window_sum=s.window_sum + float(signals[self.signal]),
                              window_n=s.window_n + 1)
    if step % self.every or not s.window_n:
      return s, None
    return dataclasses.replace(s, window_sum=0.0, window_n=0), s.window_sum / s.window_n

  def _judge(self, mean: float) -> tuple[bool | None, dict[str, Any]]:
    """Whether this check passes (None: cannot tell yet) and state fields to record."""
    raise NotImplementedError

  def update(self, step, signals):
    s, mean = self._observe(step, signals)
    if mean is None:
      return s, False
    passes, record = s._judge(mean)  # pylint: disable=protected-access
    streak = s.streak + 1 if passes else 0
    s = dataclasses.replace(s, prev_mean=mean, streak=streak, **record)
    return s, streak >= self.patience


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scp(_Windowed):
  """SHIFT Criterion with Patience (our reconstruction; docs/papers.md, "Gong et al.").

  At a check, r_t = relative improvement of the window mean over the previous check's
  ((prev - mean) / |prev| for losses and the gradient norm, (mean - prev) / |prev| for
  accuracy) and g_t = EMA of `grad_signal` (decay `ema`, started at its first value). The
  check passes when r_t < delta1 and g_t < delta2 (delta2=None drops the second test);
  the first check only records the mean. Fires when `patience` (W) consecutive checks
  pass. The defaults are reconstructions: the paper gives no values.
  """

  kind: ClassVar[str] = "scp"
  signal: str = TRAIN_LOSS
  every: int = 100  # Δ
  patience: int = 3  # W
  delta1: float = 0.01
  delta2: float | None = None
  grad_signal: str = GRAD_NORM
  ema: float = 0.9
  g_ema: float | None = _state_field(None)
  last_r: float | None = _state_field(None)  # r_t of the last check, for logging

  def __post_init__(self):
    super().__post_init__()
    errors.check_choice(f"{self.kind}.signal", self.signal, SCP_SIGNALS)
    errors.check(isinstance(self.grad_signal, str) and bool(self.grad_signal),
                 f"{self.kind}.grad_signal={self.grad_signal!r} must be a non-empty signal name.")
    _check_float(f"{self.kind}.delta1", self.delta1)
    if self.delta2 is not None:
      _check_float(f"{self.kind}.delta2", self.delta2)
    _check_float(f"{self.kind}.ema", self.ema, low=0.0, high=1.0)

  def _observe(self, step, signals):
    s = self
    if self.grad_signal in signals:
      g = float(signals[self.grad_signal])
      ema = g if s.g_ema is None else self.ema * s.g_ema + (1.0 - self.ema) * g
      s = dataclasses.replace(s, g_ema=ema)
    return _Windowed._observe(s, step, signals)

  def _judge(self, mean):
    if self.prev_mean is None:
      return None, {}
    gain = self.prev_mean - mean if SCP_SIGNALS[self.signal] == "min" else mean - self.prev_mean
    r = gain / max(abs(self.prev_mean), 1e-12)
    if self.delta2 is None:
      return r < self.delta1, {"last_r": r}
    if self.g_ema is None:
      raise ValueError(f"scp.delta2 is set but signal {self.grad_signal!r} was never passed to "
                       "update(); pass it or set delta2=None.")
    return r < self.delta1 and self.g_ema < self.delta2, {"last_r": r}


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimpleAcc(_Windowed):
  """Fires when the simple-split accuracy's window mean moved by at most `tol` for W checks."""

  kind: ClassVar[str] = "simple_acc"
  signal: str = SIMPLE_ACC
  every: int = 100
  patience: int = 3
  tol: float = 0.002

  def __post_init__(self):
    super().__post_init__()
    _check_float(f"{self.kind}.tol", self.tol, low=0.0)

  def _judge(self, mean):
    return (None if self.prev_mean is None else abs(mean - self.prev_mean) <= self.tol), {}


@dataclasses.dataclass(frozen=True, kw_only=True)
class GradAlignment(_Windowed):
  """Fires when the gradient cosine's window mean is below `threshold` for W checks.

  The trainer measures `grad_cosine` (train/shift_signals.py: the cosine between the
  gradients at the active stage's loop count and at the next stage's, on `params`) at
  check steps only, so each window holds one value.
  """

  kind: ClassVar[str] = "grad_alignment"
  signal: str = GRAD_COSINE
  every: int = 100
  patience: int = 1
  threshold: float = 0.5
  params: str = "qk"  # qk: W_Q, W_K as in Theorem 3 | all: every parameter

  def __post_init__(self):
    super().__post_init__()
    _check_float(f"{self.kind}.threshold", self.threshold, low=-1.0, high=1.0)
    errors.check_choice(f"{self.kind}.params", self.params, GRAD_COSINE_PARTS)

  def _judge(self, mean):
    return mean < self.threshold, {}


KINDS: dict[str, type[Criterion]] = {
    c.kind: c for c in (FixedStep, BudgetFraction, Scp, SimpleAcc, GradAlignment)}


def measures_at(criterion: Criterion | None, signal: str, step: int) -> bool:
  """Whether `criterion` reads `signal` at a check due at `step` (costly signals: only then)."""
  every = getattr(criterion, "every", None)
  if every is None or step % every:
    return False
  return signal in (getattr(criterion, "signal", None), getattr(criterion, "grad_signal", None))


def from_dict(d: Mapping[str, Any], *, key: str = "criterion", state: bool = True) -> Criterion:
  """Builds a criterion from `to_dict()` output (state=True) or from config settings.

  Args:
    d: {"kind": ..., field: value, ...}.
    key: config path used in error messages.
    state: whether running-state fields are accepted (restoring) or only settings (config).
  """
  d = dict(d)
  kind = d.pop("kind", None)
  errors.check_choice(f"{key}.kind", kind, KINDS)
  cls = KINDS[kind]
  allowed = [f.name for f in dataclasses.fields(cls)] if state else list(cls.settings())
  for name in d:
    errors.check_choice(f"{key} key", name, allowed)
  try:
    return cls(**d)
  except errors.ConfigError as e:
    raise errors.ConfigError(f"{key}: {e}") from None


def _check_int(name, value, *, low):
  errors.check(isinstance(value, int) and not isinstance(value, bool) and value >= low,
               f"{name}={value!r} must be an integer >= {low}.")


def _check_float(name, value, *, low=None, high=None):
  ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
  ok = ok and (low is None or value >= low) and (high is None or value <= high)
  bounds = f" in [{low}, {high}]" if low is not None and high is not None else (
      f" >= {low}" if low is not None else "")
  errors.check(ok, f"{name}={value!r} must be a finite number{bounds}.")


MOMENTS = ("keep", "reset")  # what a switch does to Adam's moments (train/shift.py)
LR_MODES = ("keep", "rewarm")  # and to the learning-rate schedule


@dataclasses.dataclass(frozen=True)
class ShiftSchedule:
  """What SHIFT does: loop count per stage, when to switch, and how.

  Attributes:
    loops: loop count of each stage, e.g. (1, 3) or (1, 2, 4).
    criteria: a fresh criterion for each transition; criteria[k] decides k -> k+1.
    moments: "keep" | "reset", passed to `switch_stage`.
    lr: "keep" | "rewarm", passed to `switch_stage`.
  """

  loops: tuple[int, ...]
  criteria: tuple[Criterion, ...]
  moments: str = "keep"
  lr: str = "keep"

  @property
  def num_stages(self) -> int:
    return len(self.loops)

  @classmethod
  def from_dict(cls, d: Any, *, total_steps: int | None = None,
                key: str = "shift") -> ShiftSchedule:
    """Parses {"loops", "criterion", "moments", "lr"} (a dict or ml_collections ConfigDict).

    `criterion` is one settings dict {"kind": ..., ...} used for every transition, or a
    list with one per transition. `total_steps` fills `budget_fraction`'s total_steps
    when the dict leaves it out.

    Raises:
      errors.ConfigError (a ValueError) naming the key and the allowed values.
    """
    d = _plain(d)
    errors.check(isinstance(d, dict), f"{key} must be a dict, got {type(d).__name__}.")
    for name in d:
      errors.check_choice(f"{key} key", name, ("loops", "criterion", "moments", "lr"))
    errors.check("loops" in d, f"{key}.loops is required, e.g. (1, 3).")
    loops = d["loops"]
    errors.check(
        isinstance(loops, (list, tuple)) and len(loops) >= 2 and all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in loops),
        f"{key}.loops={loops!r} must list at least two loop counts >= 1, e.g. (1, 3).")
    moments, lr = d.get("moments", "keep"), d.get("lr", "keep")
    errors.check_choice(f"{key}.moments", moments, MOMENTS)
    errors.check_choice(f"{key}.lr", lr, LR_MODES)

    errors.check("criterion" in d, f"{key}.criterion is required, e.g. {{'kind': 'scp'}}; "
                 f"kinds: {', '.join(KINDS)}.")
    specs = d["criterion"]
    if isinstance(specs, dict):
      specs = [specs] * (len(loops) - 1)
    errors.check(
        isinstance(specs, list) and len(specs) == len(loops) - 1
        and all(isinstance(s, dict) for s in specs),
        f"{key}.criterion must be one dict or a list of {len(loops) - 1} dicts "
        f"(one per transition), got {specs!r}.")
    criteria = []
    for k, spec in enumerate(specs):
      if spec.get("kind") == "budget_fraction" and "total_steps" not in spec:
        errors.check(total_steps is not None, f"{key}.criterion[{k}].total_steps is required "
                     "for kind='budget_fraction' (or pass the run's total_steps).")
        spec = {**spec, "total_steps": total_steps}
      criteria.append(from_dict(spec, key=f"{key}.criterion[{k}]", state=False))
    return cls(loops=tuple(loops), criteria=tuple(criteria), moments=moments, lr=lr)


def _plain(x):
  """ConfigDicts, mappings and sequences as plain dicts and lists."""
  if hasattr(x, "to_dict"):
    x = x.to_dict()
  if isinstance(x, Mapping):
    return {k: _plain(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_plain(v) for v in x]
  return x
