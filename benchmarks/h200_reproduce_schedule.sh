#!/bin/bash
# Round 5 of docs/benchmarks.md "MNIST reproduce on one H200": the reproduce's critical path
# (the Adam encoder stack that holds the benchmark's "ours" runs, then the TopK SAE stack that
# waits for them) with "ours" in a stack of its own (IMPLICIT_EM_SPLIT_URGENT=1), on one H200.
# Run from the repository root with the MNIST IDX files (gzipped is fine) in $IMPLICIT_EM_DATA:
#   IMPLICIT_EM_DATA=<mnist dir> timeout 480 bash benchmarks/h200_reproduce_schedule.sh 2>&1 | tee $OUT/log
# About 6 minutes: the ms/step of the reproduce's Adam stack and of its two halves, each alone,
# default and fused step (profile_stacked.py); then the full reproduce, timed, with its timeline:
# default, split, split with the fused step (IMPLICIT_EM_FUSED_STEP=1, block kernel v2), and,
# if the call has time left, the default again (run-to-run spread and determinism); the tables
# of each against the default's (bitwise, then the means against the default's std).
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
  echo "== compare default / $1 (bitwise; then the means against the default's std)"
  python3 benchmarks/compare_reproductions.py /tmp/default /tmp/$1 | cut -c1-300
  python3 benchmarks/compare_reproductions.py /tmp/default /tmp/$1 --within-std
}
one default
one split IMPLICIT_EM_SPLIT_URGENT=1
compare split
one split-fused IMPLICIT_EM_SPLIT_URGENT=1 IMPLICIT_EM_FUSED_STEP=1
compare split-fused
if (( SECONDS < 350 )); then
  one default2
  compare default2
else
  echo "== default2 skipped: ${SECONDS} s used"
fi
echo "== done in ${SECONDS} s"
