#!/bin/bash
# issue 19, round 8 (branch s11-r8): ONE call on one H200 (cuda:0), <= 400 s of command.
# Plan and rules: docs/scale/round8-PLAN.md. Run from the repository root (the device's copy
# of main), with $OUT set by the device.
# Four processes, each a fresh compile (its own TorchInductor cache) and fresh Triton
# autotuning, each running bench_scale.py --interleave: the four rows (D = 512s/b0, the
# default; X = 256/b0; F = 512s/b1, the fold; L = the L1 SAE) built and compiled once, then
# WINDOWS cycles of W_STEPS-step windows, the rows' order turning by one each cycle. The
# processes differ in the cyclic order (P1 and P3 D>X>F>L>D, P2 and P4 the reverse) and the
# row built first; all four reduce-overhead (CUDA graphs), as the decisions need. Last, if it
# still fits, C1: P1's order in compile mode "default" (no CUDA graphs), reported only. A
# process starts only if its time limit (P_S) still fits before DEADLINE_S; then the summary
# (benchmarks/round8_summary.py) applies the plan's rules.
# Files back: log (tee'd by the caller), summary.md, r8.tar.gz (every process's JSON and log,
# the GPU clock readings).
# Smoke run on a CPU (tiny shapes, short windows):
#   OUT=/tmp/r8 TRITON_INTERPRET=1 PYTHON=.venv/bin/python W_STEPS=1 WARMUP=2 \
#       EXTRA="--K 64 --D 8 --B 32" P_S=200 DEADLINE_S=900 bash <this>
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src CUDA_VISIBLE_DEVICES=0
PY=${PYTHON:-python3}
W_STEPS=${W_STEPS:-50}; WINDOWS=${WINDOWS:-12}; WARMUP=${WARMUP:-10}
P_S=${P_S:-85}; DEADLINE_S=${DEADLINE_S:-350}
EXTRA=${EXTRA:-}  # more bench_scale arguments (the CPU smoke's shapes); empty on the GPU
mkdir -p "$OUT"
W="$OUT/r8"; mkdir -p "$W"
CACHES=$(mktemp -d)
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }; t() { echo "[t=$(el)s] $*"; }
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
git log --oneline -1 2>/dev/null || echo "no git history in this copy"

S=encoder_sketch32+fused
D="$S[stats=512s/b0]"; X="$S[stats=256/b0]"; F="$S[stats=512s/b1]"; L=standard_sae
smi() {  # clocks, temperature, power, performance state of GPU 0; the active clock limits
    nvidia-smi -i 0 --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw,pstate \
        --format=csv,noheader 2>/dev/null || echo "n/a"
    nvidia-smi -i 0 --query-gpu=clocks_event_reasons.active --format=csv,noheader 2>/dev/null \
        || nvidia-smi -i 0 --query-gpu=clocks_throttle_reasons.active --format=csv,noheader \
        2>/dev/null || echo "n/a"
}

# name  compile mode  order (rows built in this order; the first cycle runs it, each next
# cycle turns it by one)
proc() {
    local name=$1 mode=$2 order=$3
    if (( $(el) + P_S > DEADLINE_S )); then
        t "$name skipped: $P_S s no longer fit before ${DEADLINE_S}s"; return
    fi
    t "$name start (mode=$mode)"
    echo "$name before $(smi | paste -sd' ')" >> "$W/smi.txt"
    # shellcheck disable=SC2086  # EXTRA: separate arguments
    TORCHINDUCTOR_CACHE_DIR="$CACHES/$name" IMPLICIT_EM_AUTOTUNE=1 timeout "$P_S" \
        $PY benchmarks/bench_scale.py --amp bf16 --compile compiled \
        --compile-mode "$mode" --fused --models encoder_sketch,standard_sae \
        --skip "$S,encoder_sketch32+ref" --stats-variants=512s/b0,256/b0,512s/b1 \
        --order "$order" --warmup "$WARMUP" --interleave "$W_STEPS" --windows "$WINDOWS" \
        $EXTRA --out "$W/$name.json" > "$W/$name.log" 2>&1
    local rc=$?
    echo "$name after $(smi | paste -sd' ')" >> "$W/smi.txt"
    t "$name rc=$rc"; grep -E '^\| encoder|^\| standard' "$W/$name.log"
    (( rc == 0 )) || tail -3 "$W/$name.log"
}

RO=reduce-overhead
proc P1 $RO "$D,$X,$F,$L"  # D>X>F>L>D
proc P2 $RO "$F,$X,$D,$L"  # the reverse cycle: F>X>D>L>F
proc P3 $RO "$F,$L,$D,$X"  # D>X>F>L>D again, F built first
proc P4 $RO "$D,$L,$F,$X"  # the reverse cycle, D built first
proc C1 default "$D,$X,$F,$L"  # P1 without CUDA graphs: reported only

t summary
timeout 20 $PY benchmarks/round8_summary.py "$W" > "$OUT/summary.md" 2>&1
echo "summary rc=$?"; cat "$OUT/summary.md"
tar -czf "$OUT/r8.tar.gz" -C "$OUT" r8 && rm -r "$W"
rm -rf "$CACHES"
t done
