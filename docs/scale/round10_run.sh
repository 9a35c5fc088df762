#!/bin/bash
# issue 19, round 10: ONE call on one H200, <= 570 s. Plan and rules: docs/scale/round10-PLAN.md.
# Run from the repository root with $OUT set by the device. Files back: log (tee'd by the
# caller), check.txt, E.json, E.log, C.json, C.log.
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src CUDA_VISIBLE_DEVICES=0
PY=${PYTHON:-python3}
mkdir -p "$OUT"
T0=$(date +%s); t() { echo "[t=$(( $(date +%s) - T0 ))s] $*"; }
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
# the tests the rules read first, each file its own limit; -vv (pyproject adds -q) keeps the names if a limit cuts
# it, and SIGINT lets pytest print its summary
for f in tests/test_train_steps.py:${T_STEPS:-80} tests/test_kernels.py:${T_KERNELS:-150}; do
    t "check ${f%%:*}"
    IMPLICIT_EM_AUTOTUNE=0 timeout -s INT -k 10 "${f##*:}" $PY -m pytest -vv -p no:warnings \
        "${f%%:*}" >> "$OUT/check.txt" 2>&1
    echo "rc $? (${f%%:*})" >> "$OUT/check.txt"
    tail -n 15 "$OUT/check.txt" | grep -E "passed|failed|^FAILED|^ERROR" | tail -4
done
for v in E C; do
    if [ $v = C ]; then flag=--compile; lim=${T_C:-180}; else flag=; lim=${T_E:-120}; fi
    t "$v start $flag"
    # shellcheck disable=SC2086  # flag, EXTRA_B: separate arguments
    timeout $lim $PY benchmarks/bench_train_steps.py --amp bf16 --bf16-codes --repeats 3 \
        $flag ${EXTRA_B:-} --out "$OUT/$v.json" > "$OUT/$v.log" 2>&1
    t "$v rc=$?"; grep -E '^\| |over .*per round' "$OUT/$v.log"
done
t done
