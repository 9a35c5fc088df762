#!/bin/bash
# Plan.epochs and the weights_of row key keep every existing plan's numbers bit for bit: the
# gpu4 plan and the default plan at toy size (fingerprint.py), once with the code of $OLD
# (default /work/main/src, main before this branch) and once with this worktree's src; the
# two results must be equal apart from the stored plan, which gains "epochs": 1.
H=$(cd "$(dirname "$0")" && pwd); WT=$(cd "$H/../../../../.." && pwd); OLD=${OLD:-/work/main/src}
PY=${PY:-/work/main/.venv/bin/python}; T=$(mktemp -d)
echo "old code: $(git -C "$OLD" log -1 --format='%h %s' | cut -c1-60); new code: $(git -C "$WT" log -1 --format='%h' )"
PYTHONPATH=$OLD $PY "$H/fingerprint.py" "$T/old" 2>&1 | grep -E "^(gpu4|default) "
PYTHONPATH=$WT/src $PY "$H/fingerprint.py" "$T/new" 2>&1 | grep -E "^(gpu4|default) "
cmp "$T/old/data.npz" "$T/new/data.npz" && echo "data.npz: identical"
$PY - "$T" <<'PY'
import json, sys
t = sys.argv[1]
for n in ("gpu4", "default"):
    a, b = (json.load(open(f"{t}/{s}/{n}.json")) for s in ("old", "new"))
    pa, pb = a["data"].pop("plan"), b["data"].pop("plan")
    extra = {k: pb[k] for k in set(pb) - set(pa)}
    same = a == b and all(pa[k] == pb[k] for k in pa)
    print(f"{n} plan: {'bit-identical' if same else 'DIFFERENT'} results ({len(json.dumps(a))} chars); "
          f"stored plan gains {extra}")
PY
rm -rf "$T"
