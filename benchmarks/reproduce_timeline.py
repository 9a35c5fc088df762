"""Timeline of one reproduce output: per stack kind, when its runs were saved (seconds after
the process start given as argv[2]) and the sum of its epochs' `seconds` (first run)."""
import json
import sys
from pathlib import Path

out, start = Path(sys.argv[1]), float(sys.argv[2])
rows = {}
for d in sorted((out / "runs").iterdir()):
    if not (d / "metrics.json").is_file():
        continue
    cfg = json.loads((d / "config.json").read_text())
    cfg = cfg.get("config", cfg)
    kind = f"{cfg['model']['type']}-{cfg['training']['optimizer']}"
    hist = [json.loads(line) for line in (d / "history.jsonl").read_text().splitlines() if line]
    saved = (d / "metrics.json").stat().st_mtime - start
    r = rows.setdefault(kind, {"n": 0, "saved_min": 1e9, "saved_max": 0, "epoch_s": 0})
    r["n"] += 1
    r["saved_min"], r["saved_max"] = min(r["saved_min"], saved), max(r["saved_max"], saved)
    r["epoch_s"] = max(r["epoch_s"], sum(h.get("seconds", 0) for h in hist))
for k, r in rows.items():
    print(f"{k:22s} n={r['n']:2d} saved at {r['saved_min']:6.1f}-{r['saved_max']:6.1f} s, "
          f"epochs' seconds {r['epoch_s']:6.1f}")
