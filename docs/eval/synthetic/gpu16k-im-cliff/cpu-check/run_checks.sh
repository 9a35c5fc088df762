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
PY=${PY:-.venv/bin/python}
export PYTHONUNBUFFERED=1 PYTHONPATH=src TQDM_DISABLE=1
S=scripts/synthetic_gpu16k_converged.py
A="--role rows --steps 47927 --budget 430 --reserve 60 --sae-lens-src .carry/s18/sl"
W="encoder-im0.005 encoder-im0.007"
L="encoder-im0.003 encoder-im0"
T="--tiny --latents 512 --steps 60 --device cpu"
TMP=$(mktemp -d)
one() {  # name seed variants...
  local name=$1 seed=$2; shift 2
  $PY $S $TMP/$name $A --seed-list $seed --variants "$@" $T 2>&1 | tr '\r' '\n' \
    | grep -v Orthogonalizing > $HERE/$name.log
}
one c0 0 $W; one c1 1 $W; one c2 2 $W; one l2 2 $L
for s in 0 1 2; do one e$s $s encoder; done
$PY - > $HERE/init.log <<'PYEOF'
import torch
from implicit_em.eval.options import VARIANTS
from implicit_em.eval.synthetic import make_model
for seed in (0, 1, 2):
    torch.manual_seed(seed)
    want = make_model(VARIANTS["encoder"], 768, 4096, 34.3).state_dict()
    for name in ("encoder-im0.005", "encoder-im0.007", "encoder-im0.003", "encoder-im0"):
        torch.manual_seed(seed)
        got = make_model(VARIANTS[name], 768, 4096, 34.3).state_dict()
        same = got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
        print(f"seed {seed}: {name} init == encoder init (D 768, width 4,096): {same}")
PYEOF
$PY - "$TMP" > $HERE/summary.txt <<'PYEOF'
import json, sys
from pathlib import Path
print("process variant seed untrained_mcc trained_mcc L0 dead steps_done latents")
for p in ("c0", "c1", "c2", "l2", "e0", "e1", "e2"):
    d = json.loads((Path(sys.argv[1]) / p / "rows" / "results.json").read_text())
    for r in d["rows"]:
        print(p, r["variant"], r["seed"], repr(r["untrained"]["mcc"]), repr(r["trained"]["mcc"]),
              round(r["trained"]["l0"], 1), r["trained"]["dead_latents"], r["steps_done"],
              d["options"]["latents"])
PYEOF
rm -rf "$TMP"
cat $HERE/init.log $HERE/summary.txt
