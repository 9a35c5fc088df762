#!/bin/bash
# issue 19, round 9b: ONE call on one H200, <= 330 s. Plan and rules: docs/scale/round9b-PLAN.md.
# Run from the repository root with $OUT set by the device. Files back: log (tee'd by the
# caller), check.txt, profile.txt, B.json, B.log.
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src CUDA_VISIBLE_DEVICES=0
PY=${PYTHON:-python3}
mkdir -p "$OUT"
T0=$(date +%s); t() { echo "[t=$(( $(date +%s) - T0 ))s] $*"; }
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
t check
IMPLICIT_EM_AUTOTUNE=0 timeout 120 $PY -m pytest -q -p no:warnings tests/test_kernels.py \
    tests/test_train_steps.py > "$OUT/check.txt" 2>&1
echo "rc $?" >> "$OUT/check.txt"; tail -15 "$OUT/check.txt"
t profile
timeout 90 $PY benchmarks/profile_train_steps.py ${EXTRA_P:-} 2>&1 | grep -v USDT > "$OUT/profile.txt"
t "profile rc=${PIPESTATUS[0]}"; grep -A6 "^| codes" "$OUT/profile.txt"; grep "^## mode" "$OUT/profile.txt"
t B
timeout 90 $PY benchmarks/bench_train_steps.py --amp bf16 --repeats 3 ${EXTRA_B:-} \
    --out "$OUT/B.json" > "$OUT/B.log" 2>&1
t "B rc=$?"; grep -E '^\| ' "$OUT/B.log"
t done
