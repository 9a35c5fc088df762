#!/bin/bash
# CPU checks of the gpu6 calls (docs/eval/probing/gpu6_plan.md, "CPU smoke"), with the carry that
# build_carry.sh made under $S (default /work/main/.carry/s11g); logs -> $L (default $S/checks).
# 1. wrong call orders stop with exit 3 (no LM);
# 2. the default three calls with the real carry: the run's python is stopped by its SIGINT
#    after PYTIMEOUT = 60 s, during the CPU harvest of the 2 M tokens (python rc 124): the
#    GGUF joins, the data and plan are accepted, the LM loads from the carried gguf;
# 3. a bad plan in a copy of c4 is refused before the LM (exit 5);
# 4. the exact run path end to end on the real SmolLM2 at tiny size: a copy of c4 whose data
#    is `prepare`'s at a tiny plan ($TINY) and whose plan.json runs K = 64 and 128, seeds 0-1:
#    every row trained, probed and spliced, results.json and the tarball written, the
#    reproduction check and compare6.py run on the output.
W=${W:-/work/main}; S=${S:-$W/.carry/s11g}; L=${L:-$S/checks}; PY=${PY:-$W/.venv/bin/python}
export PATH=$(dirname "$PY"):$PATH P4=${P4:-/tmp/s11g_p4} DEV=cpu WORKERS=0
T=/tmp/s11g_chk; rm -rf "$L" "$P4" $T; mkdir -p "$L" $T
set -o pipefail
run() { local name=$1; shift; ( "$@" ) 2>&1 | tee "$L/log_$name.txt" | grep -v "Converting\|Loading weights"; echo "rc $?" | tee -a "$L/log_$name.txt"; }
echo "== sizes"; du -sb "$S"/c1 "$S"/c2 "$S"/c3 "$S"/c4 | tee "$L/sizes.txt"
echo "tree of $W: $(cd "$W" && git ls-files -z | xargs -0 du -cb | tail -1)" | tee -a "$L/sizes.txt"
echo "code of c4: $(cat "$S/c4/code/COMMIT")" | tee -a "$L/sizes.txt"
echo "== order"
run order_call2_first env OUT=$T/o1 bash "$S/c2/call2.sh"
run order_run_first env OUT=$T/o2 bash "$S/c4/call_run.sh"
echo "== the three calls (PYTIMEOUT 60: stopped in the CPU harvest)"
run call1 env OUT=$T/o3 bash "$S/c1/call1.sh"
run order_call3_before_call2 env OUT=$T/o4 bash "$S/c3/call3.sh"
run call2 env OUT=$T/o5 bash "$S/c2/call2.sh"
run call3 env PYTIMEOUT=60 bash -c "OUT=$T/o6 bash $S/c3/call3.sh && OUT=$T/o6 bash $S/c4/call_run.sh"
echo "$T/o6: $(cd $T/o6 && find . -type f | sort | tr '\n' ' ')" | tee -a "$L/log_call3.txt"
echo "== refused before the LM"
cp -r "$S/c4" $T/bad && sed -i 's/"twin_of": "encoder-softplus"/"twin_off": "encoder-softplus"/' \
  $T/bad/code/docs/eval/probing/gpu6/plan.json
run bad_plan env OUT=$T/o7 bash $T/bad/call_run.sh
echo "== the run path end to end on SmolLM2 at tiny size"
TINY=${TINY:-'{"train_tokens": 8000, "held_contexts": 8, "ce_contexts": 2, "fit_tokens": 2000, "quota": [60, 20, 60, 30, 30], "n_tokens": 16, "per_doc": 2, "max_per_class": 40, "batch_size": 512, "tc_probes": 8}'}
cp -r "$S/c4" $T/tiny && rm $T/tiny/data/data.* $T/tiny/data/SHA256SUMS
(cd "$W" && HF_HUB_OFFLINE=1 PYTHONPATH="$W/src" "$PY" scripts/probing_gpu.py prepare \
  --model "$P4/SmolLM2-135M-Instruct.Q4_1.gguf" --out $T/tiny/data/data --plan-json "$TINY") \
  > "$L/log_tiny_prepare.txt" 2>&1; echo "tiny prepare rc $?" | tee -a "$L/log_tiny_prepare.txt"
(cd $T/tiny/data && sha256sum data.npz data.json > SHA256SUMS)
"$PY" - $T/tiny/code/docs/eval/probing/gpu6/plan.json <<'PY'
import json, sys
p = json.load(open(sys.argv[1])); p.update(Ks=[64, 128], seeds=[0, 1])
open(sys.argv[1], "w").write(json.dumps(p, indent=1))
PY
run tiny_call3 env PYTIMEOUT=400 TL=300 OUT=$T/o8 bash $T/tiny/call_run.sh
echo "$T/o8: $(cd $T/o8 && find . -type f | sort | tr '\n' ' ')" | tee -a "$L/log_tiny_call3.txt"
run tiny_compare6 bash -c "cd $T/tiny/code && PYTHONPATH=src $PY docs/eval/probing/gpu6/compare6.py \
  --results $T/o8/r6/results.json --baseline $W/docs/eval/probing/gpu2/gpu2_compare.json --out $T/o8/cmp"
