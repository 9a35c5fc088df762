#!/usr/bin/env bash
# gpu16k-im-cliff-PLAN.md, checked on the CPU before commit. From the repository root:
#   bash docs/eval/synthetic/gpu16k-im-cliff/cpu-check/run_checks.sh
# 1. each process line of calls C1 and C2 at tiny size (the plan's line with --tiny
#    --latents 512 --steps 60 --device cpu appended): c0.log, c1.log, c2.log (the cliff rows,
#    seeds 0-2) and l2.log (im-low's owed seed 2); each row's untrained MCC must equal the
#    encoder's of the same seed (e0-e2.log beside them);
# 2. init.log: the shared inits at the 16k recipe's sizes (D = 768, width 4,096), seeds 0-2.
set -euo pipefail
HERE=docs/eval/synthetic/gpu16k-im-cliff/cpu-check
A="--role rows --steps 47927 --budget 430 --reserve 60 --sae-lens-src .carry/s18/sl"
W="encoder-im0.005 encoder-im0.007"
L="encoder-im0.003 encoder-im0"
source docs/eval/synthetic/cpu_check.sh  # PY, S, T, CHECK, TMP and one NAME SEED VARIANT...
one c0 0 $W; one c1 1 $W; one c2 2 $W; one l2 2 $L
for s in 0 1 2; do one e$s $s encoder; done
$PY $CHECK init-check --width 4096 --same encoder $W $L > $HERE/init.log
$PY $CHECK summary $TMP c0 c1 c2 l2 e0 e1 e2 > $HERE/summary.txt
cat $HERE/init.log $HERE/summary.txt
