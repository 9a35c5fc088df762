#!/bin/bash
# issue 19, round 7 (branch s10-r7): ONE call on one H200 (cuda:0), <= 420 s of command.
# Plan and rules: docs/scale/round7-PLAN.md. Run from the repository root (or the carry folder
# holding src/, benchmarks/, pyproject.toml), with $OUT set by the device.
# The same four rows (512s/b0 = the default, 256/b0, 512s/b1, the L1 SAE) in separate
# processes, each a fresh compile (its own TorchInductor cache) and fresh Triton autotuning:
#   A1-A4  reduce-overhead, autotune on, the rows' order rotated (a Latin square)
#   B1 B2  the same with IMPLICIT_EM_AUTOTUNE=0 (one tile config per kernel), orders of A1, A3
#   C1 C2  compile mode "default" (no CUDA graphs), autotune on, orders of A2, A4
#   (B and C: the three sketched rows only, in the relative order of their A pair)
# in priority order A1 A2 A3 A4 B1 C1 B2 C2; a process starts only if its time limit (A_S for
# four rows, BC_S for three) still fits before DEADLINE_S; then the summary
# (benchmarks/round7_summary.py) applies the
# plan's rules. Files back: log (tee'd by the caller), summary.md, r7.tar.gz (every process's
# JSON, log, TorchInductor's .best_config files, and the GPU clock readings).
# Smoke run on a CPU: OUT=/tmp/r7 TRITON_INTERPRET=1 PYTHON=.venv/bin/python bash <this>
# (bench_scale shrinks the shapes on a CPU).
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src CUDA_VISIBLE_DEVICES=0
PY=${PYTHON:-python3}
STEPS=${STEPS:-50}; WARMUP=${WARMUP:-10}; REPEATS=${REPEATS:-3}
A_S=${A_S:-75}; BC_S=${BC_S:-65}; DEADLINE_S=${DEADLINE_S:-390}
mkdir -p "$OUT"
W="$OUT/r7"; mkdir -p "$W"
CACHES=$(mktemp -d)
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }; t() { echo "[t=$(el)s] $*"; }
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
cat COMMIT 2>/dev/null || git log --oneline -1 2>/dev/null || true  # COMMIT: a carry's commit

S=encoder_sketch32+fused
D="$S[stats=512s/b0]"; X="$S[stats=256/b0]"; F="$S[stats=512s/b1]"; L=standard_sae
ORDER1="$D,$X,$F,$L"; ORDER2="$X,$F,$L,$D"; ORDER3="$F,$L,$D,$X"; ORDER4="$L,$D,$X,$F"
# the same orders without the L1 SAE (blocks B and C)
SK1="$D,$X,$F"; SK2="$X,$F,$D"; SK3="$F,$D,$X"; SK4="$D,$X,$F"
smi() {  # clocks, temperature, power, performance state of GPU 0
    nvidia-smi -i 0 --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw,pstate \
        --format=csv,noheader 2>/dev/null || echo "n/a"
}

# name  time limit (s)  autotune(1/0)  compile mode  models  order
proc() {
    local name=$1 limit=$2 tune=$3 mode=$4 models=$5 order=$6
    if (( $(el) + limit > DEADLINE_S )); then
        t "$name skipped: $limit s no longer fit before ${DEADLINE_S}s"; return
    fi
    t "$name start (autotune=$tune, mode=$mode)"
    echo "$name before $(smi)" >> "$W/smi.txt"
    TORCHINDUCTOR_CACHE_DIR="$CACHES/$name" IMPLICIT_EM_AUTOTUNE=$tune timeout $limit \
        $PY benchmarks/bench_scale.py --amp bf16 --compile compiled --compile-mode "$mode" \
        --fused --models "$models" --skip "$S,encoder_sketch32+ref" \
        --stats-variants=512s/b0,256/b0,512s/b1 --order "$order" \
        --steps "$STEPS" --warmup "$WARMUP" --repeats "$REPEATS" --no-isolated \
        --out "$W/$name.json" > "$W/$name.log" 2>&1
    local rc=$?
    echo "$name after $(smi)" >> "$W/smi.txt"
    # TorchInductor's own runtime tile picks for its generated kernels (files named by the
    # kernel's source hash, so the same kernel matches across processes)
    find "$CACHES/$name" -name '*.best_config' -printf '%P\n' 2>/dev/null \
        | tar -cf "$W/$name.inductor_best.tar" -C "$CACHES/$name" -T - 2>/dev/null
    t "$name rc=$rc"; grep -E '^\| encoder|^\| standard' "$W/$name.log"
    (( rc == 0 )) || tail -3 "$W/$name.log"
}

AM=encoder_sketch,standard_sae; BM=encoder_sketch
proc A1 "$A_S" 1 reduce-overhead $AM "$ORDER1"
proc A2 "$A_S" 1 reduce-overhead $AM "$ORDER2"
proc A3 "$A_S" 1 reduce-overhead $AM "$ORDER3"
proc A4 "$A_S" 1 reduce-overhead $AM "$ORDER4"
proc B1 "$BC_S" 0 reduce-overhead $BM "$SK1"
proc C1 "$BC_S" 1 default $BM "$SK2"
proc B2 "$BC_S" 0 reduce-overhead $BM "$SK3"
proc C2 "$BC_S" 1 default $BM "$SK4"

t summary
timeout 20 $PY benchmarks/round7_summary.py "$W" > "$OUT/summary.md" 2>&1
echo "summary rc=$?"; cat "$OUT/summary.md"
tar -czf "$OUT/r7.tar.gz" -C "$OUT" r7 && rm -r "$W"
rm -rf "$CACHES"
t done
