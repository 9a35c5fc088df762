"""Tables, JSON summary and MCC-vs-L0 plot of the 16k GPU run (docs/eval/synthetic/gpu16k.md)
from the files of `scripts/synthetic_gpu16k.py` in docs/eval/synthetic/gpu16k/.

Run from the repository root: python docs/eval/synthetic/gpu16k_table.py
Writes docs/eval/synthetic/gpu16k.json and gpu16k_mcc_vs_l0.png; prints the markdown tables.
"""

import json
import math
from pathlib import Path

from implicit_em.eval.synthetic import _fmt, summarise

ROOT = Path("docs/eval/synthetic")
RUN = ROOT / "gpu16k"
PUBLISHED = {"batchtopk": 0.7574, "matryoshka": 0.7927, "jumprelu": 0.7527, "standard L1": 0.6039}


def load(name: str) -> list[dict]:
    p = RUN / name / "results.json"
    return json.loads(p.read_text())["rows"] if p.exists() else []


head, extra = load("head"), load("extra")
ref = json.loads((RUN / "ref.json").read_text()) if (RUN / "ref.json").exists() else None
cols = [("MCC", "mcc", 3), ("MCC enc. rows", "mcc_encoder_rows", 3),
        ("MCC untrained", "mcc_untrained", 3), ("MCC random@L0", "mcc_random_at_l0", 3),
        ("L0", "l0", 1), ("dead", "dead_latents", 0), ("F1", "f1", 3),
        ("F1 random@L0", "f1_random_at_l0", 3), ("features covered", "features_covered", 0),
        ("features cos>=0.9", "features_cos_0.9", 0)]  # fmt: skip


def table(rows: list[dict]) -> str:
    out = ["| variant | seeds | samples | " + " | ".join(c[0] for c in cols) + " |",
           "|---|---|---|" + "---|" * len(cols)]  # fmt: skip
    samples = {r["variant"]: r.get("samples", 0) for r in rows}
    for s in summarise(rows):
        cells = [_fmt(s[k], nd) for _, k, nd in cols]
        out.append(f"| {s['variant']} | {s['seeds']} | {samples[s['variant']] / 1e6:.1f} M | "
                   + " | ".join(cells) + " |")  # fmt: skip
    return "\n".join(out)


summary = {"head": summarise(head), "extra": summarise(extra), "published_l0_25": PUBLISHED}
if ref is not None:
    summary["ref"] = {k: ref[k] for k in ("profile", "snapshots", "steps", "samples",
                                          "train_seconds", "true_l0", "untrained_mcc",
                                          "build_seconds", "gt_checksum") if k in ref}  # fmt: skip
    summary["ref"]["trained"] = ref.get("trained")
alone = RUN / "ref_alone.json"  # the second, short call: the reference alone on the GPU
if alone.exists():
    a = json.loads(alone.read_text())
    summary["ref_alone"] = {k: a[k] for k in ("profile", "snapshots", "steps", "samples",
                                              "train_seconds") if k in a}  # fmt: skip
(ROOT / "gpu16k.json").write_text(json.dumps(summary, indent=1))
print("## head\n\n" + table(head) + "\n\n## extra\n\n" + table(extra) + "\n")
if ref is not None:
    print("## ref snapshots\n\n| samples | seconds | MCC |\n|---|---|---|")
    for s in ref["snapshots"]:
        print(f"| {s['samples'] / 1e6:.1f} M | {s['seconds']:.1f} | {s.get('mcc', math.nan):.4f} |")
    print("\nprofile", json.dumps(ref["profile"]))

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    raise SystemExit(0) from None
fig, ax = plt.subplots(figsize=(9, 4.8))
for i, s in enumerate(summarise(head + extra)):
    x, y = s["l0"]["mean"], s["mcc"]["mean"]
    ax.scatter(x, y, color=plt.cm.tab20(i % 20), marker="os^D"[i // 20 % 4], label=s["variant"])
    if s["seeds"] > 1:
        ax.plot([x, x], [s["mcc"]["min"], s["mcc"]["max"]], color=plt.cm.tab20(i % 20))
    ax.scatter(x, s["mcc_random_at_l0"]["mean"], marker="x", color="grey")
ax.scatter([], [], marker="x", color="grey", label="random directions @ same L0")
ax.axhline(PUBLISHED["batchtopk"], ls=":", color="k", lw=0.8)
ax.text(40, PUBLISHED["batchtopk"] + 0.008, "published BatchTopK, L0 25, 200 M samples", fontsize=7)
ax.set_xscale("log")
ax.set_xlabel("L0 (latents firing per sample)")
ax.set_ylabel("MCC (sae-lens, decoder columns / encoder rows)")
n = sorted({r["samples"] / 1e6 for r in head + extra})
ax.set_title("SynthSAEBench-16k v2, width 4,096, " + " / ".join(f"{v:.1f}" for v in n)
             + " M samples per model (head / extra)", fontsize=9)  # fmt: skip
ax.legend(fontsize=6, ncol=1, loc="center left", bbox_to_anchor=(1.01, 0.5))
fig.tight_layout()
fig.savefig(ROOT / "gpu16k_mcc_vs_l0.png", dpi=120)
