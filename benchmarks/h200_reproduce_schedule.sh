#!/bin/bash
# Round 5 of docs/benchmarks.md "MNIST reproduce on one H200": the reproduce's critical path
# (the Adam encoder stack that holds the benchmark's "ours" runs, then the TopK SAE stack that
# waits for them) with "ours" in a stack of its own (IMPLICIT_EM_SPLIT_URGENT=1), on one H200.
# Run from the repository root with the MNIST IDX files (gzipped is fine) in $IMPLICIT_EM_DATA:
#   IMPLICIT_EM_DATA=<mnist dir> timeout 480 bash benchmarks/h200_reproduce_schedule.sh 2>&1 | tee $OUT/log
# About 6 minutes: the ms/step of the reproduce's Adam stack and of its two halves, each alone,
# default and fused step (profile_stacked.py); then the full reproduce, timed, with its timeline:
# plain (IMPLICIT_EM_FUSED_STEP=0 IMPLICIT_EM_SPLIT_URGENT=0, the CUDA default before round 5b),
# split alone, the CUDA default since round 5b (split + the fused step, block kernel v2), and,
# if the call has time left, plain again (run-to-run spread and determinism); the tables of
# each against plain's (bitwise, then the means against plain's std).
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src
unset IMPLICIT_EM_FUSED_KERNEL IMPLICIT_EM_SPLIT_URGENT IMPLICIT_EM_FUSED_STEP
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
for fused in 0 1; do  # the fused profile also compiles kernel v2 before the timed reproduces
  echo "== profile, IMPLICIT_EM_FUSED_STEP=$fused, each stack alone (ms/step, kernels/step)"
  IMPLICIT_EM_FUSED_STEP=$fused timeout 90 python3 benchmarks/profile_stacked.py --device cuda \
      --steps 200 --stacks encoder-adam-repro encoder-ours encoder-adam-rest 2>&1 \
      | grep -E "^(encoder|torch)"
done
source benchmarks/reproduce_one.sh
compare() {  # b
  echo "== compare plain / $1 (bitwise; then the means against plain's std)"
  python3 benchmarks/compare_reproductions.py /tmp/plain /tmp/$1 | cut -c1-300
  python3 benchmarks/compare_reproductions.py /tmp/plain /tmp/$1 --within-std
}
PLAIN="IMPLICIT_EM_FUSED_STEP=0 IMPLICIT_EM_SPLIT_URGENT=0"
one plain $PLAIN
one split IMPLICIT_EM_FUSED_STEP=0 IMPLICIT_EM_SPLIT_URGENT=1
compare split
one default  # split + fused step, both unset: the CUDA default
compare default
if (( SECONDS < 350 )); then
  one plain2 $PLAIN
  compare plain2
else
  echo "== plain2 skipped: ${SECONDS} s used"
fi
echo "== done in ${SECONDS} s"
