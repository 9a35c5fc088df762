#!/bin/bash
# CPU checks of the gpu5 calls (docs/eval/probing/gpu5/CALLS.md), from /work/main with the
# carry that build_carry.sh made under .carry/s8g; logs -> $L (then copied into
# docs/eval/probing/gpu5/checks/). On the CPU every run is stopped by its SIGINT after
# PYTIMEOUT = 60 s, during the harvest (python rc 124): the checks reach the LM load and the
# start of the harvest; the toy-size end-to-end runs are tests/test_probing_gpu.py's.
cd /work/main
export PATH=/work/main/.venv/bin:$PATH P4=/tmp/s8g_p4 DEV=cpu WORKERS=0 PYTIMEOUT=60
S=.carry/s8g; L=$S/checks; rm -rf $L /tmp/s8g_p4 /tmp/s8g_o* /tmp/s8g_bad; mkdir -p $L
set -o pipefail
run() { local name=$1; shift; local OUT=/tmp/s8g_o_$name; mkdir -p $OUT; ( "$@" ) 2>&1 | tee $L/log_$name.txt | grep -v Converting; echo "rc $?" | tee -a $L/log_$name.txt; }
c() { OUT=/tmp/s8g_o_$1 bash $S/c$2/call$2.sh; }
r() { OUT=/tmp/s8g_o_$1 bash $S/c4/call_run.sh $2; }
echo "== sizes"; du -sb $S/c1 $S/c2 $S/c3 $S/c4 $S/c5 | tee $L/sizes.txt
echo "tree of /work/main: $(git ls-files -z | xargs -0 du -cb | tail -1)" | tee -a $L/sizes.txt
echo "code of c4: $(cat $S/c4/code/COMMIT)" | tee -a $L/sizes.txt
echo "== order"; run order_call2_first c order_call2_first 2; run order_run_first r order_run_first K16384
echo "== the 5-call default"
run call1 c call1 1; run order_call3_before_call2 c order_call3_before_call2 3; run call2 c call2 2
run call3 bash -c "OUT=/tmp/s8g_o_call3 bash $S/c3/call3.sh && OUT=/tmp/s8g_o_call3 bash $S/c4/call_run.sh repro"
run call4 r call4 K16384
run call5 r call5 K4096
for f in /tmp/s8g_o_call3/gpu5_repro.tar.gz /tmp/s8g_o_call4/gpu5_K16384.tar.gz /tmp/s8g_o_call5/gpu5_K4096.tar.gz; do
  echo "$f: $(tar -tzf $f | tr '\n' ' ')" | tee -a $L/log_call5.txt; done
echo "== refused before the LM"
mkdir -p /tmp/s8g_bad && cp -r $S/c4 /tmp/s8g_bad/ && run no_c5_call4 env OUT=/tmp/s8g_o_no_c5 bash /tmp/s8g_bad/c4/call_run.sh K16384
cp -r $S/c5 /tmp/s8g_bad/
sed -i 's/"weights_of": "encoder-wr"/"weight_of": "encoder-wr"/' /tmp/s8g_bad/c4/code/docs/eval/probing/gpu5/plan_K16384.json
run bad_plan_call4 env OUT=/tmp/s8g_o_bad bash /tmp/s8g_bad/c4/call_run.sh K16384
sed -i 's/"epochs": 2/"epochs": 0/' /tmp/s8g_bad/c4/code/docs/eval/probing/gpu5/plan_K4096.json
run bad_epochs_call5 env OUT=/tmp/s8g_o_bad2 bash /tmp/s8g_bad/c4/call_run.sh K4096
rm -rf /tmp/s8g_bad
echo "== the fallback: call 3 alone, then the repro run in a call of its own (fresh $P4)"
rm -rf /tmp/s8g_p4
run fb_call1 c fb_call1 1; run fb_call2 c fb_call2 2; run fb_call3 c fb_call3 3
run fb_call3b r fb_call3b repro
