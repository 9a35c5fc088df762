#!/usr/bin/env bash
# gpu16k-width16k-im001-PLAN.md, checked on the CPU before commit. From the repository root:
#   bash docs/eval/synthetic/gpu16k-width16k/cpu-check-im001/run_checks.sh
# Each process line of calls 7 and 8 at tiny size (the plan's line with --tiny --latents 512
# --steps 60 --device cpu appended; logs c7-i0.log, c7-i1.log, c8-i2.log), with the encoder of
# the same seeds beside them (e0-e2.log): each encoder-im0.01 row's untrained MCC must equal
# the encoder's of its seed; init.log: the same parameters at D = 768, width 16,384, seeds 0-2.
set -euo pipefail
HERE=docs/eval/synthetic/gpu16k-width16k/cpu-check-im001
A="--role rows --steps 26818 --budget 560 --reserve 250 --latents 16384 --sae-lens-src .carry/s18/sl"
source docs/eval/synthetic/cpu_check.sh  # PY, S, T, CHECK, TMP and one NAME SEED VARIANT...
one c7-i0 0 encoder-im0.01; one c7-i1 1 encoder-im0.01; one c8-i2 2 encoder-im0.01
for s in 0 1 2; do one e$s $s encoder; done
$PY $CHECK init-check --width 16384 --same encoder encoder-im0.01 > $HERE/init.log
$PY $CHECK summary $TMP c7-i0 c7-i1 c8-i2 e0 e1 e2 > $HERE/summary.txt
cat $HERE/init.log $HERE/summary.txt
