#!/bin/bash
# The GPU call of docs/benchmarks.md "MNIST reproduce on one H200": the opt-in fused step
# (IMPLICIT_EM_FUSED_STEP=1: multi-tensor Adam, one Triton kernel per encoder block for the
# closed-form terms) against the default step, on one H200, with the block kernel(s) named as
# arguments (IMPLICIT_EM_FUSED_KERNEL: v1, the default, or v2; round 3 ran v1 on 30 Nov 2026:
# docs/benchmarks.md "Round 3 on the H200", log docs/scale/h200_fused_step_timing.log; round 4
# is v2, "Round 4 (not yet timed)"). Run from the repository root with the MNIST IDX files
# (gzipped is fine) in $IMPLICIT_EM_DATA:
#   IMPLICIT_EM_DATA=<mnist dir> bash benchmarks/h200_fused_step_timing.sh [v1] [v2] 2>&1 | tee $OUT/log
# About 3 minutes plus 1.5 per kernel: the kernel tests, the block kernels against the reference
# per block (bench_stacked_kernel.py), the per-step profile of each step, then the full
# reproduce with each, timed, and their tables compared with the default's.
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src
kernels=("${@:-v1}")
for k in "${kernels[@]}"; do
  [[ $k == v1 || $k == v2 ]] || { echo "kernel $k: name v1 or v2 (IMPLICIT_EM_FUSED_KERNEL)"; exit 2; }
done
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
echo "== kernel tests (compiled on the GPU)"
timeout 300 python3 -m pytest tests/test_stacked_kernel.py tests/train/test_fused_step.py \
    tests/train/test_optim.py -q 2>&1 | tail -5
echo "== block kernels against the reference, per block, graph-replayed (us per call)"
timeout 240 python3 benchmarks/bench_stacked_kernel.py --device cuda --kernels "${kernels[@]}"
profile() {  # fused kernel
  echo "== profile, IMPLICIT_EM_FUSED_STEP=$1 IMPLICIT_EM_FUSED_KERNEL=$2 (kernels/step and ms/step)"
  IMPLICIT_EM_FUSED_STEP=$1 IMPLICIT_EM_FUSED_KERNEL=$2 timeout 120 python3 \
      benchmarks/profile_stacked.py --device cuda --steps 200 --stacks encoder-adam encoder-sgd \
      2>&1 | grep -E "^(encoder|torch)"
}
profile 0 v1
for k in "${kernels[@]}"; do profile 1 "$k"; done
one() {  # name fused kernel
  local name=$1 t0=$(date +%s.%N)
  IMPLICIT_EM_FUSED_STEP=$2 IMPLICIT_EM_FUSED_KERNEL=$3 timeout 150 python3 -m implicit_em.cli \
      reproduce --device cuda --quiet --out /tmp/$name > /tmp/$name.log 2>&1
  local rc=$? t1=$(date +%s.%N)
  echo "== $name rc=$rc whole process $(python3 -c "print(f'{$t1-$t0:.1f}')") s"
  tail -3 /tmp/$name.log
  sed -n '/| step | wall time/,/| \*\*total/p' /tmp/$name/report.md
  python3 benchmarks/reproduce_timeline.py /tmp/$name $t0
  cp /tmp/$name/report.md $OUT/$name.report.md 2>/dev/null
}
one default 0 v1
for k in "${kernels[@]}"; do
  one fused-$k 1 "$k"
  echo "== compare default / fused-$k (bitwise: expected to differ; then the means against the default's std)"
  python3 benchmarks/compare_reproductions.py /tmp/default /tmp/fused-$k | cut -c1-300
  python3 benchmarks/compare_reproductions.py /tmp/default /tmp/fused-$k --within-std
done
