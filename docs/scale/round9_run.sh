#!/bin/bash
# issue 19, round 9: ONE call on one H200 (cuda:0), <= 500 s of command.
# Plan and rules: docs/scale/round9-PLAN.md. Run from the repository root (the device's copy
# of main), with $OUT set by the device.
# First benchmarks/round9_check.py (does the whole-step CUDA graph train as the plain step
# does?), then six processes alternating G (bench_scale.py --whole-graph: each row's whole
# step, forward + loss + backward + Adam, captured in one CUDA graph; forward and loss
# compiled in mode "default") and P (reduce-overhead, as round 8), each with the rows D (the
# sketched encoder's default step) and L (the L1 SAE) built once, then WINDOWS cycles of
# W_STEPS-step windows, the two rows alternating. A process starts only if its time limit
# (P_S) still fits before DEADLINE_S. Then benchmarks/round9_summary.py applies the rules.
# Files back: log (tee'd by the caller), summary.md, r9.tar.gz (the check, every process's
# JSON and log, the GPU clock readings).
# Then part B, benchmarks/bench_train_steps.py (<= B_S s, default 80): the scale trainer's step with the
# fused kernels (mode auto) against the plain formulas (off), beside the L1 SAE.
# Smoke run on a CPU (tiny shapes; the G processes and the check stop with one line there):
#   OUT=/tmp/r9 TRITON_INTERPRET=1 PYTHON=.venv/bin/python W_STEPS=1 WARMUP=2 \
#       EXTRA="--K 64 --D 8 --B 32" P_S=200 DEADLINE_S=900 \
#       EXTRA_B="--device cpu --K 64 --D 8 --B 32 --steps 3 --warmup 1 --fused-modes on,off" \
#       B_S=300 bash <this>
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src CUDA_VISIBLE_DEVICES=0
PY=${PYTHON:-python3}
W_STEPS=${W_STEPS:-50}; WINDOWS=${WINDOWS:-12}; WARMUP=${WARMUP:-10}
P_S=${P_S:-70}; DEADLINE_S=${DEADLINE_S:-360}
EXTRA=${EXTRA:-}  # more bench_scale arguments (the CPU smoke's shapes); empty on the GPU
mkdir -p "$OUT"
W="$OUT/r9"; mkdir -p "$W"
CACHES=$(mktemp -d)
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }; t() { echo "[t=$(el)s] $*"; }
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
git log --oneline -1 2>/dev/null || echo "no git history in this copy"

t check
TORCHINDUCTOR_CACHE_DIR="$CACHES/check" timeout 120 $PY benchmarks/round9_check.py \
    > "$W/check.txt" 2>&1
echo "rc $?" >> "$W/check.txt"; cat "$W/check.txt"

S=encoder_sketch32+fused
D="$S[stats=512s/b0]"; L=standard_sae
smi() {  # clocks, temperature, power, performance state of GPU 0
    nvidia-smi -i 0 --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw,pstate \
        --format=csv,noheader 2>/dev/null || echo "n/a"
}

# name  mode (graph: --whole-graph with compile mode default; else the compile mode)  order
proc() {
    local name=$1 mode=$2 order=$3 flags
    if (( $(el) + P_S > DEADLINE_S )); then
        t "$name skipped: $P_S s no longer fit before ${DEADLINE_S}s"; return
    fi
    if [ "$mode" = graph ]; then flags="--compile-mode default --whole-graph"
    else flags="--compile-mode $mode"; fi
    t "$name start ($flags)"
    echo "$name before $(smi | paste -sd' ')" >> "$W/smi.txt"
    # shellcheck disable=SC2086  # flags, EXTRA: separate arguments
    TORCHINDUCTOR_CACHE_DIR="$CACHES/$name" IMPLICIT_EM_AUTOTUNE=1 timeout "$P_S" \
        $PY benchmarks/bench_scale.py --amp bf16 --compile compiled $flags --fused \
        --models encoder_sketch,standard_sae --skip "$S,encoder_sketch32+ref" \
        --stats-variants=512s/b0 --order "$order" --warmup "$WARMUP" \
        --interleave "$W_STEPS" --windows "$WINDOWS" \
        $EXTRA --out "$W/$name.json" > "$W/$name.log" 2>&1
    local rc=$?
    echo "$name after $(smi | paste -sd' ')" >> "$W/smi.txt"
    t "$name rc=$rc"; grep -E '^\| encoder|^\| standard' "$W/$name.log"
    (( rc == 0 )) || tail -3 "$W/$name.log"
}

RO=reduce-overhead
proc G1 graph "$D,$L"
proc P1 $RO "$D,$L"
proc G2 graph "$L,$D"
proc P2 $RO "$L,$D"
proc G3 graph "$D,$L"
proc P3 $RO "$L,$D"

# Part B: the scale trainer's own step (train_steps, one rank), fused kernels against the
# plain formulas, beside the L1 SAE, eager as the probing study runs it: 3 rounds
t "B start"
# shellcheck disable=SC2086  # EXTRA_B: separate arguments
TORCHINDUCTOR_CACHE_DIR="$CACHES/B" timeout "${B_S:-80}" $PY benchmarks/bench_train_steps.py \
    --amp bf16 --repeats 3 ${EXTRA_B:-} --out "$W/B.json" > "$W/B.log" 2>&1
t "B rc=$?"; grep -E '^\| ' "$W/B.log"

t summary
timeout 20 $PY benchmarks/round9_summary.py "$W" > "$OUT/summary.md" 2>&1
echo "summary rc=$?"; cat "$OUT/summary.md"
tar -czf "$OUT/r9.tar.gz" -C "$OUT" r9 && rm -r "$W"
rm -rf "$CACHES"
t done
