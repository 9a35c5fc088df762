#!/usr/bin/env bash
# gpu16k-im-low-PLAN.md, checked on the CPU before commit. From the repository root:
#   bash docs/eval/synthetic/gpu16k-im-low/cpu-check/run_checks.sh
# 1. each process line of call L at tiny size (the plan's line with --tiny --latents 512
#    --steps 60 --device cpu appended): logs l0.log, l1.log, l2.log; each row's untrained MCC
#    must equal the encoder's of the same seed (e0-e2.log beside them);
# 2. init.log: the shared inits at the 16k recipe's sizes (D = 768, width 4,096), seeds 0-2.
set -euo pipefail
HERE=docs/eval/synthetic/gpu16k-im-low/cpu-check
A="--role rows --steps 47927 --budget 560 --reserve 120 --sae-lens-src .carry/s18/sl"
W="encoder-im0.003 encoder-im0.001 encoder-im0"
source docs/eval/synthetic/cpu_check.sh  # PY, S, T, CHECK, TMP and one NAME SEED VARIANT...
one l0 0 $W; one l1 1 $W; one l2 2 $W
for s in 0 1 2; do one e$s $s encoder; done
$PY $CHECK init-check --width 4096 --same encoder $W > $HERE/init.log
$PY $CHECK summary $TMP l0 l1 l2 e0 e1 e2 > $HERE/summary.txt
cat $HERE/init.log $HERE/summary.txt
