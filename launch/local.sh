#!/usr/bin/env bash
# One process on this machine, every local device (CPU, or all GPUs of this host).
#   launch/local.sh --config=configs/quickstart.py --workdir=runs/quickstart [more flags]
# CPU only: DEVICES=8 simulates 8 devices (e.g. to try a mesh before renting a cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${DEVICES:-}" ]]; then
  export JAX_PLATFORMS=cpu XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${DEVICES}"
fi
exec "${PYTHON:-python}" -m looped_jax.main "$@"
