"""Markdown table of the mini-recipe variant runs (docs/eval/synthetic/variants.md).

Run from the repository root: python docs/eval/synthetic/variants_table.py
"""

import json

from implicit_em.eval.synthetic import summarise

rows = []
for g in "ABCDEF":
    try:
        rows += json.load(open(f"docs/eval/synthetic/cpu-variants-{g}/results.json"))["rows"]
    except FileNotFoundError:
        pass
VAR_X = 87.34  # E||x - mean||^2 on mini (20,000 samples)
extra = {}
for r in rows:
    h = r["history"][-1]
    sse = h["tied_recon"] if "tied_recon" in h else (h["mse"] * 64 if "mse" in h else None)
    e = extra.setdefault(r["variant"], {"p": [], "fvu": []})
    e["p"].append(r["trained"]["precision"])
    if sse is not None:
        e["fvu"].append(sse / VAR_X)


def f(v, nd=3):
    if not v:
        return "-"
    m = sum(v) / len(v)
    return f"{m:.{nd}f}" if min(v) == max(v) else f"{m:.{nd}f} [{min(v):.{nd}f}, {max(v):.{nd}f}]"


def g(s, k, nd=3):
    s = s[k]
    if s["min"] == s["max"]:
        return f"{s['mean']:.{nd}f}"
    return f"{s['mean']:.{nd}f} [{s['min']:.{nd}f}, {s['max']:.{nd}f}]"


print(
    "| variant | seeds | MCC | MCC untrained | MCC random@L0 | L0 | dead | precision | F1 | F1 random@L0 | features covered | features cos>=0.9 | train FVU (last 100 steps) |"
)
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for s in summarise(rows):
    e = extra[s["variant"]]
    print(
        "| "
        + " | ".join(
            [
                s["variant"],
                str(s["seeds"]),
                g(s, "mcc"),
                g(s, "mcc_untrained"),
                g(s, "mcc_random_at_l0"),
                g(s, "l0", 1),
                g(s, "dead_latents", 0),
                f(e["p"]),
                g(s, "f1"),
                g(s, "f1_random_at_l0"),
                g(s, "features_covered", 0),
                g(s, "features_cos_0.9", 0),
                f(e["fvu"]),
            ]
        )
        + " |"
    )
