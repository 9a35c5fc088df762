#!/bin/bash
# Builds the carry of GPU run 5 (docs/eval/probing/gpu5/CALLS.md) under $S (default
# /work/main/.carry/s8g) from the repository $W (default /work/main; the code is a
# `git archive` of its HEAD, so run it on main after the merge), the GGUF parts of
# /work/main/.carry/s7g (gpu4's, hard links), gpu4's data ($D4, default .carry/s7g/c4/data) and
# the 7.23 M-token data of `prepare` ($D5, default $S/data5, kept there; see CALLS.md).
set -e
W=${W:-/work/main}; S=${S:-/work/main/.carry/s8g}; S7=${S7:-/work/main/.carry/s7g}
D4=${D4:-$S7/c4/data}; D5=${D5:-$S/data5}; G=docs/eval/probing/gpu5
mkdir -p "$S"
for i in 1 2 3; do
  rm -rf "$S/c$i" && mkdir -p "$S/c$i"
  ln -f "$S7/c$i/gguf.part$i" "$S/c$i/"; cp "$S7/c$i/SHA256SUMS" "$S/c$i/"
  cp "$W/$G/calls/call$i.sh" "$S/c$i/"
done
rm -rf "$S/c4" "$S/c5" && mkdir -p "$S/c4/code" "$S/c4/data4" "$S/c5/data5"
git -C "$W" archive HEAD src scripts/probing_gpu.py "$G" docs/eval/probing/gpu4/results_r4.json \
  | tar -x -C "$S/c4/code"
git -C "$W" rev-parse HEAD > "$S/c4/code/COMMIT"
cp -al "$S7/c4/pylib" "$S/c4/pylib"
cp "$W/$G/calls/call_run.sh" "$S/c4/"
ln -f "$D4/data.npz" "$D4/data.json" "$S/c4/data4/"
ln -f "$D5/data.npz" "$D5/data.json" "$S/c5/data5/"
(cd "$S/c4/data4" && sha256sum data.npz data.json > SHA256SUMS)
(cd "$S/c5/data5" && sha256sum data.npz data.json > SHA256SUMS)
grep -q 182ceaa0 "$S/c4/data4/SHA256SUMS" || { echo "gpu4's data.npz is not 182ceaa0...: check D4"; exit 4; }
grep -q 9d7609b9 "$S/c5/data5/SHA256SUMS" || echo "note: data5 data.npz sha256 differs from 9d7609b9... (a new prepare?): write it into CALLS.md"
du -sb "$S"/c1 "$S"/c2 "$S"/c3 "$S"/c4 "$S"/c5
