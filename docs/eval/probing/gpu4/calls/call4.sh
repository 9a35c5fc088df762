#!/bin/bash
# Device call 4 of 4 (GPU run 4, docs/eval/probing/gpu4_plan.md): checks the GGUF left in $P4
# by calls 1-3 and the carried data, then runs docs/eval/probing/gpu4/run4.sh from the carried
# code (commit in code/COMMIT), gguf 0.19 as a source copy, after checking the plan (exit 5 if
# refused). One GPU.
C=$(cd "$(dirname "$0")" && pwd); P4=${P4:-/tmp/p7}; OUT=${OUT:?OUT not set}
mkdir -p "$OUT"
echo "[$(date -u +%T)] call 4 start, code $(cat "$C/code/COMMIT")"
if [ ! -f "$P4/gguf.ok" ]; then
  echo "call 4: $P4/gguf.ok missing: calls 1-3 did not run on this machine (it went back?)."
  echo "Fire calls 1, 2, 3 and 4 again, back to back."; exit 3
fi
(cd "$P4" && sha256sum -c gguf.sha256) || { echo "call 4: GGUF sha256 mismatch"; exit 4; }
(cd "$C/data" && sha256sum -c ../SHA256SUMS) || { echo "call 4: data sha256 mismatch"; exit 4; }
cp "$C/data/data.npz" "$C/data/data.json" "$P4/"
export PYTHONPATH="$C/code/src:$C/pylib" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
cd "$C/code"
python3 -c "import importlib.metadata as m, gguf, torch, transformers; print('gguf', m.version('gguf'), gguf.__file__, 'torch', torch.__version__, 'transformers', transformers.__version__, 'gpus', torch.cuda.device_count())"
# the plan as `run` will read it (data.json's stored plan, gpu4/plan.json on top, rows checked
# by plan.check_rows), before the LM: a refused plan stops here with exit 5
python3 - "$P4/data.json" <<'PY' || { echo "call 4: the plan was refused (line above): fix plan.json, rebuild c4"; exit 5; }
import json, sys
from dataclasses import replace
from implicit_em.eval.probing_study.plan import Plan, plan_fields, read_plan_json
try:
    over = read_plan_json("@docs/eval/probing/gpu4/plan.json")
    plan = replace(Plan(**plan_fields(json.load(open(sys.argv[1]))["plan"], "data.json")), **plan_fields(over))
except (ValueError, FileNotFoundError) as e:
    sys.exit(f"plan refused: {e}")
print("plan accepted:", len(plan.rows), "rows", [r.get("label") or r["family"] for r in plan.rows],
      "Ks", plan.Ks, "seeds", plan.seeds, "readout rows", [r.get("label") or r["family"] for r in plan.rows if r.get("readout")])
PY
echo "[$(date -u +%T)] run starts"
bash docs/eval/probing/gpu4/run4.sh "$P4" "$OUT"
RC=$?
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used --format=csv
echo "[$(date -u +%T)] call 4 end after ${SECONDS} s, run4 rc $RC"
exit "$RC"
