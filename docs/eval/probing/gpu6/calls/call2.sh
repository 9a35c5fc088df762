#!/bin/bash
# Device call 2 of 3 (GPU run 6): GGUF part 2 (bytes 35,300,000..70,599,999) -> $P4, beside
# part 1 (call 1). Call 3 must follow at once.
C=$(cd "$(dirname "$0")" && pwd); P4=${P4:-/tmp/p11}
if [ ! -f "$P4/part1.ok" ]; then
  echo "call 2: $P4/part1.ok missing: call 1 did not run on this machine (it went back?)."
  echo "Fire call 1 again, then the next calls immediately after it."; exit 3
fi
(cd "$C" && sha256sum -c SHA256SUMS) || { echo "call 2: part 2 corrupt in transit"; exit 4; }
cp "$C/gguf.part2" "$P4/part2.tmp" && mv "$P4/part2.tmp" "$P4/part2" && touch "$P4/part2.ok"
ls -l "$P4"
echo "call 2 done in ${SECONDS} s: fire call 3 NOW"
