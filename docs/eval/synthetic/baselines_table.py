"""Markdown table of the SAE-baseline runs on the mini recipe (docs/eval/synthetic/baselines.md),
with the encoder and TopK rows of cpu-variants-A / -D (same settings) for reference.

Run from the repository root: python docs/eval/synthetic/baselines_table.py
"""

import json
from pathlib import Path

from implicit_em.eval.synthetic import summarise

ROOT = Path("docs/eval/synthetic")
rows = []
for d in ("cpu-variants-A", "cpu-variants-D"):
    rows += [r for r in json.loads((ROOT / d / "results.json").read_text())["rows"]
             if r["variant"] in ("encoder", "topk")]  # fmt: skip
for p in sorted((ROOT / "cpu-baselines").glob("G*/results.json")):
    rows += json.loads(p.read_text())["rows"]


def g(s: dict, k: str, nd: int = 3) -> str:
    s = s[k]
    if s["min"] == s["max"]:
        return f"{s['mean']:.{nd}f}"
    return f"{s['mean']:.{nd}f} [{s['min']:.{nd}f}, {s['max']:.{nd}f}]"


cols = [("MCC", "mcc", 3), ("MCC enc. rows", "mcc_encoder_rows", 3),
        ("MCC untrained", "mcc_untrained", 3), ("MCC random@L0", "mcc_random_at_l0", 3),
        ("L0", "l0", 1), ("dead", "dead_latents", 0), ("F1", "f1", 3),
        ("F1 random@L0", "f1_random_at_l0", 3), ("features covered", "features_covered", 0),
        ("features cos>=0.9", "features_cos_0.9", 0)]  # fmt: skip
print("| variant | seeds | " + " | ".join(c[0] for c in cols) + " |")
print("|---|---|" + "---|" * len(cols))
for s in summarise(rows):
    print(f"| {s['variant']} | {s['seeds']} | " + " | ".join(g(s, k, nd) for _, k, nd in cols) + " |")
