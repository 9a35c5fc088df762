#!/usr/bin/env bash
# gpu16k-width16k-im001-PLAN.md, checked on the CPU before commit. From the repository root:
#   bash docs/eval/synthetic/gpu16k-width16k/cpu-check-im001/run_checks.sh
# Each process line of calls 7 and 8 at tiny size (the plan's line with --tiny --latents 512
# --steps 60 --device cpu appended; logs c7-i0.log, c7-i1.log, c8-i2.log), with the encoder of
# the same seeds beside them (e0-e2.log): each encoder-im0.01 row's untrained MCC must equal
# the encoder's of its seed; init.log: the same parameters at D = 768, width 16,384, seeds 0-2.
set -euo pipefail
HERE=docs/eval/synthetic/gpu16k-width16k/cpu-check-im001
PY=${PY:-.venv/bin/python}
export PYTHONUNBUFFERED=1 PYTHONPATH=src TQDM_DISABLE=1
S=scripts/synthetic_gpu16k_converged.py
A="--role rows --steps 26818 --budget 560 --reserve 250 --latents 16384 --sae-lens-src .carry/s18/sl"
T="--tiny --latents 512 --steps 60 --device cpu"
TMP=$(mktemp -d)
one() {  # name seed variant
  $PY $S $TMP/$1 $A --seed-list $2 --variants $3 $T 2>&1 | tr '\r' '\n' \
    | grep -v Orthogonalizing > $HERE/$1.log
}
one c7-i0 0 encoder-im0.01; one c7-i1 1 encoder-im0.01; one c8-i2 2 encoder-im0.01
for s in 0 1 2; do one e$s $s encoder; done
$PY - > $HERE/init.log <<'PYEOF'
import torch
from implicit_em.eval.options import VARIANTS
from implicit_em.eval.synthetic import make_model
for seed in (0, 1, 2):
    got = []
    for name in ("encoder", "encoder-im0.01"):
        torch.manual_seed(seed)
        got.append(make_model(VARIANTS[name], 768, 16384, 34.3).state_dict())
    same = got[0].keys() == got[1].keys() and all(torch.equal(got[0][k], got[1][k]) for k in got[0])
    print(f"seed {seed}: encoder-im0.01 init == encoder init (D 768, width 16,384): {same}")
PYEOF
$PY - "$TMP" > $HERE/summary.txt <<'PYEOF'
import json, sys
from pathlib import Path
print("process variant seed untrained_mcc trained_mcc L0 dead steps_done latents")
for p in ("c7-i0", "c7-i1", "c8-i2", "e0", "e1", "e2"):
    d = json.loads((Path(sys.argv[1]) / p / "rows" / "results.json").read_text())
    for r in d["rows"]:
        print(p, r["variant"], r["seed"], repr(r["untrained"]["mcc"]), repr(r["trained"]["mcc"]),
              round(r["trained"]["l0"], 1), r["trained"]["dead_latents"], r["steps_done"],
              d["options"]["latents"])
PYEOF
rm -rf "$TMP"
cat $HERE/init.log $HERE/summary.txt
