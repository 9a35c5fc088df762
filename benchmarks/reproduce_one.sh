# Sourced by the H200 timing scripts (h200_fused_step_timing.sh, h200_reproduce_schedule.sh):
#   one NAME [VAR=VALUE ...]
# runs `implicit-em reproduce --device cuda --quiet --out /tmp/NAME` with the variables set,
# prints its whole-process time, its report's step table and its timeline
# (reproduce_timeline.py), and copies its report to $OUT/NAME.report.md.
one() {
  local name=$1 t0=$(date +%s.%N)
  shift
  env "$@" timeout 150 python3 -m implicit_em.cli \
      reproduce --device cuda --quiet --out /tmp/$name > /tmp/$name.log 2>&1
  local rc=$? t1=$(date +%s.%N)
  echo "== $name ($*) rc=$rc whole process $(python3 -c "print(f'{$t1-$t0:.1f}')") s"
  tail -3 /tmp/$name.log
  sed -n '/| step | wall time/,/| \*\*total/p' /tmp/$name/report.md
  python3 benchmarks/reproduce_timeline.py /tmp/$name $t0
  cp /tmp/$name/report.md $OUT/$name.report.md 2>/dev/null
}
