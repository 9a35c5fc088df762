#!/usr/bin/env bash
# gpu16k-k304-PLAN.md, checked on the CPU before commit. From the repository root:
#   bash docs/eval/synthetic/gpu16k-k304/cpu-check/run_checks.sh
# 1. the plan's process line for each seed at tiny size (--tiny --latents 512 --steps 60
#    --device cpu appended: k = 304 needs at least 304 latents), log k<seed>.log;
# 2. topk-k214 and topk-k25 at the same seeds and sizes (r<seed>.log): their untrained MCC
#    must equal topk-k304's (the init does not depend on k);
# 3. init_check.py: the same at the 16k recipe's sizes, parameter by parameter (init.log);
# 4. the packed call 5 as the plan writes it (read from the plan), each python3 a wrapper that
#    appends the tiny sizes (packed-call5.log).
# summary.txt: each row's untrained and trained MCC, L0 and steps, from the results files.
set -euo pipefail
HERE=docs/eval/synthetic/gpu16k-k304/cpu-check
PY=${PY:-.venv/bin/python}
export PYTHONUNBUFFERED=1 PYTHONPATH=src TQDM_DISABLE=1
S=scripts/synthetic_gpu16k_converged.py
A="--role rows --steps 47927 --budget 560 --reserve 120 --sae-lens-src .carry/s18/sl --variants topk-k304"
T="--tiny --latents 512 --steps 60 --device cpu"
TMP=$(mktemp -d)
for s in 0 1 2; do
  $PY $S $TMP/k$s $A --seed-list $s $T 2>&1 | tr '\r' '\n' | grep -v Orthogonalizing > $HERE/k$s.log
  $PY $S $TMP/r$s ${A% --variants *} --variants topk-k214 topk-k25 --seed-list $s $T 2>&1 \
    | tr '\r' '\n' | grep -v Orthogonalizing > $HERE/r$s.log
done
$PY $HERE/init_check.py > $HERE/init.log
mkdir -p $TMP/bin $TMP/packed
printf '#!/bin/bash\nexec %s "$@" %s\n' "$(cd "$(dirname $PY)" && pwd)/$(basename $PY)" "$T" > $TMP/bin/python3
chmod +x $TMP/bin/python3
awk '/call 5 \(`nvidia-h200-x2`, `timeout_s` 598/{f=1} f&&/^    /{print substr($0,5)} f&&/^It is 840/{exit}' \
  docs/eval/synthetic/gpu16k-k304-PLAN.md > $TMP/call5.sh
OUT=$TMP/packed PATH=$TMP/bin:$PATH bash $TMP/call5.sh 2>&1 | grep -v '^$' > $HERE/packed-call5.log
$PY - "$TMP" > $HERE/summary.txt <<'PYEOF'
import json, sys
from pathlib import Path
print("process variant seed untrained_mcc trained_mcc L0 steps_done latents")
for p in ("k0", "r0", "k1", "r1", "k2", "r2"):
    d = json.loads((Path(sys.argv[1]) / p / "rows" / "results.json").read_text())
    for r in d["rows"]:
        print(p, r["variant"], r["seed"], repr(r["untrained"]["mcc"]), round(r["trained"]["mcc"], 4),
              round(r["trained"]["l0"], 1), r["steps_done"], d["options"]["latents"])
PYEOF
rm -rf "$TMP"
cat $HERE/init.log $HERE/summary.txt $HERE/packed-call5.log
