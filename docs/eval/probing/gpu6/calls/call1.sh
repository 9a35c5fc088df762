#!/bin/bash
# Device call 1 of 3 (GPU run 6, docs/eval/probing/gpu6_plan.md): GGUF part 1 (bytes
# 0..35,299,999 of SmolLM2-135M-Instruct.Q4_1.gguf) -> $P4 (default /tmp/p11). Calls 2 and 3
# must follow at once on the same warm machine. P4 overridable only for the CPU check.
C=$(cd "$(dirname "$0")" && pwd); P4=${P4:-/tmp/p11}
mkdir -p "$P4" && rm -f "$P4"/part* "$P4"/*.ok
(cd "$C" && sha256sum -c SHA256SUMS) || { echo "call 1: part 1 corrupt in transit"; exit 4; }
cp "$C/gguf.part1" "$P4/part1.tmp" && mv "$P4/part1.tmp" "$P4/part1" && touch "$P4/part1.ok"
ls -l "$P4"; df -h "$P4" | tail -1
echo "call 1 done in ${SECONDS} s: fire call 2 NOW"
