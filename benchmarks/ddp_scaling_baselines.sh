#!/usr/bin/env bash
# Issue 20, second call: the encoder on 1 then 2 GPUs again, one run at a time and without
# --sync-debug (in the first call the two 1-GPU runs shared the host, each compiling while the
# other ran; and every run counted host syncs), then the 1-GPU TopK and distribute-modules runs
# while time is left.
#     bash benchmarks/ddp_scaling_baselines.sh "$OUT"
set -u
O=${1:-$OUT}
K=${K:-16384} TOK=${TOK:-500000} B=${B:-4096} STEPS=${STEPS:-220} WARM=${WARM:-20}
COMPILE=${COMPILE---compile} AMP=${AMP---amp} SYNC=${SYNC-}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 OMP_NUM_THREADS=4
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/inductor_s20}
DDP="-m implicit_em.train.distributed --random-tokens $TOK --hidden-dim $K --steps $STEPS --warmup $WARM $AMP $COMPILE $SYNC"
DM="-m implicit_em.train.modules --random-tokens $TOK --types encoder --hidden-dims $K --batch-size $B --steps $STEPS --warmup $WARM --tc-probes 32 $AMP $COMPILE"
tr() { local gpus=$1 n=$2; shift 2; CUDA_VISIBLE_DEVICES=$gpus timeout 60 torchrun --standalone --nproc-per-node "$n" "$@"; }
T0=$SECONDS
tr 0 1 $DDP --tc-probes 32 --batch-size $B --out "$O/enc_n1_call2.json" > "$O/enc_n1_call2.log" 2>&1
echo "enc n1 done at $((SECONDS - T0)) s"
tr 0,1 2 $DDP --tc-probes 32 --batch-size $((2 * B)) --out "$O/enc_n2_call2.json" > "$O/enc_n2_call2.log" 2>&1
echo "enc n2 done at $((SECONDS - T0)) s"
if [ $((SECONDS - T0)) -lt ${THIRD_BEFORE:-62} ]; then
  tr 0 1 $DDP --type topk_sae --batch-size $B --out "$O/topk_n1_call2.json" > "$O/topk_n1_call2.log" 2>&1
  echo "topk n1 done at $((SECONDS - T0)) s"
fi
if [ $((SECONDS - T0)) -lt ${LAST_BEFORE:-62} ]; then
  tr 0 1 $DM --seeds 1 --summary "$O/dm_1model_n1_call2.json" > "$O/dm_1model_n1_call2.log" 2>&1
  echo "dm n1 done at $((SECONDS - T0)) s"
fi
for f in "$O"/*.json; do echo "$f"; python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print({k: d.get(k) for k in ('world_size','type','global_batch','tokens_per_s','host_syncs','stream_tokens_per_s')})" "$f"; done
