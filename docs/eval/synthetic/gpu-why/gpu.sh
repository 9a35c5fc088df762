#!/bin/bash
# Issue 18 "why": small recipe (3 seeds) and 16k (1 seed) on one H200. Run from .carry/s18s.
export PYTHONPATH=src PYTHONUNBUFFERED=1
S='"steps":1500,"device":"cuda","log_every":250,"plot":false,"recipe":"small"'
B='"steps":1000,"batch_size":4096,"device":"cuda","log_every":250,"plot":false,"eval_samples":50000,"recipe":"synthsaebench-16k","seeds":[0]'
W=/tmp/w; mkdir -p $W
run() { python scripts/synthetic_eval.py $W/$1 "$2" --sae-lens-src sl > $W/$1.log 2>&1 & }
run sA "{$S,\"seeds\":[0,1,2],\"variants\":[\"encoder\",\"encoder-gauss\"]}"
run sB "{$S,\"seeds\":[0,1,2],\"variants\":[\"topk\",\"topk-gauss\"]}"
run sC "{$S,\"seeds\":[0,1,2],\"variants\":[\"prior-logcosh-0.001\",\"sparse-filtering\"]}"
run sD "{$S,\"seeds\":[0,1,2],\"variants\":[\"prior-l1-0.1\"]}"
run sE "{$S,\"seeds\":[0,1,2],\"variants\":[\"claimants-0.1\",\"factorial-0.01\"]}"
run bA "{$B,\"variants\":[\"encoder\"]}"
run bB "{$B,\"variants\":[\"topk\"]}"
run bC "{$B,\"variants\":[\"prior-logcosh-0.001\"]}"
for i in $(seq 1 68); do sleep 5; n=$(jobs -r | wc -l); [ $n -eq 0 ] && break; done
echo "still running: $(jobs -r | wc -l)"; nvidia-smi --query-gpu=memory.used --format=csv
grep -h " s[0-9] mcc" $W/*.log
tail -n 3 $W/*.log | cut -c1-300
tar czf $OUT/why.tgz -C $W .
