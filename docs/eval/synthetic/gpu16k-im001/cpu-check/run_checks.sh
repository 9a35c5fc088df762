#!/usr/bin/env bash
# gpu16k-im001-PLAN.md, checked on the CPU before commit. From the repository root:
#   bash docs/eval/synthetic/gpu16k-im001/cpu-check/run_checks.sh
# 1. each process line of the call at tiny size (--tiny --latents 512 --steps 60 --device cpu
#    appended), with the encoder of the same seeds beside it: logs i0.log, i1.log, e0.log, e1.log;
#    each encoder-im0.01 row's untrained MCC must equal the encoder's of its seed;
# 2. the shared init at the 16k recipe's sizes (D = 768, width 4,096), parameter by parameter
#    (init.log).
set -euo pipefail
HERE=docs/eval/synthetic/gpu16k-im001/cpu-check
A="--role rows --steps 47927 --budget 320 --reserve 120 --sae-lens-src .carry/s18/sl"
source docs/eval/synthetic/cpu_check.sh  # PY, S, T, CHECK, TMP and one NAME SEED VARIANT...
one i0 0 encoder-im0.01; one i1 1 encoder-im0.01; one e0 0 encoder; one e1 1 encoder
$PY $CHECK init-check --width 4096 --same encoder encoder-im0.01 > $HERE/init.log
$PY $CHECK summary $TMP i0 i1 e0 e1 > $HERE/summary.txt
cat $HERE/init.log $HERE/summary.txt
