#!/usr/bin/env bash
# gpu16k-im-sweep-PLAN.md, checked on the CPU before commit. From the repository root:
#   bash docs/eval/synthetic/gpu16k-im-sweep/cpu-check/run_checks.sh
# 1. each process line of calls S1-S3 at tiny size (the plan's line with --tiny --latents 512
#    --steps 60 --device cpu appended): logs s1-0.log, s1-1.log, s2-2.log, s2-t0.log, s3-t1.log,
#    s3-t2.log; each row's untrained MCC must equal its family's of the same seed (the encoder's
#    for the sweep rows, TopK's for topk-k12: e0-e2.log and k0-k2.log beside them);
# 2. init.log: the shared inits at the 16k recipe's sizes (D = 768, width 4,096), seeds 0-2.
set -euo pipefail
HERE=docs/eval/synthetic/gpu16k-im-sweep/cpu-check
A="--role rows --steps 47927 --budget 560 --reserve 120 --sae-lens-src .carry/s18/sl"
W="encoder-im0.02 encoder-im0.03 encoder-im0.05"
source docs/eval/synthetic/cpu_check.sh  # PY, S, T, CHECK, TMP and one NAME SEED VARIANT...
one s1-0 0 $W; one s1-1 1 $W; one s2-2 2 $W; one s2-t0 0 topk-k12
one s3-t1 1 topk-k12; one s3-t2 2 topk-k12
for s in 0 1 2; do one e$s $s encoder; one k$s $s topk-k25; done
$PY $CHECK init-check --width 4096 --same encoder $W --same topk-k25 topk-k12 > $HERE/init.log
$PY $CHECK summary $TMP s1-0 s1-1 s2-2 s2-t0 s3-t1 s3-t2 e0 e1 e2 k0 k1 k2 > $HERE/summary.txt
cat $HERE/init.log $HERE/summary.txt
