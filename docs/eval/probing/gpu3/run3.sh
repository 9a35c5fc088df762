#!/bin/bash
# GPU run 3 (docs/eval/probing/gpu3_plan.md), run from a folder holding src/,
# scripts/probing_gpu.py and docs/eval/probing/gpu3/plan_*.json; $1 holds data.* and the GGUF,
# $2 is $OUT. Three processes, as gpu2's run2.sh: K = 4096 seeds 0-2 ($DEV_A), K = 16384 seeds
# 0-1 ($DEV_B), K = 16384 seed 2 ($DEV_A). No block starts after $TL s; each process gets SIGINT
# at $PYTIMEOUT s (results.json is written after every block). The overrides exist for the CPU
# check of the carry only.
D=$1; OUT=$2; P=docs/eval/probing/gpu3
A=${DEV_A:-cuda:0}; B=${DEV_B:-cuda:1}; TL=${TL:-380}; PT=${PYTIMEOUT:-520}; W=${WORKERS:-8}
export PYTHONPATH=${PYTHONPATH:-src} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
M=$D/SmolLM2-135M-Instruct.Q4_1.gguf
run() {  # out-name device plan-file [--seeds ...]
  timeout -s INT "$PT" python3 scripts/probing_gpu.py run --data "$D/data" --model "$M" \
    --out "$OUT/$1" --device "$2" --time-limit "$TL" --workers "$W" --plan-json "@$P/$3" \
    "${@:4}" > "$OUT/log_$1.txt" 2>&1
  echo "$1: python rc $?"
}
run r4 "$A" plan_K4096.json &
run r16a "$B" plan_K16384.json --seeds 0 1 &
run r16b "$A" plan_K16384.json --seeds 2 &
wait
grep -h "done\|FAILED\|time limit\|Error" "$OUT"/log_r*.txt | tail -40
