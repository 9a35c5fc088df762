#!/usr/bin/env bash
# Issue 20 diagnosis on ONE GPU, same call, one run at a time: tokens/s of the data-parallel
# trainer (world size 1) with dynamo's DDP graph splitting on ("split", torch's default) and off
# ("nosplit"; encoder only), against the same model and loss without DDP (implicit_em.train.modules), for the
# encoder (sketched, 32 probes) and the TopK SAE (k = 32). K = 16384, B = 4096, bf16, compiled.
#     bash benchmarks/ddp_graph_split.sh "$OUT"
set -u
O=${1:-$OUT}
K=${K:-16384} TOK=${TOK:-500000} B=${B:-4096} STEPS=${STEPS:-220} WARM=${WARM:-20}
COMPILE=${COMPILE---compile} AMP=${AMP---amp}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
COMMON="--random-tokens $TOK --steps $STEPS --warmup $WARM $AMP $COMPILE --batch-size $B"
tr() { timeout ${TMO:-100} torchrun --standalone --nproc-per-node 1 "$@"; }
T0=$SECONDS
for fam in encoder topk_sae; do
  if [ $fam = encoder ]; then X="--tc-probes 32"; else X="--type topk_sae"; fi
  MODES="split nosplit"; [ $fam = topk_sae ] && MODES=split
  for mode in $MODES; do
    tr benchmarks/ddp_graph_split.py $mode $COMMON --hidden-dim $K $X \
      --out "$O/${fam}_ddp_$mode.json" > "$O/${fam}_ddp_$mode.log" 2>&1
    echo "$fam ddp $mode rc=$? at $((SECONDS - T0)) s"
  done
  if [ $fam = encoder ]; then X="--tc-probes 32"; else X=""; fi
  tr -m implicit_em.train.modules $COMMON --types $fam --hidden-dims $K $X --seeds 1 \
    --summary "$O/${fam}_plain.json" > "$O/${fam}_plain.log" 2>&1
  echo "$fam plain rc=$? at $((SECONDS - T0)) s"
done
python3 - "$O" <<'PY'
import json, sys, pathlib
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    d = json.loads(p.read_text())
    tps = d.get("tokens_per_s") or d.get("stream_tokens_per_s") or d
    print(p.name, tps if not isinstance(tps, dict) else {k: v for k, v in d.items() if "per_s" in k})
PY
