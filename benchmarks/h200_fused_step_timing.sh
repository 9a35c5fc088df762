#!/bin/bash
# The GPU call of docs/benchmarks.md "MNIST reproduce on one H200", round 3 (ran 30 Nov 2026:
# results in docs/benchmarks.md "Round 3 on the H200", log docs/scale/h200_fused_step_timing.log):
# the opt-in fused step (IMPLICIT_EM_FUSED_STEP=1: multi-tensor Adam, one Triton kernel per encoder
# block for the closed-form terms) against the default step, on one H200. Run from the
# repository root with the MNIST IDX files (gzipped is fine) in $IMPLICIT_EM_DATA:
#   IMPLICIT_EM_DATA=<mnist dir> bash benchmarks/h200_fused_step_timing.sh 2>&1 | tee $OUT/log
# About 5 minutes: the kernel tests, the per-step profile of both steps, then the full
# reproduce with each, timed, and their tables compared.
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
echo "== kernel tests (compiled on the GPU)"
timeout 180 python3 -m pytest tests/test_stacked_kernel.py tests/train/test_fused_step.py \
    tests/train/test_optim.py -q 2>&1 | tail -5
for v in 0 1; do
  echo "== profile, IMPLICIT_EM_FUSED_STEP=$v (kernels/step and ms/step)"
  IMPLICIT_EM_FUSED_STEP=$v timeout 120 python3 benchmarks/profile_stacked.py --device cuda \
      --steps 200 --stacks encoder-adam encoder-sgd 2>&1 | grep -E "^(encoder|torch)"
done
one() {  # name fused
  local name=$1 t0=$(date +%s.%N)
  IMPLICIT_EM_FUSED_STEP=$2 timeout 150 python3 -m implicit_em.cli reproduce --device cuda \
      --quiet --out /tmp/$name > /tmp/$name.log 2>&1
  local rc=$? t1=$(date +%s.%N)
  echo "== $name rc=$rc whole process $(python3 -c "print(f'{$t1-$t0:.1f}')") s"
  tail -3 /tmp/$name.log
  sed -n '/| step | wall time/,/| \*\*total/p' /tmp/$name/report.md
  python3 benchmarks/reproduce_timeline.py /tmp/$name $t0
  cp /tmp/$name/report.md $OUT/$name.report.md 2>/dev/null
}
one default 0
one fused 1
echo "== compare (bitwise: expected to differ; then the means against the default's std)"
python3 benchmarks/compare_reproductions.py /tmp/default /tmp/fused | cut -c1-300
python3 benchmarks/compare_reproductions.py /tmp/default /tmp/fused --within-std
