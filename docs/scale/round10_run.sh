#!/bin/bash
# issue 19, round 10: ONE call on one H200, <= 330 s. Plan and rules: docs/scale/round10-PLAN.md.
# Run from the repository root with $OUT set by the device. Files back: log (tee'd by the
# caller), check.txt, E.json, E.log, C.json, C.log.
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src CUDA_VISIBLE_DEVICES=0
PY=${PYTHON:-python3}
mkdir -p "$OUT"
T0=$(date +%s); t() { echo "[t=$(( $(date +%s) - T0 ))s] $*"; }
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
t check
IMPLICIT_EM_AUTOTUNE=0 timeout 150 $PY -m pytest -q -p no:warnings tests/test_kernels.py \
    tests/test_train_steps.py > "$OUT/check.txt" 2>&1
echo "rc $?" >> "$OUT/check.txt"; tail -8 "$OUT/check.txt"
for v in E C; do
    if [ $v = C ]; then flag=--compile; lim=150; else flag=; lim=100; fi
    t "$v start $flag"
    # shellcheck disable=SC2086  # flag, EXTRA_B: separate arguments
    timeout $lim $PY benchmarks/bench_train_steps.py --amp bf16 --bf16-codes --repeats 3 \
        $flag ${EXTRA_B:-} --out "$OUT/$v.json" > "$OUT/$v.log" 2>&1
    t "$v rc=$?"; grep -E '^\| ' "$OUT/$v.log"
done
t done
