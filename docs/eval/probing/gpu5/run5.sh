#!/bin/bash
# GPU run 5 (docs/eval/probing/gpu5_plan.md): ONE of its three runs, from a folder holding
# src/, scripts/probing_gpu.py and docs/eval/probing/gpu5/plan_$3.json. $1 holds the GGUF and
# the data stems data4.* (gpu4's 2 M-token data) and data5.* (all 7,227,697 train-side
# tokens); $2 is $OUT; $3 is the run: repro (gpu4's data, one pass, K = 4096 and 16384,
# seed 0, rows encoder + topk: the reproduction check), K16384 or K4096 (data5, 2 passes,
# seeds 0-2, six rows). ONE process on ONE GPU ($DEV). No block starts after $TL s on the
# log's clock; the python gets SIGINT at $PT s (KILL 10 s later); results.json is rewritten
# after every block, so finished blocks survive. Then r5_$3/ and the log are tarred into
# $OUT/gpu5_$3.tar.gz. The overrides (DEV, TL, PYTIMEOUT, WORKERS) exist for the CPU check.
D=$1; OUT=$2; R=$3; P=docs/eval/probing/gpu5
case "$R" in
  repro) STEM=data4; TLD=150; PTD=170 ;;
  K16384) STEM=data5; TLD=365; PTD=540 ;;
  K4096) STEM=data5; TLD=300; PTD=440 ;;
  *) echo "run5.sh: the run must be repro, K16384 or K4096, got '$R'"; exit 2 ;;
esac
DEV=${DEV:-cuda:0}; TL=${TL:-$TLD}; PT=${PYTIMEOUT:-$PTD}; W=${WORKERS:-12}
export PYTHONPATH=${PYTHONPATH:-src} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p "$OUT/r5_$R"
timeout -s INT -k 10 "$PT" python3 scripts/probing_gpu.py run --data "$D/$STEM" \
  --model "$D/SmolLM2-135M-Instruct.Q4_1.gguf" --out "$OUT/r5_$R" --device "$DEV" \
  --time-limit "$TL" --workers "$W" --plan-json "@$P/plan_$R.json" 2>&1 | tee "$OUT/log_r5_$R.txt"
RC=${PIPESTATUS[0]}
echo "r5_$R: python rc $RC"
grep -h "done\|FAILED\|time limit\|Error" "$OUT/log_r5_$R.txt" | tail -20
tar -czf "$OUT/gpu5_$R.tar.gz" -C "$OUT" "r5_$R" "log_r5_$R.txt" && ls -l "$OUT" "$OUT/r5_$R"
exit "$RC"
