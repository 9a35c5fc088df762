#!/usr/bin/env bash
# gpu16k-width16k-4-PLAN.md, checked on the CPU before commit. From the repository root:
#   bash docs/eval/synthetic/gpu16k-width16k/cpu-check-4/run_checks.sh
# 1. each process line of calls 4-6 at tiny size (the plan's line with --tiny --latents 512
#    --steps 60 --device cpu appended), and seed 1 of encoder and tied-topk (the third call's
#    line) beside them: log <call>-<process>.log (c4-w, c4-h, c5-e, c5-t, c6-w, c6-h, c3-e,
#    c3-t); every row of a seed must have the same untrained MCC;
# 2. seed 0 of encoder-wr and the hybrid in lockstep in one process (as the first call ran
#    them, c1-p2) against each alone (s0-pair.log, s0-w.log, s0-h.log): the same init, but
#    whether the trained rows are the same;
# 3. init_check.py: the shared init at the 16k recipe's sizes, parameter by parameter (init.log).
# summary.txt: each row's untrained and trained MCC, L0 and steps, from the results files.
set -euo pipefail
HERE=docs/eval/synthetic/gpu16k-width16k/cpu-check-4
A="--role rows --steps 26818 --budget 560 --reserve 250 --latents 16384 --sae-lens-src .carry/s18/sl"
source docs/eval/synthetic/cpu_check.sh  # PY, S, T, CHECK, TMP and one NAME SEED VARIANT...
one c4-w 1 encoder-wr; one c4-h 1 tied-topk-im-3.0
one c3-e 1 encoder; one c3-t 1 tied-topk
one c5-e 2 encoder; one c5-t 2 tied-topk
one c6-w 2 encoder-wr; one c6-h 2 tied-topk-im-3.0
one s0-pair 0 encoder-wr tied-topk-im-3.0; one s0-w 0 encoder-wr; one s0-h 0 tied-topk-im-3.0
$PY $HERE/init_check.py > $HERE/init.log
$PY $CHECK summary $TMP c3-e c3-t c4-w c4-h c5-e c5-t c6-w c6-h s0-pair s0-w s0-h --no-dead \
  > $HERE/summary.txt
cat $HERE/init.log $HERE/summary.txt
