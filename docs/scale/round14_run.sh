#!/bin/bash
# issue 19, round 14: the matmul fold on one H200 (nvidia-h200, alone on its host).
# Plan and rules: docs/scale/round14-PLAN.md. Run from the repository root with $OUT set by
# the device:   PARTS="check pieces G1 P1" bash docs/scale/round14_run.sh 2>&1 | tee $OUT/log
# Parts (PARTS, in this order): check (the fold's tests, then the kernels' and the triton
# ops', compiled on the GPU), pieces (benchmarks/bench_matmul_fold.py: the forward per tile,
# the terms forward + backward, agreement; it picks the tile), then bench_scale processes
# named G<n> (--whole-graph, compile mode default) or P<n> (reduce-overhead), each with the
# rows D (the default sketched step), M (the matmul fold) and L (the L1 SAE) built once and
# timed in WINDOWS interleaved cycles of W_STEPS steps, odd n in the order D,M,L, even n in
# M,L,D. A process starts only if its limit P_S still fits before DEADLINE_S.
# The tile: MM_CONFIG if set, else the pieces' best_config (fold.json), else 0.
# Files back: log, check.txt, fold.json, fold.log, summary.md (benchmarks/round14_summary.py
# over this call's processes), r14.tar.gz (every process's JSON and log, GPU clocks).
# CPU smoke (tiny shapes, the interpreter; G processes stop with one line there):
#   OUT=/tmp/r14 TRITON_INTERPRET=1 PYTHON=.venv/bin/python W_STEPS=1 WARMUP=2 WINDOWS=10 \
#       EXTRA="--K 64 --D 8 --B 32" P_S=300 DEADLINE_S=2000 PARTS="pieces P1 P2" \
#       bash docs/scale/round14_run.sh
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src CUDA_VISIBLE_DEVICES=0
PY=${PYTHON:-python3}
PARTS=${PARTS:-check pieces G1 P1}
W_STEPS=${W_STEPS:-50}; WINDOWS=${WINDOWS:-12}; WARMUP=${WARMUP:-10}
P_S=${P_S:-85}; DEADLINE_S=${DEADLINE_S:-520}
EXTRA=${EXTRA:-}
mkdir -p "$OUT"
W="$OUT/r14"; mkdir -p "$W"
CACHES=$(mktemp -d)
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }; t() { echo "[t=$(el)s] $*"; }
has() { [[ " $PARTS " == *" $1 "* ]]; }
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
git log --oneline -1 2>/dev/null || echo "no git history in this copy"

if has check; then
    # CHECK: test files with their time limits (round 15: the fold's file alone)
    for f in ${CHECK:-tests/test_matmul_stats.py:150 tests/test_kernels.py:150 tests/test_triton_ops.py:110}; do
        t "check ${f%%:*}"
        IMPLICIT_EM_AUTOTUNE=0 timeout -s INT -k 10 "${f##*:}" $PY -m pytest -vv -p no:warnings \
            "${f%%:*}" >> "$OUT/check.txt" 2>&1
        echo "rc $? (${f%%:*})" >> "$OUT/check.txt"
        tail -n 15 "$OUT/check.txt" | grep -E "passed|failed|^FAILED|^ERROR" | tail -4
    done
fi

if has pieces; then
    t "pieces"
    TORCHINDUCTOR_CACHE_DIR="$CACHES/pieces" timeout 120 $PY benchmarks/bench_matmul_fold.py \
        --out "$OUT/fold.json" > "$OUT/fold.log" 2>&1
    t "pieces rc=$?"; grep -E '"(matmul|default_forward|bias_fold_forward|cublas_fold_forward|mm_stats.*|best_config|.*_over_.*)"' "$OUT/fold.log"
fi
if [ -z "${MM_CONFIG:-}" ]; then
    MM_CONFIG=$($PY -c "import json; print(json.load(open('$OUT/fold.json'))['best_config'])" 2>/dev/null || echo 0)
fi
export IMPLICIT_EM_MM_CONFIG=$MM_CONFIG
t "tile MM_CONFIGS[$MM_CONFIG]"

S=encoder_sketch32+fused
CAND=${CAND:-512s/mm}  # the candidate row M (round 15: 512s/mmc, cuBLAS's ReLU epilogue)
D="$S[stats=512s/b0]"; M="$S[stats=$CAND]"; L=standard_sae
smi() {
    nvidia-smi -i 0 --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw,pstate \
        --format=csv,noheader 2>/dev/null || echo "n/a"
}
for name in $PARTS; do
    case $name in G[0-9]*|P[0-9]*) ;; *) continue ;; esac
    if (( $(el) + P_S > DEADLINE_S )); then
        t "$name skipped: $P_S s no longer fit before ${DEADLINE_S}s"; continue
    fi
    if [[ $name == G* ]]; then flags="--compile-mode default --whole-graph"
    else flags="--compile-mode reduce-overhead"; fi
    if (( ${name:1} % 2 )); then order="$D,$M,$L"; else order="$M,$L,$D"; fi
    t "$name start ($flags; $order)"
    echo "$name before $(smi | paste -sd' ')" >> "$W/smi.txt"
    # shellcheck disable=SC2086  # flags, EXTRA: separate arguments
    TORCHINDUCTOR_CACHE_DIR="$CACHES/$name" IMPLICIT_EM_AUTOTUNE=1 timeout "$P_S" \
        $PY benchmarks/bench_scale.py --amp bf16 --compile compiled $flags --fused \
        --models encoder_sketch,standard_sae --skip "$S,encoder_sketch32+ref" \
        --stats-variants=512s/b0,$CAND --order "$order" --warmup "$WARMUP" \
        --interleave "$W_STEPS" --windows "$WINDOWS" \
        $EXTRA --out "$W/$name.json" > "$W/$name.log" 2>&1
    rc=$?
    echo "$name after $(smi | paste -sd' ')" >> "$W/smi.txt"
    t "$name rc=$rc"; grep -E '^\| encoder|^\| standard' "$W/$name.log"
    (( rc == 0 )) || tail -3 "$W/$name.log"
done

t summary
timeout 20 $PY benchmarks/round14_summary.py "$W" "$CAND" > "$OUT/summary.md" 2>&1
echo "summary rc=$?"; cat "$OUT/summary.md"
tar -czf "$OUT/r14.tar.gz" -C "$OUT" r14 && rm -r "$W"
rm -rf "$CACHES"
t done
