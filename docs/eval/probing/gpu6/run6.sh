#!/bin/bash
# GPU run 6 (docs/eval/probing/gpu6_plan.md): wr in combination with softplus and with
# unit-norm rows, beside the rows they are compared with, from a folder holding src/,
# scripts/probing_gpu.py and docs/eval/probing/gpu6/plan.json. $1 holds the GGUF and the data
# stem data.* (gpu2's 2 M-token data, made again by `prepare`); $2 is $OUT. ONE process on ONE
# GPU ($DEV): K = 4096 and 16384, seeds 0-2, blocks in the order K4096-s0, K16384-s0, K4096-s1,
# ... No block starts after $TL s on the log's clock; the python gets SIGINT at $PT s (KILL
# 10 s later); results.json is rewritten after every block, so finished blocks survive. Then
# r6/ and the log are tarred into $OUT/gpu6_r6.tar.gz. The overrides (DEV, TL, PYTIMEOUT,
# WORKERS) exist for the CPU check. A later run reuses this script by its folder (PLAN_DIR,
# holding plan.json) and its results' name (RES: $OUT/$RES/, log_$RES.txt,
# gpu<N>_$RES.tar.gz with N from PLAN_DIR): gpu7/calls/call_run.sh sets PLAN_DIR and RES=r7;
# unset, they are run 6's.
D=$1; OUT=$2; P=${PLAN_DIR:-docs/eval/probing/gpu6}; R=${RES:-r6}
DEV=${DEV:-cuda:0}; TL=${TL:-400}; PT=${PYTIMEOUT:-540}; W=${WORKERS:-12}
export PYTHONPATH=${PYTHONPATH:-src} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p "$OUT/$R"
timeout -s INT -k 10 "$PT" python3 scripts/probing_gpu.py run --data "$D/data" \
  --model "$D/SmolLM2-135M-Instruct.Q4_1.gguf" --out "$OUT/$R" --device "$DEV" \
  --time-limit "$TL" --workers "$W" --plan-json "@$P/plan.json" 2>&1 | tee "$OUT/log_$R.txt"
RC=${PIPESTATUS[0]}
echo "$R: python rc $RC"
grep -h "done\|FAILED\|time limit\|Error" "$OUT/log_$R.txt" | tail -20
tar -czf "$OUT/$(basename "$P")_$R.tar.gz" -C "$OUT" "$R" "log_$R.txt" && ls -l "$OUT" "$OUT/$R"
exit "$RC"
