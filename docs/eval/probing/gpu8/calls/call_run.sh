#!/bin/bash
# GPU run 8 (docs/eval/probing/gpu8_plan.md): the run, alone in call 4 after gpu6's call1-3.sh
# (calls 1-3: the GGUF in three parts). As gpu7/calls/call_run.sh, for run 8: checks the GGUF
# left in $P4 by calls 1-3 and the carried data (c4/data: gpu2's 2 M-token data made again by
# `prepare`), sets IMPLICIT_EM_FUSED=off (every LSE / InfoMax term through the plain PyTorch
# formulas: the plan's choice, so that gpu3's encoder, topk and encoder-wr repeat bit for bit)
# and stops with exit 6 if the fused path would still be taken, checks the plan as `run` will
# read it (exit 5 if refused), runs docs/eval/probing/gpu6/run6.sh with
# PLAN_DIR=docs/eval/probing/gpu8 RES=r8 from the carried code (commit in code/COMMIT), gguf
# 0.19 as a source copy, then prints the reproduction check against gpu3
# (docs/eval/probing/gpu6/check_repro.py, gpu3's three results files). One GPU.
C=$(cd "$(dirname "$0")" && pwd); P4=${P4:-/tmp/p11}; OUT=${OUT:?OUT not set}; DD="$C/data"
mkdir -p "$OUT"
echo "[$(date -u +%T)] run 8 start, code $(cat "$C/code/COMMIT")"
if [ ! -f "$P4/gguf.ok" ]; then
  echo "run 8: $P4/gguf.ok missing: calls 1-3 did not run on this machine (it went back?)."
  echo "Fire calls 1, 2, 3 and 4 again, back to back."; exit 3
fi
(cd "$P4" && sha256sum -c gguf.sha256) || { echo "run 8: GGUF sha256 mismatch"; exit 4; }
(cd "$DD" && sha256sum -c SHA256SUMS) || { echo "run 8: data sha256 mismatch"; exit 4; }
cp "$DD/data.npz" "$P4/data.npz" && cp "$DD/data.json" "$P4/data.json"
export PYTHONPATH="$C/code/src:$C/pylib" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export IMPLICIT_EM_FUSED=off  # gpu8_plan.md, "Kernels": the plain formulas for every row
export IMPLICIT_EM_CACHE=${IMPLICIT_EM_CACHE:-$P4/cache}  # the dequantized LM
cd "$C/code"
python3 -c "import importlib.metadata as m, gguf, torch, transformers; print('gguf', m.version('gguf'), gguf.__file__, 'torch', torch.__version__, 'transformers', transformers.__version__, 'gpus', torch.cuda.device_count())"
python3 - <<'PY' || { echo "run 8: the fused kernels would run (IMPLICIT_EM_FUSED not off?): not starting"; exit 6; }
import os, sys, torch
import implicit_em.kernels.infomax as i, implicit_em.kernels.triton_infomax as t
from implicit_em.kernels import fused_active
from implicit_em.train.distributed import TERMS
a = torch.zeros(2, 2, device="cuda" if torch.cuda.is_available() else "cpu")
on = fused_active(a)
print("kernels: IMPLICIT_EM_FUSED", os.environ.get("IMPLICIT_EM_FUSED"), "fused on", a.device,
      on, "TERMS", TERMS, "(unused with fused off: STATS", t.STATS, "DOT", t.DOT, "FOLD",
      i.FOLD, ")")
sys.exit(1 if on else 0)
PY
# the plan as `run` will read it (the data's stored plan, plan.json on top, rows checked by
# plan_fields), before the LM: a refused plan stops here with exit 5
python3 - "$P4/data.json" <<'PY' || { echo "run 8: the plan was refused (line above): fix gpu8/plan.json, rebuild c4"; exit 5; }
import json, sys
from dataclasses import replace
from implicit_em.eval.probing_study.plan import Plan, plan_fields, read_plan_json
meta = json.load(open(sys.argv[1]))
try:
    over = read_plan_json("@docs/eval/probing/gpu8/plan.json")
    plan = replace(Plan(**plan_fields(meta["plan"], "data.json")), **plan_fields(over))
except (ValueError, FileNotFoundError) as e:
    sys.exit(f"plan refused: {e}")
lab = lambda r: r.get("label") or r["family"]
print("plan accepted:", len(plan.rows), "rows", [lab(r) for r in plan.rows], "Ks", plan.Ks,
      "seeds", plan.seeds, "epochs", plan.epochs, "twin_mean", plan.twin_mean, "train tokens",
      meta["train_tokens"], "loss", {lab(r): r["loss"] for r in plan.rows if r.get("loss")},
      "twin_of", {lab(r): r["twin_of"] for r in plan.rows if r.get("twin_of")},
      "k_of", {lab(r): r["k_of"] for r in plan.rows if r.get("k_of")})
PY
echo "[$(date -u +%T)] run 8 starts"
PLAN_DIR=docs/eval/probing/gpu8 RES=r8 bash docs/eval/probing/gpu6/run6.sh "$P4" "$OUT"
RC=$?
G3=docs/eval/probing/gpu3
if [ -f "$OUT/r8/results.json" ]; then
  python3 docs/eval/probing/gpu6/check_repro.py "$OUT/r8/results.json" $G3/results_r4.json \
    $G3/results_r16a.json $G3/results_r16b.json \
    || echo "run 8: the reproduction check could not read the results"
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used --format=csv
echo "[$(date -u +%T)] run 8 end after ${SECONDS} s, run6.sh rc $RC"
exit "$RC"
