# Sourced by the per-plan CPU checks (docs/eval/synthetic/*/cpu-check*/run_checks.sh), run from
# the repository root after they set HERE (their folder: the logs go there) and A (the flags of
# their plan's process line). Defines PY, S (the plan's script), T (the tiny sizes appended to
# every process line), CHECK (cpu_check.py: init-check and summary), TMP (the results, removed on
# exit) and one.
PY=${PY:-.venv/bin/python}
export PYTHONUNBUFFERED=1 PYTHONPATH=src TQDM_DISABLE=1
S=scripts/synthetic_gpu16k_converged.py
T="--tiny --latents 512 --steps 60 --device cpu"
CHECK=docs/eval/synthetic/cpu_check.py
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# one NAME SEED VARIANT...: the process line of SEED and the VARIANTs at tiny size, results in
# $TMP/NAME, log $HERE/NAME.log (progress bars one line per update, no orthogonalisation notices)
one() {
  local name=$1 seed=$2; shift 2
  $PY $S $TMP/$name $A --seed-list $seed --variants "$@" $T 2>&1 | tr '\r' '\n' \
    | grep -v Orthogonalizing > $HERE/$name.log
}
