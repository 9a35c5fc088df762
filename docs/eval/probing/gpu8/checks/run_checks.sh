#!/bin/bash
# CPU checks of the gpu8 calls (docs/eval/probing/gpu8_plan.md, "CPU checks", item 2), with the
# carry that gpu8/build_carry.sh made under $S (default /work/main/.carry/g8); logs -> $L
# (default $S/checks). As gpu7/checks/run_checks.sh, for run 8 (four calls: the GGUF parts in
# calls 1-3, the run alone in call 4):
# 1. the run without calls 1-3 stops with exit 3 (no LM);
# 2. the four calls with the real carry (gpu6's call1-3.sh, gpu8's call_run.sh): the run's
#    python is stopped by its SIGINT after PYTIMEOUT = 60 s, in the CPU harvest of the 2 M
#    tokens (python rc 124): the GGUF joins, the data and plan are accepted, the fused path is
#    off, the LM loads from the carried gguf;
# 3. a bad plan in a copy of c4 (k_of naming no row) is refused before the LM (exit 5); a copy
#    of c4 whose call_run.sh sets IMPLICIT_EM_FUSED=on stops before the LM (exit 6);
# 4. the exact run path end to end on the real SmolLM2 at tiny size: a copy of c4 whose data
#    is `prepare`'s at a tiny plan ($TINY) and whose plan.json runs K = 64 and 128, seeds 0-1:
#    every row trained, probed and spliced, results.json and the tarball written, the
#    reproduction check and compare8.py run on the output.
W=${W:-/work/main}; S=${S:-$W/.carry/g8}; L=${L:-$S/checks}; PY=${PY:-$W/.venv/bin/python}
export PATH=$(dirname "$PY"):$PATH P4=${P4:-/tmp/g8_p4} DEV=cpu WORKERS=0
T=/tmp/g8_chk; rm -rf "$L" "$P4" $T; mkdir -p "$L" $T
set -o pipefail
run() { local name=$1; shift; ( "$@" ) 2>&1 | tee "$L/log_$name.txt" | grep -v "Converting\|Loading weights"; echo "rc $?" | tee -a "$L/log_$name.txt"; }
echo "== sizes"; du -sb "$S"/c1 "$S"/c2 "$S"/c3 "$S"/c4 | tee "$L/sizes.txt"
echo "tree of $W: $(cd "$W" && git ls-files -z | xargs -0 du -cb | tail -1)" | tee -a "$L/sizes.txt"
echo "code of c4: $(cat "$S/c4/code/COMMIT")" | tee -a "$L/sizes.txt"
echo "== order"
run order_run_first env OUT=$T/o1 bash "$S/c4/call_run.sh"
echo "== the four calls (PYTIMEOUT 60: stopped in the CPU harvest)"
run call1 env OUT=$T/o2 bash "$S/c1/call1.sh"
run call2 env OUT=$T/o3 bash "$S/c2/call2.sh"
run call3 env OUT=$T/o4 bash "$S/c3/call3.sh"
run call4 env PYTIMEOUT=60 OUT=$T/o5 bash "$S/c4/call_run.sh"
echo "$T/o5: $(cd $T/o5 && find . -type f | sort | tr '\n' ' ')" | tee -a "$L/log_call4.txt"
echo "== refused before the LM"
cp -r "$S/c4" $T/bad && sed -i 's/"k_of": "encoder-im0.01"/"k_of": "encoder-im0.1"/' \
  $T/bad/code/docs/eval/probing/gpu8/plan.json
run bad_plan env OUT=$T/o6 bash $T/bad/call_run.sh
cp -r "$S/c4" $T/fused && sed -i 's/^export IMPLICIT_EM_FUSED=off/export IMPLICIT_EM_FUSED=on/' \
  $T/fused/call_run.sh
run fused_guard env OUT=$T/o7 bash $T/fused/call_run.sh
echo "== the run path end to end on SmolLM2 at tiny size"
TINY=${TINY:-'{"train_tokens": 8000, "held_contexts": 8, "ce_contexts": 2, "fit_tokens": 2000, "quota": [60, 20, 60, 30, 30], "n_tokens": 16, "per_doc": 2, "max_per_class": 40, "batch_size": 512, "tc_probes": 8}'}
cp -r "$S/c4" $T/tiny && rm $T/tiny/data/data.* $T/tiny/data/SHA256SUMS
(cd "$W" && HF_HUB_OFFLINE=1 PYTHONPATH="$W/src" "$PY" scripts/probing_gpu.py prepare \
  --model "$P4/SmolLM2-135M-Instruct.Q4_1.gguf" --out $T/tiny/data/data --plan-json "$TINY") \
  > "$L/log_tiny_prepare.txt" 2>&1; echo "tiny prepare rc $?" | tee -a "$L/log_tiny_prepare.txt"
(cd $T/tiny/data && sha256sum data.npz data.json > SHA256SUMS)
"$PY" - $T/tiny/code/docs/eval/probing/gpu8/plan.json <<'PY'
import json, sys
p = json.load(open(sys.argv[1])); p.update(Ks=[64, 128], seeds=[0, 1])
open(sys.argv[1], "w").write(json.dumps(p, indent=1))
PY
run tiny_call4 env PYTIMEOUT=400 TL=300 OUT=$T/o8 bash $T/tiny/call_run.sh
echo "$T/o8: $(cd $T/o8 && find . -type f | sort | tr '\n' ' ')" | tee -a "$L/log_tiny_call4.txt"
run tiny_compare8 bash -c "cd $T/tiny/code && PYTHONPATH=src $PY docs/eval/probing/gpu8/compare8.py \
  --results $T/o8/r8/results.json --baseline $W/docs/eval/probing/gpu2/gpu2_compare.json --out $T/o8/cmp"
