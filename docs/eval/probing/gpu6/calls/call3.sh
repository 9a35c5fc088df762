#!/bin/bash
# Device call 3 of 3 (GPU run 6), first half: GGUF part 3 (bytes 70,600,000..98,362,431),
# joined to parts 1 and 2 (calls 1-2) into $P4/SmolLM2-135M-Instruct.Q4_1.gguf, sha256
# checked; $P4/gguf.ok. The same call then runs c4/call_run.sh (the run).
C=$(cd "$(dirname "$0")" && pwd); P4=${P4:-/tmp/p11}
G=SmolLM2-135M-Instruct.Q4_1.gguf
for p in 1 2; do
  if [ ! -f "$P4/part$p.ok" ]; then
    echo "call 3: $P4/part$p.ok missing: call $p did not run on this machine (it went back?)."
    echo "Fire calls 1, 2 and 3 again, back to back."; exit 3
  fi
done
(cd "$C" && sha256sum -c SHA256SUMS) || { echo "call 3: part 3 corrupt in transit"; exit 4; }
cat "$P4/part1" "$P4/part2" "$C/gguf.part3" > "$P4/$G" && rm -f "$P4"/part*
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $G" > "$P4/gguf.sha256"
(cd "$P4" && sha256sum -c gguf.sha256) || { echo "call 3: joined GGUF sha256 mismatch: fire calls 1-3 again"; exit 4; }
touch "$P4/gguf.ok"; ls -l "$P4"
echo "call 3: GGUF joined in ${SECONDS} s"
