#!/bin/bash
# The GPU call of docs/benchmarks.md "MNIST reproduce on one H200": the opt-in fused step
# (IMPLICIT_EM_FUSED_STEP=1: multi-tensor Adam, one Triton kernel per encoder block for the
# closed-form terms, `kernels.triton_stacked_v2`) against the default step, on one H200.
# History: round 3 (30 Nov 2026) ran the first block kernel v1, round 4 (30 Nov) v2 beside it
# (logs docs/scale/h200_fused_step_timing.log, h200_fused_step_v2_timing.log,
# h200_block_kernels_v1_v2.log); v1 was removed after round 4, so the only kernel is v2 and
# the optional argument "v2" (round 4's command) changes nothing. Run from the repository root
# with the MNIST IDX files (gzipped is fine) in $IMPLICIT_EM_DATA:
#   IMPLICIT_EM_DATA=<mnist dir> bash benchmarks/h200_fused_step_timing.sh 2>&1 | tee $OUT/log
# About 4.5 minutes: the kernel tests, the block kernel against the reference per block
# (bench_stacked_kernel.py), the per-step profile of each step, then the full reproduce with
# each, timed, and their tables compared with the default's.
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src
[[ $# -eq 0 || ( $# -eq 1 && $1 == v2 ) ]] || { echo "usage: $0 [v2] (v1 was removed)"; exit 2; }
unset IMPLICIT_EM_FUSED_KERNEL
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
echo "== kernel tests (compiled on the GPU)"
timeout 300 python3 -m pytest tests/test_stacked_kernel.py tests/train/test_fused_step.py \
    tests/train/test_optim.py -q 2>&1 | tail -5
echo "== block kernel against the reference, per block, graph-replayed (us per call)"
timeout 240 python3 benchmarks/bench_stacked_kernel.py --device cuda
profile() {  # fused
  echo "== profile, IMPLICIT_EM_FUSED_STEP=$1 (kernels/step and ms/step)"
  IMPLICIT_EM_FUSED_STEP=$1 timeout 120 python3 \
      benchmarks/profile_stacked.py --device cuda --steps 200 --stacks encoder-adam encoder-sgd \
      2>&1 | grep -E "^(encoder|torch)"
}
profile 0
profile 1
source benchmarks/reproduce_one.sh
one default IMPLICIT_EM_FUSED_STEP=0 IMPLICIT_EM_SPLIT_URGENT=0
one fused-v2 IMPLICIT_EM_FUSED_STEP=1 IMPLICIT_EM_SPLIT_URGENT=0
echo "== compare default / fused-v2 (bitwise: expected to differ; then the means against the default's std)"
python3 benchmarks/compare_reproductions.py /tmp/default /tmp/fused-v2 | cut -c1-300
python3 benchmarks/compare_reproductions.py /tmp/default /tmp/fused-v2 --within-std
