#!/bin/bash
# Device call 2 of 5 (GPU run 5): GGUF part 2 (bytes 32,787,478..65,574,954) -> $P4, beside
# part 1 (call 1). Calls 3-5 must follow at once.
C=$(cd "$(dirname "$0")" && pwd); P4=${P4:-/tmp/p7}
if [ ! -f "$P4/part1.ok" ]; then
  echo "call 2: $P4/part1.ok missing: call 1 did not run on this machine (it went back?)."
  echo "Fire call 1 again, then the next calls immediately after it."; exit 3
fi
(cd "$C" && sha256sum -c SHA256SUMS) || { echo "call 2: part 2 corrupt in transit"; exit 4; }
cp "$C/gguf.part2" "$P4/part2.tmp" && mv "$P4/part2.tmp" "$P4/part2" && touch "$P4/part2.ok"
ls -l "$P4"
echo "call 2 done in ${SECONDS} s: fire call 3 NOW"
