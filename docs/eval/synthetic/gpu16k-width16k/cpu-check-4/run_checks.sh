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
PY=${PY:-.venv/bin/python}
export PYTHONUNBUFFERED=1 PYTHONPATH=src TQDM_DISABLE=1
S=scripts/synthetic_gpu16k_converged.py
B="--role rows --steps 26818 --budget 560 --reserve 250 --latents 16384 --sae-lens-src .carry/s18/sl"
T="--tiny --latents 512 --steps 60 --device cpu"
TMP=$(mktemp -d)
one() {  # name seed variants...
  local name=$1 seed=$2; shift 2
  $PY $S $TMP/$name $B --seed-list $seed --variants "$@" $T 2>&1 | tr '\r' '\n' \
    | grep -v Orthogonalizing > $HERE/$name.log
}
one c4-w 1 encoder-wr; one c4-h 1 tied-topk-im-3.0
one c3-e 1 encoder; one c3-t 1 tied-topk
one c5-e 2 encoder; one c5-t 2 tied-topk
one c6-w 2 encoder-wr; one c6-h 2 tied-topk-im-3.0
one s0-pair 0 encoder-wr tied-topk-im-3.0; one s0-w 0 encoder-wr; one s0-h 0 tied-topk-im-3.0
$PY $HERE/init_check.py > $HERE/init.log
$PY - "$TMP" > $HERE/summary.txt <<'PYEOF'
import json, sys
from pathlib import Path
print("process variant seed untrained_mcc trained_mcc L0 steps_done latents")
for p in ("c3-e", "c3-t", "c4-w", "c4-h", "c5-e", "c5-t", "c6-w", "c6-h", "s0-pair", "s0-w", "s0-h"):
    d = json.loads((Path(sys.argv[1]) / p / "rows" / "results.json").read_text())
    for r in d["rows"]:
        print(p, r["variant"], r["seed"], repr(r["untrained"]["mcc"]), repr(r["trained"]["mcc"]),
              round(r["trained"]["l0"], 1), r["steps_done"], d["options"]["latents"])
PYEOF
rm -rf "$TMP"
cat $HERE/init.log $HERE/summary.txt
