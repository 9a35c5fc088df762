#!/bin/bash
# issue 19 (s4-19k) GPU call: GPU1 kernel tests + K=65536; GPU0 the K=16384 step side by side
export PYTHONUNBUFFERED=1 PYTHONPATH=src
T0=$(date +%s); t() { echo "[t=$(( $(date +%s) - T0 ))s] $*"; }
nvidia-smi -L; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
B="python3 benchmarks/bench_scale.py --amp bf16 --compile compiled --compile-mode reduce-overhead --fused"
(
  export CUDA_VISIBLE_DEVICES=1
  t tests; IMPLICIT_EM_AUTOTUNE=0 python3 -m pytest tests/test_kernels.py -q -p no:cacheprovider > $OUT/tests_kernels.log 2>&1; tail -5 $OUT/tests_kernels.log
  t tests_wr; python3 -m pytest tests/test_training.py -q -p no:cacheprovider -k wr_beside > $OUT/tests_wr.log 2>&1; tail -3 $OUT/tests_wr.log
  t k65536; $B --bf16-gram --K 65536 --models encoder_sketch,standard_sae,encoder --skip encoder+ref,encoder+fused,encoder_sketch32+ref --stats-variants 512s/g256 --steps 10 --out $OUT/k65536.json > $OUT/k65536.log 2>&1
  t pieces; IMPLICIT_EM_AUTOTUNE=1 python3 benchmarks/bench_infomax_kernels.py --pieces --out $OUT/pieces.json > $OUT/pieces.log 2>&1
  t gpu1_done
) > $OUT/gpu1.log 2>&1 &
export CUDA_VISIBLE_DEVICES=0
t k16384_sketch; $B --models encoder_sketch,standard_sae,topk_sae --skip encoder_sketch32+ref --stats-variants 512s,256/g0+wr,512s/g256 --out $OUT/k16384.json 2>&1 | grep -v '^ ' | tee $OUT/k16384.log
t k16384_exact; $B --bf16-gram --gram-blocks-variants 1 --models encoder --skip encoder+ref --out $OUT/k16384_exact.json 2>&1 | grep -v '^ ' | tee $OUT/k16384_exact.log
t gpu0_done
wait; cat $OUT/gpu1.log; t all_done
