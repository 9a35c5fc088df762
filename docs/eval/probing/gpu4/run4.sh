#!/bin/bash
# GPU run 4 (docs/eval/probing/gpu4_plan.md), run from a folder holding src/,
# scripts/probing_gpu.py and docs/eval/probing/gpu4/plan.json; $1 holds data.* and the GGUF,
# $2 is $OUT. ONE process on ONE GPU ($DEV): K = 4096 and 16384, seeds 0-2, blocks in the order
# K4096-s0, K16384-s0, K4096-s1, K16384-s1, K4096-s2, K16384-s2 (the last is the first cut).
# No block starts after $TL s; the python gets SIGINT at $PT s (KILL 10 s later); results.json
# is rewritten after every block, so finished blocks survive. Then everything is tarred into
# $OUT/gpu4_out.tar.gz (the loose files stay too: 3-5 files in all). The overrides exist for
# the CPU check of the carry only.
D=$1; OUT=$2; P=docs/eval/probing/gpu4
DEV=${DEV:-cuda:0}; TL=${TL:-420}; PT=${PYTIMEOUT:-520}; W=${WORKERS:-12}
export PYTHONPATH=${PYTHONPATH:-src} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p "$OUT/r4"
timeout -s INT -k 10 "$PT" python3 scripts/probing_gpu.py run --data "$D/data" \
  --model "$D/SmolLM2-135M-Instruct.Q4_1.gguf" --out "$OUT/r4" --device "$DEV" \
  --time-limit "$TL" --workers "$W" --plan-json "@$P/plan.json" 2>&1 | tee "$OUT/log_r4.txt"
RC=${PIPESTATUS[0]}
echo "r4: python rc $RC"
grep -h "done\|FAILED\|time limit\|Error" "$OUT/log_r4.txt" | tail -20
tar -czf "$OUT/gpu4_out.tar.gz" -C "$OUT" r4 log_r4.txt && ls -l "$OUT" "$OUT/r4"
exit "$RC"
