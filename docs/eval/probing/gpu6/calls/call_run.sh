#!/bin/bash
# GPU run 6 (docs/eval/probing/gpu6_plan.md): the run, in call 3 after call3.sh (or alone in
# call 3b, the fallback). Checks the GGUF left in $P4 by calls 1-3 and the carried data
# (c4/data: gpu2's 2 M-token data made again by `prepare`), checks the plan as `run` will
# read it (exit 5 if refused), runs docs/eval/probing/gpu6/run6.sh from the carried code
# (commit in code/COMMIT), gguf 0.19 as a source copy, then prints the reproduction check
# against gpu3 (docs/eval/probing/gpu6/check_repro.py). One GPU.
C=$(cd "$(dirname "$0")" && pwd); P4=${P4:-/tmp/p11}; OUT=${OUT:?OUT not set}; DD="$C/data"
mkdir -p "$OUT"
echo "[$(date -u +%T)] run 6 start, code $(cat "$C/code/COMMIT")"
if [ ! -f "$P4/gguf.ok" ]; then
  echo "run 6: $P4/gguf.ok missing: calls 1-3 did not run on this machine (it went back?)."
  echo "Fire calls 1, 2 and 3 again, back to back."; exit 3
fi
(cd "$P4" && sha256sum -c gguf.sha256) || { echo "run 6: GGUF sha256 mismatch"; exit 4; }
(cd "$DD" && sha256sum -c SHA256SUMS) || { echo "run 6: data sha256 mismatch"; exit 4; }
cp "$DD/data.npz" "$P4/data.npz" && cp "$DD/data.json" "$P4/data.json"
export PYTHONPATH="$C/code/src:$C/pylib" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export IMPLICIT_EM_CACHE=${IMPLICIT_EM_CACHE:-$P4/cache}  # the dequantized LM
cd "$C/code"
python3 -c "import importlib.metadata as m, gguf, torch, transformers; print('gguf', m.version('gguf'), gguf.__file__, 'torch', torch.__version__, 'transformers', transformers.__version__, 'gpus', torch.cuda.device_count())"
python3 -c "import implicit_em.kernels.triton_infomax as t, implicit_em.kernels.infomax as i; print('kernels: STATS', t.STATS, 'GRAD', t.GRAD, 'FOLD', i.FOLD)"
# the plan as `run` will read it (the data's stored plan, plan.json on top, rows checked by
# plan_fields), before the LM: a refused plan stops here with exit 5
python3 - "$P4/data.json" <<'PY' || { echo "run 6: the plan was refused (line above): fix gpu6/plan.json, rebuild c4"; exit 5; }
import json, sys
from dataclasses import replace
from implicit_em.eval.probing_study.plan import Plan, plan_fields, read_plan_json
meta = json.load(open(sys.argv[1]))
try:
    over = read_plan_json("@docs/eval/probing/gpu6/plan.json")
    plan = replace(Plan(**plan_fields(meta["plan"], "data.json")), **plan_fields(over))
except (ValueError, FileNotFoundError) as e:
    sys.exit(f"plan refused: {e}")
lab = lambda r: r.get("label") or r["family"]
print("plan accepted:", len(plan.rows), "rows", [lab(r) for r in plan.rows], "Ks", plan.Ks,
      "seeds", plan.seeds, "epochs", plan.epochs, "train tokens", meta["train_tokens"],
      "twin_of", {lab(r): r["twin_of"] for r in plan.rows if r.get("twin_of")})
PY
echo "[$(date -u +%T)] run 6 starts"
bash docs/eval/probing/gpu6/run6.sh "$P4" "$OUT"
RC=$?
G3=docs/eval/probing/gpu3
if [ -f "$OUT/r6/results.json" ]; then
  python3 docs/eval/probing/gpu6/check_repro.py "$OUT/r6/results.json" \
    $G3/results_r4.json $G3/results_r16a.json $G3/results_r16b.json \
    || echo "run 6: the reproduction check could not read the results"
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used --format=csv
echo "[$(date -u +%T)] run 6 end after ${SECONDS} s, run6 rc $RC"
exit "$RC"
