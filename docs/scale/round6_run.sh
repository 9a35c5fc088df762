#!/bin/bash
# issue 19, round 6 (branch s10-19): ONE call on one H200 (cuda:0), <= 420 s of command.
# Plan and rules: docs/scale/round6-PLAN.md. Run from the repository root (or the carry
# folder holding src/, benchmarks/, tests/, pyproject.toml), with $OUT set by the device.
# Steps in priority order, each under its own time limit, so that a slow step costs only the
# ones after it: kernel tests (180 s), the K = 16384 bench (160 s), the fold pieces (35 s),
# one profile of the default step (35 s).
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src CUDA_VISIBLE_DEVICES=0
mkdir -p "$OUT"
T0=$(date +%s); t() { echo "[t=$(( $(date +%s) - T0 ))s] $*"; }
nvidia-smi -L
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
git log --oneline -1 2>/dev/null || true

t tests
IMPLICIT_EM_AUTOTUNE=0 timeout 180 python3 -m pytest tests/test_kernels.py -p no:cacheprovider \
    > "$OUT/tests_kernels.log" 2>&1
echo "tests rc=$?"; tail -5 "$OUT/tests_kernels.log"

t bench
timeout 160 python3 benchmarks/bench_scale.py --amp bf16 --compile compiled \
    --compile-mode reduce-overhead --fused --models encoder_sketch,standard_sae,topk_sae \
    --skip encoder_sketch32+ref --stats-variants=256/b0+wr,256/b0,512s,512s/g256,256/b1 \
    --steps 100 --warmup 10 --out "$OUT/bench_k16384.json" 2>&1 | grep -v '^ ' \
    > "$OUT/bench_k16384.log"
echo "bench rc=${PIPESTATUS[0]}"; grep -E '^wr metric|^\|' "$OUT/bench_k16384.log"

t fold_pieces
timeout 35 python3 benchmarks/bench_infomax_kernels.py --fold --out "$OUT/fold_pieces.json" \
    > "$OUT/fold_pieces.log" 2>&1
echo "fold rc=$?"; tail -12 "$OUT/fold_pieces.log"

t profile
timeout 35 python3 benchmarks/profile_scale.py --model encoder_sketch --compile --fused on \
    --steps 3 --rows 45 > "$OUT/profile_default.txt" 2>&1
echo "profile rc=$?"; tail -2 "$OUT/profile_default.txt"
t done
