#!/bin/bash
# issue 19, round 12: ONE call on one H200 (nvidia-h200, alone on its host), expected ~270 s,
# every part under its own limit (at most ~400 s in all). Plan and rules:
# docs/scale/round12-PLAN.md. Run from the repository root with $OUT set by the device:
#   bash docs/scale/round12_run.sh 2>&1 | tee $OUT/log
# Files back (7, the device returns at most 8): log (tee'd by the caller), check.txt, C.json,
# C.log, and only if the deadline leaves room for both bench_scale processes: S.log,
# S-custom.json, S-triton.json.
# PARTS picks parts (default "check bench scale"; e.g. PARTS=scale for bench_scale alone).
# On a machine without CUDA the check runs (its GPU-only tests skip) and the script then stops
# with one line, rc 3; CPU_SMOKE=1 runs the benchmarks there at tiny shapes instead (the
# compiled triton-ops row then fails, recorded, as Triton's interpreter cannot be compiled):
#   OUT=/tmp/r12 PYTHON=.venv/bin/python CPU_SMOKE=1 bash docs/scale/round12_run.sh
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src CUDA_VISIBLE_DEVICES=0
PY=${PYTHON:-python3}
PARTS=${PARTS:-check bench scale}
DEADLINE_S=${DEADLINE_S:-300}  # bench_scale starts only if both its processes fit before it
mkdir -p "$OUT"
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }; t() { echo "[t=$(el)s] $*"; }
has() { [[ " $PARTS " == *" $1 "* ]]; }
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
git log --oneline -1 2>/dev/null || echo "no git history in this copy"

if has check; then
    # the new ops' tests first (the rules read them), then the kernels' own; each file its own
    # limit, SIGINT so that pytest prints its summary if cut, -vv to keep the names
    for f in tests/test_triton_ops.py:${T_OPS:-100} tests/test_kernels.py:${T_KERNELS:-130}; do
        t "check ${f%%:*}"
        IMPLICIT_EM_AUTOTUNE=0 timeout -s INT -k 10 "${f##*:}" $PY -m pytest -vv -p no:warnings \
            "${f%%:*}" >> "$OUT/check.txt" 2>&1
        echo "rc $? (${f%%:*})" >> "$OUT/check.txt"
        tail -n 15 "$OUT/check.txt" | grep -E "passed|failed|^FAILED|^ERROR" | tail -4
    done
fi

if ! $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    if [ -z "${CPU_SMOKE:-}" ]; then
        t "STOP: no CUDA device here; the benchmarks below time the H200 (CPU_SMOKE=1 runs them at tiny shapes)"
        exit 3
    fi
    export TRITON_INTERPRET=1  # the fused rows run in Triton's CPU interpreter
    EXTRA_B="--device cpu --K 64 --D 8 --B 32 --steps 3 --warmup 1 --repeats 2 --fused-modes on,off"
    EXTRA_S="--device cpu --K 64 --D 8 --B 32 --steps 2 --warmup 1 --repeats 1"
    t "CPU smoke: tiny shapes"
fi

if has bench; then
    # rows +auto (custom ops), +off (plain, Inductor), +auto/triton (triton ops), the L1 SAE;
    # 5 rounds, the order turning each round, the JSON after every row
    t "C start --compile --triton-ops"
    # shellcheck disable=SC2086  # EXTRA_B: separate arguments
    timeout "${T_C:-150}" $PY benchmarks/bench_train_steps.py --amp bf16 --repeats 5 --compile \
        --triton-ops ${EXTRA_B:-} --out "$OUT/C.json" > "$OUT/C.log" 2>&1
    t "C rc=$?"; grep -E '^\| |over .*per round|FAILED' "$OUT/C.log"
fi

if has scale; then
    # bench_scale's compiled step (train.loop), custom ops then triton ops, one process each
    # (IMPLICIT_EM_OPS is read at import); report only, no rule reads it
    S_S=${S_S:-75}
    if (( $(el) + 2 * S_S > DEADLINE_S )); then
        t "bench_scale skipped: two processes of ${S_S} s no longer fit before ${DEADLINE_S} s"
    else
        for ops in custom triton; do
            t "S $ops start"
            # shellcheck disable=SC2086  # EXTRA_S: separate arguments
            IMPLICIT_EM_OPS=$ops timeout "$S_S" $PY benchmarks/bench_scale.py --amp bf16 \
                --compile compiled --fused --models encoder_sketch,standard_sae \
                --skip encoder_sketch32+ref --no-isolated --repeats 3 \
                ${EXTRA_S:-} --out "$OUT/S-$ops.json" >> "$OUT/S.log" 2>&1
            t "S $ops rc=$?"
        done
        grep -E '^\| (encoder|standard)' "$OUT/S.log"
    fi
fi
t done
