"""Tables of docs/eval/synthetic/why.md from the result directories under cpu-why/ (and gpu/).

Run from the repository root: python docs/eval/synthetic/cpu-why/table.py [DIR ...]
(default: the CPU groups diag, sweep, seedsA, seedsB, seedsC). Mean [min, max] over seeds.
"""

import json
import sys
from pathlib import Path

ROOT = Path("docs/eval/synthetic/cpu-why")
dirs = sys.argv[1:] or [str(ROOT / g) for g in ("diag", "sweep", "seedsA", "seedsB", "seedsC")]
rows = []
for d in dirs:
    p = Path(d) / "results.json"
    if p.exists():
        rows += json.loads(p.read_text())["rows"]

COLS = [
    ("MCC", lambda r: r["trained"]["mcc"], 3),
    ("MCC enc. rows", lambda r: r["trained"].get("mcc_encoder_rows"), 3),
    ("MCC lstsq read-out", lambda r: r["trained"].get("mcc_lstsq"), 3),
    ("MCC untrained", lambda r: r["untrained"]["mcc"], 3),
    ("MCC random@L0", lambda r: r["trained"]["random_at_l0"]["mcc"], 3),
    ("L0", lambda r: r["trained"]["l0"], 1),
    ("dead", lambda r: r["trained"]["dead_latents"], 0),
    ("precision", lambda r: r["trained"]["precision"], 3),
    ("F1", lambda r: r["trained"]["f1"], 3),
    ("F1 random@L0", lambda r: r["trained"]["random_at_l0"]["f1"], 3),
    ("covered", lambda r: r["trained"]["features_covered"], 0),
    ("cos>=0.9", lambda r: r["trained"]["features_cos_0.9"], 0),
]


def fmt(vals, nd):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    m = sum(vals) / len(vals)
    if min(vals) == max(vals):
        return f"{m:.{nd}f}"
    return f"{m:.{nd}f} [{min(vals):.{nd}f}, {max(vals):.{nd}f}]"


by = {}
for r in rows:
    by.setdefault(r["variant"], []).append(r)
print("| variant | seeds | " + " | ".join(c for c, _, _ in COLS) + " |")
print("|---" * (len(COLS) + 2) + "|")
for name, rs in by.items():
    cells = [fmt([get(r) for r in rs], nd) for _, get, nd in COLS]
    print(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
