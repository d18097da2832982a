#!/usr/bin/env bash
# The GPU checks as one command, sized for a 15-minute lease of one GPU (on an H200: PART=bench
# 2 min 16 s; PART=train takes what the lease leaves, DEADLINE seconds in all).
#
#   OUT=/tmp/gpu_out bash benchmarks/gpu_checks.sh          # on a GPU host (about 10 min)
#   QUICK=1 OUT=/tmp/gpu_out bash benchmarks/gpu_checks.sh  # tiny shapes: a rehearsal on a CPU
#                                                             # (results saved as rehearsal_gpu_*)
#   PART=bench ... ; PART=train ...                          # the two halves as separate calls
#   PART=train RESUME_FROM=.lease/yang_paper_looped.tar.gz OUT=... bash benchmarks/gpu_checks.sh
#
# 1. bench: JAX vs PyTorch (benchmarks/compare_torch.py, one process pair, steps A B A B) at
#    the reference shape (d=256, 8 heads, 1 layer x 20 loops, window 10, batch 64, 41 points)
#    and at d=1024 (16 heads); both sides with TF32 float32 matmuls (XLA's default on NVIDIA
#    GPUs; torch --matmul_precision high). Then the d=1024 step in bfloat16 compute and the
#    matmul peaks (float32 = TF32, bfloat16) for model FLOP utilisation.
# 2. train: Yang et al.'s looped linear-regression model at the paper's sizes and settings
#    (configs/yang_icl.py:linear_regression:full:looped: d=20, 41 points, D=256, 8 heads, b=20,
#    T=15, the reference's init, Adam 1e-4, batch 64, the paper's dims / points / loop curricula)
#    for what the lease leaves, then --mode=eval (error vs k with baselines at 1280 prompts;
#    error vs loops to 500). The paper trains 500k steps, far more than one lease holds, so the
#    run is resumable across leases: $OUT/yang_paper_looped.tar.gz holds its workdir with the
#    latest checkpoint (about 10 MB); copy it into a git-ignored folder of the checkout, carry
#    that folder to the next lease and pass it as RESUME_FROM. The time budget
#    (train.max_train_seconds) counts the training seconds of all leases, so each lease adds
#    its share to the one the workdir already has. The 12-layer model is not trained here: its
#    checkpoint (about 114 MB with Adam's moments) exceeds what a lease can send and return.
#
# Results: $OUT/gpu_checks.log, $OUT/bench_results.tar (benchmarks/results/gpu_*.json),
# $OUT/yang_paper_looped.tar.gz and $OUT/yang_paper_report.tar.gz (metrics and ICL report).
# Each section has its own timeout, and the whole script stays under DEADLINE seconds, so one
# failing section loses only itself.
set -u
OUT=${OUT:?set OUT to a results folder}
mkdir -p "$OUT"
QUICK=${QUICK:-0}
DEADLINE=${DEADLINE:-570}
START=$SECONDS
PY=${PYTHON:-python3}
LOG="$OUT/gpu_checks.log"
exec > >(tee -a "$LOG") 2>&1
export PYTHONUNBUFFERED=1

left() { echo $((DEADLINE - (SECONDS - START))); }
section() { echo; echo "=== $1 (t=$((SECONDS - START)) s, $(left) s left)"; }

section "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv \
  2>/dev/null || echo "no nvidia-smi"
"$PY" - <<'EOF'
import jax, flax, optax, orbax.checkpoint as ocp
print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__,
      "orbax", ocp.__version__, "devices", jax.devices())
try:
  import torch
  print("torch", torch.__version__, "cuda", torch.cuda.is_available())
except ImportError:
  print("no torch")
EOF

section "smoke: a tiny train step (JAX and this package work here)"
timeout 120 "$PY" benchmarks/step_throughput.py --loops 2 --window 1 --d_model 32 --heads 2 \
  --batch 8 --points 5 --dims 3 --warmup 1 --steps 2 || { echo "smoke failed"; exit 1; }

if [ "$QUICK" = 1 ]; then
  SHAPE_256="--d_model 32 --heads 2 --loops 4 --window 2 --batch 8 --points 5 --dims 3"
  SHAPE_1024="--d_model 64 --heads 2 --loops 4 --window 2 --batch 8 --points 5 --dims 3"
  PEAK="--peak_sizes 256,512"; TORCH_DEVICE=cpu; STEPS=4; SAVE=rehearsal_gpu
else
  SHAPE_256=""; SHAPE_1024="--d_model 1024 --heads 16"
  PEAK="--peak_sizes 4096,8192"; TORCH_DEVICE=cuda; STEPS=30; SAVE=gpu
fi
export SAVE

PART=${PART:-all}
if [ "$PART" = bench ] || [ "$PART" = all ]; then
section "bench: JAX vs PyTorch, d=256 (reference shape)"
timeout 150 "$PY" benchmarks/compare_torch.py $SHAPE_256 --steps $STEPS --warmup 3 \
  --torch_device $TORCH_DEVICE --torch_matmul_precision high --save ${SAVE}_compare_torch_d256

section "bench: JAX vs PyTorch, d=1024"
timeout 150 "$PY" benchmarks/compare_torch.py $SHAPE_1024 --steps $STEPS --warmup 3 \
  --torch_device $TORCH_DEVICE --torch_matmul_precision high --save ${SAVE}_compare_torch_d1024

section "bench: d=1024 in bfloat16 compute, with the bfloat16 matmul peak"
timeout 100 "$PY" benchmarks/step_throughput.py $SHAPE_1024 --steps $STEPS --warmup 3 \
  --dtype bfloat16 --peak $PEAK --save ${SAVE}_step_d1024_bf16

section "bench: float32 (TF32) matmul peak"
timeout 60 "$PY" benchmarks/step_throughput.py --steps 0 --peak $PEAK --save ${SAVE}_matmul_peak_f32

tar -cf "$OUT/bench_results.tar" benchmarks/results/${SAVE}_*.json 2>/dev/null
fi
[ "$PART" = bench ] && { section "done"; exit 0; }

section "train: Yang et al.'s looped linear regression, paper settings, resumable"
WORK=runs/yang_paper; [ "$QUICK" = 1 ] && WORK=runs/yang_paper_rehearsal
ARCHIVE="$OUT/yang_paper_looped.tar.gz"
if [ -n "${RESUME_FROM:-}" ]; then
  rm -rf "$WORK" && mkdir -p "$WORK/looped" && tar -xzf "$RESUME_FROM" -C "$WORK/looped" \
    || { echo "cannot unpack RESUME_FROM=$RESUME_FROM"; exit 1; }
fi
# This lease's share: what is left, less the start, the final eval, --mode=eval and the archive.
LEASE_S=$(( $(left) - 150 ))
if [ "$QUICK" = 1 ]; then LEASE_S=20; fi
if [ "$LEASE_S" -lt 60 ] && [ "$QUICK" != 1 ]; then
  echo "only $LEASE_S s left for training: skipped"; exit 0
fi
DONE_S=$("$PY" - "$WORK/looped/summary.json" <<'EOF'
import json, sys
try:
  print(int(json.load(open(sys.argv[1]))["train_seconds"]))
except (OSError, KeyError, ValueError):
  print(0)
EOF
)
echo "training seconds so far $DONE_S; this lease adds $LEASE_S"
OVERRIDES=(
  --config.train.max_train_seconds=$((DONE_S + LEASE_S))
  --config.train.checkpoint_every=5000 --config.train.keep_checkpoints=1
  --config.eval.icl_settings="('standard',)"
)
if [ "$QUICK" = 1 ]; then
  OVERRIDES+=(--config.model.d_model=32 --config.model.num_heads=2 --config.task.n_dims=5
              --config.task.n_points=11 --config.train.log_every=10 --config.eval.every=50
              --config.eval.icl_prompts=64 --config.eval.icl_max_loops=40)
fi
timeout $((LEASE_S + 120)) "$PY" -m looped_jax.main \
  --config=configs/yang_icl.py:linear_regression:full:looped --workdir=$WORK "${OVERRIDES[@]}" \
  > "$OUT/train_looped.log" 2>&1
echo "training exit status $?"
tr '\r' '\n' < "$OUT/train_looped.log" | tail -n 3
cat "$WORK/looped/summary.json" 2>/dev/null | tr '\n' ' '; echo
tar -czf "$ARCHIVE" -C "$WORK/looped" . && ls -l "$ARCHIVE"

section "train: --mode=eval (error vs k with baselines, error vs loops)"
timeout $(( $(left) > 30 ? $(left) - 10 : 20 )) "$PY" -m looped_jax.main \
  --config=configs/yang_icl.py:linear_regression:full:looped --workdir=$WORK \
  --mode=eval "${OVERRIDES[@]}"
tar -czf "$OUT/yang_paper_report.tar.gz" --exclude=checkpoints --exclude=tensorboard "$WORK"
section "done"
