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
PY=${PY:-.venv/bin/python}
export PYTHONUNBUFFERED=1 PYTHONPATH=src TQDM_DISABLE=1
S=scripts/synthetic_gpu16k_converged.py
A="--role rows --steps 47927 --budget 320 --reserve 120 --sae-lens-src .carry/s18/sl"
T="--tiny --latents 512 --steps 60 --device cpu"
TMP=$(mktemp -d)
one() {  # name seed variant
  $PY $S $TMP/$1 $A --seed-list $2 --variants $3 $T 2>&1 | tr '\r' '\n' \
    | grep -v Orthogonalizing > $HERE/$1.log
}
one i0 0 encoder-im0.01; one i1 1 encoder-im0.01; one e0 0 encoder; one e1 1 encoder
$PY - > $HERE/init.log <<'PYEOF'
import torch
from implicit_em.eval.options import VARIANTS
from implicit_em.eval.synthetic import make_model
for seed in (0, 1, 2):
    got = []
    for name in ("encoder", "encoder-im0.01"):
        torch.manual_seed(seed)
        got.append(make_model(VARIANTS[name], 768, 4096, 34.3).state_dict())
    same = got[0].keys() == got[1].keys() and all(torch.equal(got[0][k], got[1][k]) for k in got[0])
    print(f"seed {seed}: encoder-im0.01 init == encoder init (D 768, width 4,096): {same}")
PYEOF
$PY - "$TMP" > $HERE/summary.txt <<'PYEOF'
import json, sys
from pathlib import Path
print("process variant seed untrained_mcc trained_mcc L0 dead steps_done latents")
for p in ("i0", "i1", "e0", "e1"):
    d = json.loads((Path(sys.argv[1]) / p / "rows" / "results.json").read_text())
    for r in d["rows"]:
        print(p, r["variant"], r["seed"], repr(r["untrained"]["mcc"]), repr(r["trained"]["mcc"]),
              round(r["trained"]["l0"], 1), r["trained"]["dead_latents"], r["steps_done"],
              d["options"]["latents"])
PYEOF
rm -rf "$TMP"
cat $HERE/init.log $HERE/summary.txt
