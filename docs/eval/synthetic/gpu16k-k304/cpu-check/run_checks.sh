#!/usr/bin/env bash
# gpu16k-k304-PLAN.md, checked on the CPU before commit. From the repository root:
#   bash docs/eval/synthetic/gpu16k-k304/cpu-check/run_checks.sh
# 1. the plan's process line for each seed at tiny size (--tiny --latents 512 --steps 60
#    --device cpu appended: k = 304 needs at least 304 latents), log k<seed>.log;
# 2. topk-k214 and topk-k25 at the same seeds and sizes (r<seed>.log): their untrained MCC
#    must equal topk-k304's (the init does not depend on k);
# 3. init_check.py: the same at the 16k recipe's sizes, parameter by parameter (init.log);
# 4. the packed call 5 as the plan writes it (read from the plan), each python3 a wrapper that
#    appends the tiny sizes (packed-call5.log). The plan has not written it since 86fedfb (the
#    packed call dropped): on today's plan this step finds no call 5 and the script stops there;
#    the text it read is `git show 86fedfb^:docs/eval/synthetic/gpu16k-k304-PLAN.md`.
# summary.txt: each row's untrained and trained MCC, L0 and steps, from the results files.
set -euo pipefail
HERE=docs/eval/synthetic/gpu16k-k304/cpu-check
A="--role rows --steps 47927 --budget 560 --reserve 120 --sae-lens-src .carry/s18/sl"
source docs/eval/synthetic/cpu_check.sh  # PY, S, T, CHECK, TMP and one NAME SEED VARIANT...
for s in 0 1 2; do one k$s $s topk-k304; one r$s $s topk-k214 topk-k25; done
$PY $HERE/init_check.py > $HERE/init.log
mkdir -p $TMP/bin $TMP/packed
printf '#!/bin/bash\nexec %s "$@" %s\n' "$(cd "$(dirname $PY)" && pwd)/$(basename $PY)" "$T" > $TMP/bin/python3
chmod +x $TMP/bin/python3
awk '/call 5 \(`nvidia-h200-x2`, `timeout_s` 598/{f=1} f&&/^    /{print substr($0,5)} f&&/^It is 840/{exit}' \
  docs/eval/synthetic/gpu16k-k304-PLAN.md > $TMP/call5.sh
OUT=$TMP/packed PATH=$TMP/bin:$PATH bash $TMP/call5.sh 2>&1 | grep -v '^$' > $HERE/packed-call5.log
$PY $CHECK summary $TMP k0 r0 k1 r1 k2 r2 --no-dead --trained-digits 4 > $HERE/summary.txt
cat $HERE/init.log $HERE/summary.txt $HERE/packed-call5.log
