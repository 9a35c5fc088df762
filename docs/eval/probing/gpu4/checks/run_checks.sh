#!/bin/bash
# CPU checks of the gpu4 calls, from /work/main (helper s7-gpu4fix); logs -> $L
cd /work/main
export PATH=/work/main/.venv/bin:$PATH P4=/tmp/s7g_p4 DEV=cpu WORKERS=0 PYTIMEOUT=60 IMPLICIT_EM_CACHE=/tmp/s7g_cache
L=/work/main/.carry/s7g/checks; rm -rf $L /tmp/s7g_p4 /tmp/s7g_cache /tmp/s7g_o*; mkdir -p $L /tmp/s7g_cache
set -o pipefail
run() { local name=$1; shift; local OUT=/tmp/s7g_o_$name; mkdir -p $OUT; ( "$@" ) 2>&1 | tee $L/log_$name.txt | grep -v Converting; echo "rc $?" | tee -a $L/log_$name.txt; }
c() { OUT=/tmp/s7g_o_$1 bash .carry/s7g/c$2/call$2.sh; }
echo "== sizes"; du -sb .carry/s7g/c1 .carry/s7g/c2 .carry/s7g/c3 .carry/s7g/c4 | tee $L/sizes.txt; git ls-files -z | xargs -0 du -cb | tail -1 | tee -a $L/sizes.txt
cat .carry/s7g/c4/code/COMMIT | tee -a $L/sizes.txt
echo "== order"; run order_call2_first c order_call2_first 2; run order_call4_first c order_call4_first 4
echo "== 3-call variant (default)"
run call1 c call1 1; run order_call3_before_call2 c order_call3_before_call2 3; run call2 c call2 2
run call34 bash -c 'OUT=/tmp/s7g_o_call34 bash .carry/s7g/c3/call3.sh && OUT=/tmp/s7g_o_call34 bash .carry/s7g/c4/call4.sh'
tar -tzf /tmp/s7g_o_call34/gpu4_out.tar.gz | tee -a $L/log_call34.txt
echo "== 4-call variant (fallback)"; rm -rf /tmp/s7g_p4 /tmp/s7g_cache/*
run 4v_call1 c 4v_call1 1; run 4v_call2 c 4v_call2 2; run 4v_call3 c 4v_call3 3
rm -rf /tmp/s7g_bad && mkdir -p /tmp/s7g_bad && cp -r .carry/s7g/c4 /tmp/s7g_bad/ && sed -i 's/"readout": "topk"/"read_out": "topk"/' /tmp/s7g_bad/c4/code/docs/eval/probing/gpu4/plan.json
run bad_plan_call4 env OUT=/tmp/s7g_o_bad bash /tmp/s7g_bad/c4/call4.sh; rm -rf /tmp/s7g_bad
run 4v_call4 c 4v_call4 4
