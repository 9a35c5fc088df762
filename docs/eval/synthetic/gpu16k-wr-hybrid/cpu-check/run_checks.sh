#!/usr/bin/env bash
# gpu16k-wr-hybrid-PLAN.md, checked on the CPU before commit. From the repository root:
#   bash docs/eval/synthetic/gpu16k-wr-hybrid/cpu-check/run_checks.sh
# 1. each process line of calls W1 and W2 at tiny size (the plan's line with --tiny --latents 512
#    --steps 60 --device cpu appended): logs w1-0.log, w1-1.log, w2-2.log, w2-h0.log; each row's
#    untrained MCC must equal the hybrid's of the same seed;
# 2. init_check.py: the shared init at the 16k recipe's sizes, parameter by parameter (init.log).
# summary.txt: each row's untrained and trained MCC, L0, dead latents and steps.
set -euo pipefail
HERE=docs/eval/synthetic/gpu16k-wr-hybrid/cpu-check
PY=${PY:-.venv/bin/python}
export PYTHONUNBUFFERED=1 PYTHONPATH=src TQDM_DISABLE=1
S=scripts/synthetic_gpu16k_converged.py
A="--role rows --steps 47927 --budget 560 --reserve 120 --sae-lens-src .carry/s18/sl"
T="--tiny --latents 512 --steps 60 --device cpu"
TMP=$(mktemp -d)
one() {  # name seed variant
  $PY $S $TMP/$1 $A --seed-list $2 --variants $3 $T 2>&1 | tr '\r' '\n' \
    | grep -v Orthogonalizing > $HERE/$1.log
}
one w1-0 0 tied-topk-im-3.0-wr; one w1-1 1 tied-topk-im-3.0-wr
one w2-2 2 tied-topk-im-3.0-wr; one w2-h0 0 tied-topk-im-3.0
one h1 1 tied-topk-im-3.0; one h2 2 tied-topk-im-3.0
$PY $HERE/init_check.py > $HERE/init.log
$PY - "$TMP" > $HERE/summary.txt <<'PYEOF'
import json, sys
from pathlib import Path
print("process variant seed untrained_mcc trained_mcc L0 dead steps_done latents")
for p in ("w1-0", "w1-1", "w2-2", "w2-h0", "h1", "h2"):
    d = json.loads((Path(sys.argv[1]) / p / "rows" / "results.json").read_text())
    for r in d["rows"]:
        print(p, r["variant"], r["seed"], repr(r["untrained"]["mcc"]), repr(r["trained"]["mcc"]),
              round(r["trained"]["l0"], 1), r["trained"]["dead_latents"], r["steps_done"],
              d["options"]["latents"])
PYEOF
rm -rf "$TMP"
cat $HERE/init.log $HERE/summary.txt
