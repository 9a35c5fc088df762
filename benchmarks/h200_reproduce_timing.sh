#!/bin/bash
# The GPU call of docs/benchmarks.md "MNIST reproduce on one H200", round 2: the full reproduce
# of two source trees, timed, one after the other. Lay out a carry folder as
#   base/src (git archive <base> src), new/src, mnist/ (the four IDX files, gzipped is fine),
#   this script, reproduce_timeline.py and compare_reproductions.py (from benchmarks/),
# then on the device: bash .carry/<you>/h200_reproduce_timing.sh 2>&1 | tee $OUT/log
cd "$(dirname "$0")"
export IMPLICIT_EM_DATA=$PWD/mnist PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch; print(torch.__version__)"
one() {  # limit name src [env...]
  local lim=$1 name=$2 src=$3; shift 3
  local t0=$(date +%s.%N)
  env "$@" PYTHONPATH=$PWD/$src/src timeout $lim python3 -m implicit_em.cli reproduce --device cuda --quiet --out /tmp/$name > /tmp/$name.log 2>&1
  local rc=$? t1=$(date +%s.%N)
  echo "== $name rc=$rc whole process $(python3 -c "print(f'{$t1-$t0:.1f}')") s (env: $*)"
  tail -3 /tmp/$name.log
  sed -n '/| step | wall time/,/| \*\*total/p' /tmp/$name/report.md
  python3 reproduce_timeline.py /tmp/$name $t0
  cp /tmp/$name/report.md $OUT/$name.report.md 2>/dev/null
}
one 90 base base
one 75 new new
one 75 new8 new CUDA_DEVICE_MAX_CONNECTIONS=8
for v in new new8; do echo "== compare base $v"; python3 compare_reproductions.py /tmp/base /tmp/$v; done
