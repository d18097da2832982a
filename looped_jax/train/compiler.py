"""XLA compiler options of the jitted train and eval steps (config key `xla_options`).

The key is a string: "auto" (this module's measured choice for the backend, `AUTO`), "" (XLA's
defaults) or "FLAG=VALUE;FLAG=VALUE" with XLA debug-option names, as `jax.jit(...,
compiler_options=...)` takes them. Options change how XLA compiles a step, not what it
computes (results may differ in the last bits, as under another mesh), so a run may resume
under other options.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from looped_jax.errors import ConfigError

# Per backend, measured with benchmarks/step_variants.py (docs/performance.md, "XLA
# options"). CPU: no YNNPACK library fusions (XLA's default hands dots, elementwise ops and
# reductions to YNNPACK): 1.09-1.16x per train step at the reference size in four quiet
# runs on a 2-core AVX-512 CPU, 0.99x in a fifth run on the same kind of CPU (no gain, no
# loss), although bias-gradient reductions then run as slower reduce-window loops.
AUTO: dict[str, dict[str, str]] = {"cpu": {"xla_cpu_experimental_ynn_fusion_type": ""}}


def parse(spec: str, platform: str) -> dict[str, str]:
  """The options a spec names on `platform` ("cpu", "gpu", "tpu"): flag -> value."""
  spec = spec.strip()
  if spec == "auto":
    return dict(AUTO.get(platform, {}))
  options = {}
  for item in filter(None, (part.strip() for part in spec.split(";"))):
    flag, sep, value = item.partition("=")
    if not sep or not flag.strip().startswith("xla_"):
      raise ConfigError(f"xla_options item {item!r} is not FLAG=VALUE with an XLA flag name "
                        "(xla_...); write 'auto', '' (XLA defaults) or 'FLAG=VALUE;FLAG=VALUE'.")
    options[flag.strip()] = value.strip()
  return options


def check(options: dict[str, str], device: jax.Device | None = None) -> None:
  """Raises ConfigError if XLA on `device` (default: the first) rejects an option."""
  if options:
    reason = _refusal(tuple(sorted(options.items())), device or jax.devices()[0])
    if reason:
      raise ConfigError(f"xla_options={options!r} is refused by XLA ({reason}); use flags "
                        "that this jaxlib knows, 'auto' or '' (XLA defaults).")


@functools.cache  # every variant's Experiment is built twice (validation, then training)
def _refusal(options: tuple[tuple[str, str], ...], device: jax.Device) -> str:
  """XLA's first error line when a probe compiled with `options` on `device` fails, else ""."""
  try:
    probe = jax.device_put(jnp.zeros(()), device)
    jax.jit(jnp.sin, compiler_options=dict(options)).lower(probe).compile()
  except jax.errors.JaxRuntimeError as e:
    return str(e).splitlines()[0]
  return ""
