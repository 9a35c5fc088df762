#!/bin/bash
# issue 19, round 11: ONE call on one H200 (alone on its host), <= 420 s. Plan and rules:
# docs/scale/round11-PLAN.md. Run from the repository root with $OUT set by the device.
# Files back: log (tee'd by the caller), check.txt, C.json, C.log, E.json, E.log.
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src CUDA_VISIBLE_DEVICES=0
PY=${PYTHON:-python3}
mkdir -p "$OUT"
T0=$(date +%s); t() { echo "[t=$(( $(date +%s) - T0 ))s] $*"; }
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
t "check tests/test_train_steps.py"
IMPLICIT_EM_AUTOTUNE=0 timeout -s INT -k 10 "${T_STEPS:-100}" $PY -m pytest -vv -p no:warnings \
    tests/test_train_steps.py > "$OUT/check.txt" 2>&1
echo "rc $?" >> "$OUT/check.txt"
tail -n 15 "$OUT/check.txt" | grep -E "passed|failed|^FAILED|^ERROR" | tail -4
# C first (the rule reads it), then E for the record; rows +auto, +off and the L1 SAE, 5 rounds
for v in C E; do
    if [ $v = C ]; then flag=--compile; lim=${T_C:-200}; else flag=; lim=${T_E:-90}; fi
    t "$v start $flag"
    # shellcheck disable=SC2086  # flag, EXTRA_B: separate arguments
    timeout $lim $PY benchmarks/bench_train_steps.py --amp bf16 --repeats 5 \
        $flag ${EXTRA_B:-} --out "$OUT/$v.json" > "$OUT/$v.log" 2>&1
    t "$v rc=$?"; grep -E '^\| ' "$OUT/$v.log"
done
t done
