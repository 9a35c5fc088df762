#!/bin/bash
# Device call 1 of 3 (GPU run 3, docs/eval/probing/gpu3_plan.md): unpack GGUF part A (bytes
# 0..49,283,071 of SmolLM2-135M-Instruct.Q4_1.gguf) into $P4 (default /tmp/p4). Calls 2 and 3
# must follow at once on the same warm machine. P4 overridable only for the CPU check.
C=$(cd "$(dirname "$0")" && pwd); P4=${P4:-/tmp/p4}
mkdir -p "$P4" && rm -f "$P4/partA" "$P4/partA.ok"
(cd "$C" && sha256sum -c SHA256SUMS) || { echo "call 1: part A archive corrupt in transit"; exit 4; }
xz -dc "$C/gguf.partA.xz" > "$P4/partA.tmp" || { echo "call 1: xz failed"; exit 5; }
[ "$(stat -c %s "$P4/partA.tmp")" = 49283072 ] || { echo "call 1: part A has the wrong size"; exit 6; }
mv "$P4/partA.tmp" "$P4/partA" && touch "$P4/partA.ok"
ls -l "$P4"; df -h "$P4" | tail -1
echo "call 1 done in ${SECONDS} s: fire call 2 NOW"
