#!/bin/bash
# Device call 2 of 3 (GPU run 3): unpack GGUF part B, join it to part A (left in $P4 by call 1),
# check the GGUF's sha256 and leave it in $P4 with $P4/gguf.ok. Call 3 must follow at once.
C=$(cd "$(dirname "$0")" && pwd); P4=${P4:-/tmp/p4}
G=SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$P4/partA.ok" ]; then
  echo "call 2: $P4/partA.ok missing: call 1 did not run on this machine (it went back?)."
  echo "Fire call 1 again, then calls 2 and 3 immediately after it."; exit 3
fi
(cd "$C" && sha256sum -c SHA256SUMS) || { echo "call 2: part B archive corrupt in transit"; exit 4; }
xz -dc "$C/gguf.partB.xz" > "$P4/partB" || { echo "call 2: xz failed"; exit 5; }
cat "$P4/partA" "$P4/partB" > "$P4/$G" && rm -f "$P4/partA" "$P4/partB" "$P4/partA.ok"
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $G" > "$P4/gguf.sha256"
(cd "$P4" && sha256sum -c gguf.sha256) || { echo "call 2: joined GGUF sha256 mismatch"; exit 4; }
touch "$P4/gguf.ok"; ls -l "$P4"
echo "call 2 done in ${SECONDS} s: fire call 3 NOW"
