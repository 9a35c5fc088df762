#!/usr/bin/env bash
# gpu16k-wr-hybrid-PLAN.md, checked on the CPU before commit. From the repository root:
#   bash docs/eval/synthetic/gpu16k-wr-hybrid/cpu-check/run_checks.sh
# 1. each process line of calls W1 and W2 at tiny size (the plan's line with --tiny --latents 512
#    --steps 60 --device cpu appended): logs w1-0.log, w1-1.log, w2-2.log, w2-h0.log; each row's
#    untrained MCC must equal the hybrid's of the same seed;
# 2. init.log: the shared init at the 16k recipe's sizes, parameter by parameter: tied-topk-im-3.0
#    and tied-topk (whose committed untrained MCC the rule uses) against tied-topk-im-3.0-wr.
# summary.txt: each row's untrained and trained MCC, L0, dead latents and steps.
set -euo pipefail
HERE=docs/eval/synthetic/gpu16k-wr-hybrid/cpu-check
A="--role rows --steps 47927 --budget 560 --reserve 120 --sae-lens-src .carry/s18/sl"
source docs/eval/synthetic/cpu_check.sh  # PY, S, T, CHECK, TMP and one NAME SEED VARIANT...
one w1-0 0 tied-topk-im-3.0-wr; one w1-1 1 tied-topk-im-3.0-wr
one w2-2 2 tied-topk-im-3.0-wr; one w2-h0 0 tied-topk-im-3.0
one h1 1 tied-topk-im-3.0; one h2 2 tied-topk-im-3.0
$PY $CHECK init-check --width 4096 --same tied-topk-im-3.0-wr tied-topk-im-3.0 tied-topk \
  > $HERE/init.log
$PY $CHECK summary $TMP w1-0 w1-1 w2-2 w2-h0 h1 h2 > $HERE/summary.txt
cat $HERE/init.log $HERE/summary.txt
