#!/bin/bash
# GPU run 5 (docs/eval/probing/gpu5_plan.md), one run per device call: call_run.sh repro (in
# call 3, after call3.sh), K16384 (call 4), K4096 (call 5). Checks the GGUF left in $P4 by
# calls 1-3 and the carried data (data4 here in c4; data5 in ../c5 for K16384 / K4096),
# checks the plan as `run` will read it (exit 5 if refused), runs
# docs/eval/probing/gpu5/run5.sh from the carried code (commit in code/COMMIT), gguf 0.19 as a
# source copy; after the repro run prints the reproduction check against gpu4. One GPU.
C=$(cd "$(dirname "$0")" && pwd); P4=${P4:-/tmp/p7}; OUT=${OUT:?OUT not set}; R=$1
case "$R" in
  repro) STEM=data4; DD="$C/data4" ;;
  K16384|K4096) STEM=data5; DD="$C/../c5/data5" ;;
  *) echo "call_run.sh: the run must be repro, K16384 or K4096, got '$R'"; exit 2 ;;
esac
mkdir -p "$OUT"
echo "[$(date -u +%T)] run $R start, code $(cat "$C/code/COMMIT")"
if [ ! -f "$P4/gguf.ok" ]; then
  echo "run $R: $P4/gguf.ok missing: calls 1-3 did not run on this machine (it went back?)."
  echo "Fire calls 1, 2 and 3 again, back to back, then this one."; exit 3
fi
if [ ! -d "$DD" ]; then
  echo "run $R: $DD missing: carry .carry/s8g/c4 and .carry/s8g/c5 in this call"; exit 3
fi
(cd "$P4" && sha256sum -c gguf.sha256) || { echo "run $R: GGUF sha256 mismatch"; exit 4; }
(cd "$DD" && sha256sum -c SHA256SUMS) || { echo "run $R: data sha256 mismatch"; exit 4; }
cp "$DD/data.npz" "$P4/$STEM.npz" && cp "$DD/data.json" "$P4/$STEM.json"
export PYTHONPATH="$C/code/src:$C/pylib" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export IMPLICIT_EM_CACHE=${IMPLICIT_EM_CACHE:-$P4/cache}  # the dequantized LM, kept for the next call
cd "$C/code"
python3 -c "import importlib.metadata as m, gguf, torch, transformers; print('gguf', m.version('gguf'), gguf.__file__, 'torch', torch.__version__, 'transformers', transformers.__version__, 'gpus', torch.cuda.device_count())"
ls "$IMPLICIT_EM_CACHE/models" 2>/dev/null | sed 's/^/dequantized LM cached: /'
# the plan as `run` will read it (the data's stored plan, plan_$R.json on top, rows and epochs
# checked by plan_fields), before the LM: a refused plan stops here with exit 5
python3 - "$P4/$STEM.json" "$R" <<'PY' || { echo "run $R: the plan was refused (line above): fix plan_$R.json, rebuild c4"; exit 5; }
import json, sys
from dataclasses import replace
from implicit_em.eval.probing_study.plan import Plan, plan_fields, read_plan_json
meta = json.load(open(sys.argv[1]))
try:
    over = read_plan_json(f"@docs/eval/probing/gpu5/plan_{sys.argv[2]}.json")
    plan = replace(Plan(**plan_fields(meta["plan"], "data.json")), **plan_fields(over))
except (ValueError, FileNotFoundError) as e:
    sys.exit(f"plan refused: {e}")
lab = lambda r: r.get("label") or r["family"]
print("plan accepted:", len(plan.rows), "rows", [lab(r) for r in plan.rows], "Ks", plan.Ks,
      "seeds", plan.seeds, "epochs", plan.epochs, "train tokens", meta["train_tokens"],
      "weights_of", {lab(r): r["weights_of"] for r in plan.rows if r.get("weights_of")})
PY
echo "[$(date -u +%T)] run $R starts"
bash docs/eval/probing/gpu5/run5.sh "$P4" "$OUT" "$R"
RC=$?
if [ "$R" = repro ] && [ -f "$OUT/r5_repro/results.json" ]; then
  python3 docs/eval/probing/gpu5/check_repro.py "$OUT/r5_repro/results.json" \
    docs/eval/probing/gpu4/results_r4.json || echo "run repro: the check could not read the results"
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used --format=csv
echo "[$(date -u +%T)] run $R end after ${SECONDS} s, run5 rc $RC"
exit "$RC"
