"""Timeline of one reproduce output: per stack kind, when its runs were saved (seconds after
the process start given as the second argument) and the sum of its epochs' `seconds` (first
run). The benchmark's "ours" runs (which the TopK SAEs wait for) are a row of their own,
"encoder-adam ours", whichever stack trained them (with IMPLICIT_EM_SPLIT_URGENT=1, their own).

    python3 benchmarks/reproduce_timeline.py /tmp/default 1764470000.0 [--quick]
"""

import argparse
import json
from pathlib import Path

from implicit_em.experiments.benchmark import first_configs
from implicit_em.experiments.common import run_id
from implicit_em.experiments.reproduce import _settings

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("out", type=Path, help="the reproduce's --out directory")
p.add_argument("start", type=float, help="the process's start, seconds since the epoch")
p.add_argument("--quick", action="store_true", help="the reproduce ran with --quick")
args = p.parse_args()
out, start = args.out, args.start
ours = {run_id(c) for c in first_configs(_settings("benchmark", out=out, quick=args.quick))["ours"]}
rows = {}
for d in sorted((out / "runs").iterdir()):
    if not (d / "metrics.json").is_file():
        continue
    cfg = json.loads((d / "config.json").read_text())
    cfg = cfg.get("config", cfg)
    kind = f"{cfg['model']['type']}-{cfg['training']['optimizer']}" + " ours" * (d.name in ours)
    hist = [json.loads(line) for line in (d / "history.jsonl").read_text().splitlines() if line]
    saved = (d / "metrics.json").stat().st_mtime - start
    r = rows.setdefault(kind, {"n": 0, "saved_min": 1e9, "saved_max": -1e9, "epoch_s": 0})
    r["n"] += 1
    r["saved_min"], r["saved_max"] = min(r["saved_min"], saved), max(r["saved_max"], saved)
    r["epoch_s"] = max(r["epoch_s"], sum(h.get("seconds", 0) for h in hist))
for k, r in rows.items():
    print(f"{k:22s} n={r['n']:2d} saved at {r['saved_min']:6.1f}-{r['saved_max']:6.1f} s, "
          f"epochs' seconds {r['epoch_s']:6.1f}")
