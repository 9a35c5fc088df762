#!/usr/bin/env bash
# Issue 20: tokens/s on 1 vs 2 GPUs in ONE call, same code: the data-parallel trainer (encoder,
# sketched penalty with 32 probes; TopK SAE k = 32) at a fixed per-GPU batch, and the
# distribute-modules mode (1 model on 1 GPU vs 2 models on 2 GPUs). K = 16384, bf16 autocast,
# torch.compile, random tokens (D = 576). Writes one JSON per run into $1 (default $OUT).
#     bash benchmarks/ddp_scaling.sh "$OUT"
# The 1-GPU runs of the two families share the call's first minute, one per GPU.
# Sizes can be shrunk for a CPU smoke test: K=64 TOK=20000 B=128 COMPILE= AMP= SYNC= bash ...
#     bash benchmarks/ddp_scaling.sh "$OUT" seq
# every run alone, one after the other: encoder 1 then 2 GPUs, TopK 1 then 2, distribute-modules
# 1 model on 1 GPU then 2 models on 2 (SYNC defaults to --sync-debug; SYNC= turns it off).
#     bash benchmarks/ddp_scaling.sh "$OUT" call2
# the second call: the encoder on 1 then 2 GPUs again, one run at a time and without
# --sync-debug (in the first call the two 1-GPU runs shared the host, each compiling while the
# other ran), then the 1-GPU TopK and distribute-modules runs while time is left.
set -u
O=${1:-$OUT}
MODE=${2:-call1}
[ "$MODE" = call2 ] && SYNC=${SYNC-} TMO=${TMO:-60}
K=${K:-16384} TOK=${TOK:-500000} B=${B:-4096} STEPS=${STEPS:-220} WARM=${WARM:-20}
COMPILE=${COMPILE---compile} AMP=${AMP---amp} SYNC=${SYNC---sync-debug}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 OMP_NUM_THREADS=4
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/inductor_s20}
DDP="-m implicit_em.train.distributed --random-tokens $TOK --hidden-dim $K --steps $STEPS --warmup $WARM $AMP $COMPILE $SYNC"
DM="-m implicit_em.train.modules --random-tokens $TOK --types encoder --hidden-dims $K --batch-size $B --steps $STEPS --warmup $WARM --tc-probes 32 $AMP $COMPILE"
tr() { local gpus=$1 n=$2; shift 2; CUDA_VISIBLE_DEVICES=$gpus timeout ${TMO:-170} torchrun --standalone --nproc-per-node "$n" "$@"; }
T0=$SECONDS
if [ "$MODE" = seq ]; then  # every run alone on the host, one after the other (no contention)
  tr 0 1 $DDP --tc-probes 32 --batch-size $B --out "$O/enc_n1.json" > "$O/enc_n1.log" 2>&1; echo "enc n1 at $((SECONDS - T0)) s"
  tr 0,1 2 $DDP --tc-probes 32 --batch-size $((2 * B)) --out "$O/enc_n2.json" > "$O/enc_n2.log" 2>&1; echo "enc n2 at $((SECONDS - T0)) s"
  tr 0 1 $DDP --type topk_sae --batch-size $B --out "$O/topk_n1.json" > "$O/topk_n1.log" 2>&1; echo "topk n1 at $((SECONDS - T0)) s"
  tr 0,1 2 $DDP --type topk_sae --batch-size $((2 * B)) --out "$O/topk_n2.json" > "$O/topk_n2.log" 2>&1; echo "topk n2 at $((SECONDS - T0)) s"
  if [ $((SECONDS - T0)) -lt ${DM_BEFORE:-300} ]; then
    tr 0 1 $DM --seeds 1 --summary "$O/dm_1model_n1.json" > "$O/dm_1model_n1.log" 2>&1; echo "dm n1 at $((SECONDS - T0)) s"
    tr 0,1 2 $DM --seeds 1 2 --summary "$O/dm_2models_n2.json" > "$O/dm_2models_n2.log" 2>&1; echo "dm n2 at $((SECONDS - T0)) s"
  fi
  tar czf "$O/logs.tgz" -C "$O" $(cd "$O" && ls *.log) && rm -f "$O"/*.log
  for f in "$O"/*.json; do echo "$f"; python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print({k: d.get(k) for k in ('world_size','type','global_batch','tokens_per_s','host_syncs','stream_tokens_per_s','model_tokens_per_s')})" "$f"; done
  exit 0
fi
if [ "$MODE" = call2 ]; then
  tr 0 1 $DDP --tc-probes 32 --batch-size $B --out "$O/enc_n1_call2.json" > "$O/enc_n1_call2.log" 2>&1
  echo "enc n1 done at $((SECONDS - T0)) s"
  tr 0,1 2 $DDP --tc-probes 32 --batch-size $((2 * B)) --out "$O/enc_n2_call2.json" > "$O/enc_n2_call2.log" 2>&1
  echo "enc n2 done at $((SECONDS - T0)) s"
  if [ $((SECONDS - T0)) -lt 62 ]; then
    tr 0 1 $DDP --type topk_sae --batch-size $B --out "$O/topk_n1_call2.json" > "$O/topk_n1_call2.log" 2>&1
  fi
  if [ $((SECONDS - T0)) -lt 62 ]; then
    tr 0 1 $DM --seeds 1 --summary "$O/dm_1model_n1_call2.json" > "$O/dm_1model_n1_call2.log" 2>&1
  fi
  exit 0
fi
echo "== phase 1: 1 GPU each (encoder then distribute-modules 1 model on GPU 0; TopK on GPU 1)"
( tr 0 1 $DDP --tc-probes 32 --batch-size $B --out "$O/enc_n1.json" > "$O/enc_n1.log" 2>&1
  tr 0 1 $DM --seeds 1 --summary "$O/dm_1model_n1.json" > "$O/dm_1model_n1.log" 2>&1 ) &
tr 1 1 $DDP --type topk_sae --batch-size $B --out "$O/topk_n1.json" > "$O/topk_n1.log" 2>&1 &
wait
echo "phase 1 done at $((SECONDS - T0)) s"
echo "== phase 2: 2 GPUs, per-GPU batch $B"
tr 0,1 2 $DDP --tc-probes 32 --batch-size $((2 * B)) --out "$O/enc_n2.json" > "$O/enc_n2.log" 2>&1
echo "enc n2 done at $((SECONDS - T0)) s"
tr 0,1 2 $DDP --type topk_sae --batch-size $((2 * B)) --out "$O/topk_n2.json" > "$O/topk_n2.log" 2>&1
echo "topk n2 done at $((SECONDS - T0)) s"
tr 0,1 2 $DM --seeds 1 2 --summary "$O/dm_2models_n2.json" > "$O/dm_2models_n2.log" 2>&1
echo "dm n2 done at $((SECONDS - T0)) s"
if [ $((SECONDS - T0)) -lt ${EXTRA_BEFORE:-190} ]; then  # graphs cached: a short extra run
  tr 0,1 2 $DDP --tc-probes 32 --batch-size $((2 * B)) --bf16-grads --out "$O/enc_n2_bf16grads.json" > "$O/enc_n2_bf16grads.log" 2>&1
  echo "enc n2 bf16 grads done at $((SECONDS - T0)) s"
fi
for f in "$O"/*.json; do echo "$f"; python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print({k: d.get(k) for k in ('world_size','type','global_batch','tokens_per_s','host_syncs','stream_tokens_per_s','model_tokens_per_s')})" "$f"; done
tail -n 3 "$O"/*.log | cut -c1-300
