#!/bin/bash
# Builds the carry of GPU run 8 (docs/eval/probing/gpu8_plan.md, "Device calls") under $S
# (default /work/main/.carry/g8, ignored by git) with run 6's builder
# (docs/eval/probing/gpu6/build_carry.sh), by its parameters, as gpu7/build_carry.sh: the same
# GGUF cut into three parts of 32,800,000 / 32,800,000 / 32,762,432 bytes (c1-c3, with gpu6's
# call1-3.sh; smaller than gpu6's and gpu7's 35,300,000, because the tree has grown past what
# those leave room for: gpu8_plan.md says so and why c4 then travels alone, in call 4), the
# same data (gpu2's data.npz, sha256 182ceaa0...b225; made again by `prepare` unless $S/data
# holds it, which is first filled from run 6's carry $W/.carry/s11g/data when that is there)
# and c4 = gpu8/calls/call_run.sh with a `git archive` of HEAD: src, scripts/probing_gpu.py,
# docs/eval/probing/gpu8/, the gpu6 / gpu7 scripts run 8 reuses (run6.sh, check_repro.py,
# compare6.py, compare7.py) and gpu3's three results files (the reproduction check). Run it on
# main after the merge, and again if src changes there (c4/code/COMMIT names the commit). W, S,
# PY, GGUF, P1, P2 as in gpu6/build_carry.sh.
W=${W:-/work/main}; S=${S:-$W/.carry/g8}
G3=docs/eval/probing/gpu3; G6=docs/eval/probing/gpu6; G7=docs/eval/probing/gpu7
if [ ! -f "$S/data/data.npz" ] && [ -f "$W/.carry/s11g/data/data.npz" ]; then
  mkdir -p "$S/data" && cp "$W/.carry/s11g/data/data.npz" "$W/.carry/s11g/data/data.json" "$S/data/"
fi
exec env W="$W" S="$S" RUN_DIR=docs/eval/probing/gpu8 P1="${P1:-32800000}" P2="${P2:-32800000}" \
  CODE_EXTRA="$G6/run6.sh $G6/check_repro.py $G6/compare6.py $G7/compare7.py $G3/results_r4.json $G3/results_r16a.json $G3/results_r16b.json" \
  bash "$W/$G6/build_carry.sh"
