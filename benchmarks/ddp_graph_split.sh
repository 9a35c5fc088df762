#!/usr/bin/env bash
# Issue 20 on ONE GPU, same call, one run at a time: tokens/s of the data-parallel trainer at
# world size 1 (`torchrun --nproc-per-node 1 -m implicit_em.train.distributed`, which now takes
# the plain path: no DDP wrapper, no collective) against the same model and loss in
# implicit_em.train.modules, for the encoder (sketched, 32 probes) and the TopK SAE (k = 32).
# K = 16384, B = 4096, bf16, compiled. Prints every run's tokens/s and the ratio into the log.
#     STEPS=120 TMO=75 bash benchmarks/ddp_graph_split.sh "$OUT"
# The earlier diagnosis (DDP at world size 1 with dynamo's graph splitting on and off) was
# run with benchmarks/ddp_graph_split.py, which on 2 GPUs still compares them under
# `--grad-sync ddp`.
set -u
O=${1:-$OUT}
K=${K:-16384} TOK=${TOK:-500000} B=${B:-4096} STEPS=${STEPS:-220} WARM=${WARM:-20}
COMPILE=${COMPILE---compile} AMP=${AMP---amp} FAMS=${FAMS:-encoder topk_sae}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
COMMON="--random-tokens $TOK --steps $STEPS --warmup $WARM $AMP $COMPILE --batch-size $B"
tr() { timeout ${TMO:-100} torchrun --standalone --nproc-per-node 1 "$@"; }
T0=$SECONDS
for fam in $FAMS; do
  if [ $fam = encoder ]; then X="--tc-probes 32"; else X="--type topk_sae"; fi
  tr -m implicit_em.train.distributed $COMMON --hidden-dim $K $X \
    --out "$O/${fam}_dp_n1.json" > "$O/${fam}_dp_n1.log" 2>&1
  echo "$fam data-parallel n1 rc=$? at $((SECONDS - T0)) s"
  if [ $fam = encoder ]; then X="--tc-probes 32"; else X=""; fi
  tr -m implicit_em.train.modules $COMMON --types $fam --hidden-dims $K $X --seeds 1 \
    --summary "$O/${fam}_plain.json" > "$O/${fam}_plain.log" 2>&1
  echo "$fam plain rc=$? at $((SECONDS - T0)) s"
done
python3 - "$O" $FAMS <<'PY'
import json, sys, pathlib
o = pathlib.Path(sys.argv[1])
def tps(name):
    p = o / name
    if not p.exists():
        return None
    d = json.loads(p.read_text())
    return d.get("tokens_per_s") or d.get("stream_tokens_per_s")
for fam in sys.argv[2:]:
    dp, plain = tps(f"{fam}_dp_n1.json"), tps(f"{fam}_plain.json")
    ratio = f"{dp / plain:.3f}" if dp and plain else "n/a"
    print(f"RESULT {fam}: data-parallel n1 {dp} tokens/s, plain {plain} tokens/s, ratio {ratio}")
PY
for f in "$O"/*.log; do echo "== $f"; tail -n 2 "$f" | cut -c1-600; done
