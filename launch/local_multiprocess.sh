#!/usr/bin/env bash
# N processes on 127.0.0.1 joined by jax.distributed, CPU devices, gloo collectives: the
# multi-host code path (process-local batches, process-0 writers, multi-process orbax
# checkpoints, peer-failure errors) on one machine, for tests and debugging.
#   launch/local_multiprocess.sh N --config=configs/quickstart.py --workdir=runs/mp [flags]
# Env: DEVICES per process (default 1), PORT of the coordinator (default: a free one),
# PYTHON. Process i's output goes to stdout/stderr with an "[i] " prefix. If one process
# fails the others are stopped; the exit status is the first failure's (0 if none failed).
set -uo pipefail
cd "$(dirname "$0")/.."
n="${1:?usage: launch/local_multiprocess.sh N FLAGS...}"
shift
python="${PYTHON:-python}"
port="${PORT:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
export JAX_PLATFORMS=cpu
export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${DEVICES:-1}"
pids=()
for ((i = 0; i < n; i++)); do
  "$python" -u -m looped_jax.main "$@" --distributed --coordinator_address="127.0.0.1:${port}" \
    --num_processes="$n" --process_id="$i" \
    > >(sed -u "s/^/[$i] /") 2> >(sed -u "s/^/[$i] /" >&2) &
  pids+=("$!")
done
status=0
while ((${#pids[@]} > 0)); do
  wait -n -p done_pid "${pids[@]}"
  rc=$?
  running=()
  for pid in "${pids[@]}"; do [[ "$pid" != "$done_pid" ]] && running+=("$pid"); done
  pids=("${running[@]}")
  if ((rc != 0 && status == 0)); then
    status=$rc
    echo "launch: process ${done_pid} exited with status ${rc}; stopping the others" >&2
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  fi
done
exit "$status"
