#!/usr/bin/env bash
# Cloud TPU pod slice: install this repository on every worker, then start the same command
# on all of them. jax.distributed.initialize detects the pod (coordinator, process ids).
#   TPU_NAME=my-pod ZONE=us-central2-b launch/tpu_pod.sh \
#     --config=configs/quickstart.py --workdir=/mnt/shared/runs/qs --config.mesh.fsdp=True
# Env: TPU_NAME, ZONE (required), PROJECT (default: gcloud's), REPO_URL (default: this
# checkout's `origin`), REF (default: this checkout's commit), SKIP_INSTALL=1 to reuse an
# earlier install. --workdir must be a POSIX path every worker sees (an NFS / Filestore
# mount, or a bucket mounted with gcsfuse): orbax writes checkpoint shards from every worker
# there, process 0 the metrics and plots. gs:// URLs are not supported by the writers.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
here="$(cd "$(dirname "$0")/.." && pwd)"
repo_url="${REPO_URL:-$(git -C "$here" remote get-url origin)}"
ref="${REF:-$(git -C "$here" rev-parse HEAD)}"
project=(); [[ -n "${PROJECT:-}" ]] && project=(--project="$PROJECT")
on_all_workers() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" "${project[@]}" --worker=all \
    --command="$1"
}
install="set -e; [ -d looped_jax ] || git clone '$repo_url' looped_jax; cd looped_jax"
install+="; git fetch -q origin; git checkout -q '$ref'; python3 -m venv .venv; . .venv/bin/activate"
install+="; pip install -q -U pip; pip install -q -e . 'jax[tpu]==0.10.2'"
start="cd looped_jax && . .venv/bin/activate && PYTHONUNBUFFERED=1"
start+=" python -m looped_jax.main --distributed $(printf '%q ' "$@")"
[[ -n "${SKIP_INSTALL:-}" ]] || on_all_workers "$install"
on_all_workers "$start"
