#!/bin/bash
# Builds the carry of GPU run 7 (docs/eval/probing/gpu7_plan.md, "Device calls") under $S
# (default /work/main/.carry/g7, ignored by git) with run 6's builder
# (docs/eval/probing/gpu6/build_carry.sh), by its parameters: the same GGUF parts (c1-c3, with
# gpu6's call1-3.sh), the same data (gpu2's data.npz, sha256 182ceaa0...b225; made again by
# `prepare` unless $S/data holds it, which is first filled from run 6's carry
# $W/.carry/s11g/data when that is there) and c4 = gpu7/calls/call_run.sh with a `git archive`
# of HEAD: src, scripts/probing_gpu.py, docs/eval/probing/gpu7/, the gpu6 scripts run 7
# reuses (run6.sh, check_repro.py, compare6.py) and gpu2's four results files (the
# reproduction check). Run it on main after the merge, and again if src changes there
# (c4/code/COMMIT names the commit). W, S, PY, GGUF, P1, P2 as in gpu6/build_carry.sh.
W=${W:-/work/main}; S=${S:-$W/.carry/g7}
G2=docs/eval/probing/gpu2; G6=docs/eval/probing/gpu6
if [ ! -f "$S/data/data.npz" ] && [ -f "$W/.carry/s11g/data/data.npz" ]; then
  mkdir -p "$S/data" && cp "$W/.carry/s11g/data/data.npz" "$W/.carry/s11g/data/data.json" "$S/data/"
fi
exec env W="$W" S="$S" RUN_DIR=docs/eval/probing/gpu7 \
  CODE_EXTRA="$G6/run6.sh $G6/check_repro.py $G6/compare6.py $G2/results_r4.json $G2/results_r16a.json $G2/results_r16b.json $G2/results_r4s2.json" \
  bash "$W/$G6/build_carry.sh"
