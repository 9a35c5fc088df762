#!/bin/bash
# Device call 2 of GPU run 2 (docs/eval/probing/gpu2_plan.md), run from the carry folder
# holding src/, scripts/probing_gpu.py and the two plan files; $1 holds data.* and the joined
# GGUF, $2 is $OUT. Three processes: K = 4096 seeds 0-2 (cuda:0), K = 16384 seeds 0-1
# (cuda:1), K = 16384 seed 2 (cuda:0).
D=$1; OUT=$2
export PYTHONPATH=src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
M=$D/SmolLM2-135M-Instruct.Q4_1.gguf
run() {  # out-name device plan-file [--seeds ...]
  python3 scripts/probing_gpu.py run --data "$D/data" --model "$M" --out "$OUT/$1" \
    --device "$2" --time-limit 110 --workers 8 --plan-json "@$3" "${@:4}" > "$OUT/log_$1" 2>&1
}
run r4 cuda:0 plan_K4096.json &
run r16a cuda:1 plan_K16384.json --seeds 0 1 &
run r16b cuda:0 plan_K16384.json --seeds 2 &
wait
grep -h "done\|FAILED\|time limit\|Error" "$OUT"/log_* | tail -30
nvidia-smi --query-gpu=name,memory.used --format=csv
