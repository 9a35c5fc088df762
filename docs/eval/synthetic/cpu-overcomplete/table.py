"""Table and plot of the overcompleteness sweep (docs/eval/synthetic/overcomplete.md).

Reads the groups under docs/eval/synthetic/cpu-overcomplete/ (n{N}-s0, n{N}-s12, n512-ortho-s0;
N = 512 seeds 1, 2 from ../cpu-why/diag, the same settings) and ceiling.json; prints the
markdown tables and writes ../overcomplete_mcc.png. Run from the repository root."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path("docs/eval/synthetic/cpu-overcomplete")
CEIL = json.loads((HERE / "ceiling.json").read_text())
D = 64


def rows_for(groups):
    out = []
    for g in groups:
        p = g / "results.json"
        if p.exists():
            r = json.loads(p.read_text())
            out += [dict(row, true_l0=r["true_l0"]) for row in r["rows"]]
    return out


def metric(row, key):
    t = row["trained"]
    return {
        "mcc": t["mcc"],
        "rows": t.get("mcc_encoder_rows") or t["mcc"],
        "lstsq": t["mcc_lstsq"],
        "untrained": row["untrained"]["mcc"],
        "random": t["random_at_l0"]["mcc"],
        "l0": t["l0"],
        "dead": t["dead_latents"],
        "covered": t["features_covered"],
    }[key]


def stat(rs, key):
    v = [metric(r, key) for r in rs]
    return sum(v) / len(v), min(v), max(v)


def fmt(s, nd=3):
    m, lo, hi = s
    return f"{m:.{nd}f}" if lo == hi else f"{m:.{nd}f} [{lo:.{nd}f}, {hi:.{nd}f}]"


groups = {n: [HERE / f"n{n}-s0", HERE / f"n{n}-s12"] for n in (64, 128, 256, 512)}
groups[512].append(Path("docs/eval/synthetic/cpu-why/diag"))
groups["512-ortho"] = [HERE / "n512-ortho-s0"]
data = {}
for n, gs in groups.items():
    rs = rows_for(gs)
    seen, uniq = set(), []
    for r in rs:  # N = 512 seed 0 is in both n512-s0 and cpu-why/diag (identical): keep one
        if (r["variant"], r["seed"]) not in seen and r["variant"] in ("encoder", "topk"):
            seen.add((r["variant"], r["seed"]))
            uniq.append(r)
    if uniq:
        data[n] = {v: [r for r in uniq if r["variant"] == v] for v in ("encoder", "topk")}

print(
    "| N | N/D | true L0 | ideal filters | model | seeds | MCC | MCC enc. rows | MCC lstsq "
    "read-out | untrained | random@L0 | L0 | dead | covered |"
)
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for n, by in data.items():
    c = CEIL[str(n)]
    for v, rs in by.items():
        print(f"| {n} | {c['N'] / D:g}{' (ortho)' if 'ortho' in str(n) else ''} | "
              f"{c['true_l0']:.2f} | {c['ideal_filter_mcc']:.3f} | {v} | {len(rs)} | "
              f"{fmt(stat(rs, 'mcc'))} | {fmt(stat(rs, 'rows')) if v == 'topk' else '-'} | "
              f"{fmt(stat(rs, 'lstsq'))} | {fmt(stat(rs, 'untrained'))} | "
              f"{fmt(stat(rs, 'random'))} | {fmt(stat(rs, 'l0'), 1)} | "
              f"{fmt(stat(rs, 'dead'), 0)} | {fmt(stat(rs, 'covered'), 0)} |")  # fmt: skip

print(
    "\n| N | N/D | seeds (enc/topk) | deficit TopK - enc (MCC) | deficit (lstsq read-outs) | "
    "deficit TopK enc. rows - enc rows | enc - best control | TopK - best control | "
    "ratio |"
)
print("|---|---|---|---|---|---|---|---|---|")
for n, by in data.items():
    e, t = by["encoder"], by["topk"]
    seeds = sorted({r["seed"] for r in e} & {r["seed"] for r in t})

    def pair(f, seeds=seeds, e=e, t=t):
        vals = [f({r["seed"]: r for r in t}[s], {r["seed"]: r for r in e}[s]) for s in seeds]
        return sum(vals) / len(vals), min(vals), max(vals)

    def ctrl(r):
        return max(metric(r, "untrained"), metric(r, "random"))

    d = pair(lambda tr, er: metric(tr, "mcc") - metric(er, "mcc"))
    dl = pair(lambda tr, er: metric(tr, "lstsq") - metric(er, "lstsq"))
    dr = pair(lambda tr, er: metric(tr, "rows") - metric(er, "mcc"))
    me = pair(lambda tr, er: metric(er, "mcc") - ctrl(er))
    mt = pair(lambda tr, er: metric(tr, "mcc") - ctrl(tr))
    ratio = pair(lambda tr, er: (metric(er, "mcc") - ctrl(er)) / (metric(tr, "mcc") - ctrl(tr)))
    print(f"| {n} | {CEIL[str(n)]['N'] / D:g} | {len(seeds)} | {fmt(d)} | {fmt(dl)} | {fmt(dr)} | "
          f"{fmt(me)} | {fmt(mt)} | {fmt(ratio, 2)} |")  # fmt: skip

# Plot: MCC against N/D (the ortho point drawn apart, hollow, at N/D = 8)
fig, ax = plt.subplots(figsize=(9.5, 4.8))
ns = [n for n in data if isinstance(n, int)]
x = [n / D for n in ns]
series = [
    ("encoder, rows of W", "encoder", "mcc", "C0", "o-"),
    ("encoder, lstsq read-out", "encoder", "lstsq", "C0", "o--"),
    ("TopK, decoder columns", "topk", "mcc", "C3", "s-"),
    ("TopK, encoder rows", "topk", "rows", "C3", "s:"),
    ("TopK, lstsq read-out", "topk", "lstsq", "C3", "s--"),
    ("untrained (encoder init)", "encoder", "untrained", "grey", "x-"),
    ("random@L0 (encoder's L0)", "encoder", "random", "grey", "^:"),
    ("random@L0 (TopK's L0)", "topk", "random", "black", "v:"),
]
for label, v, key, col, style in series:
    m = [stat(data[n][v], key) for n in ns]
    ax.errorbar(x, [s[0] for s in m], yerr=[[s[0] - s[1] for s in m], [s[2] - s[0] for s in m]],
                fmt=style, color=col, label=label, capsize=2, ms=5)  # fmt: skip
ax.plot(x, [CEIL[str(n)]["ideal_filter_mcc"] for n in ns], "D-.", color="C2",
        label="ideal linear filters (Wiener)")  # fmt: skip
if "512-ortho" in data:
    for v, key, col, mk in (("encoder", "mcc", "C0", "o"), ("topk", "mcc", "C3", "s")):
        ax.scatter([8 * 1.12], [stat(data["512-ortho"][v], key)[0]], marker=mk,
                   facecolors="none", edgecolors=col, s=40)  # fmt: skip
    ax.annotate("hollow: N = 512,\northogonalised\nfeatures", (8 * 0.93, 0.25), fontsize=7)
ax.set_xscale("log", base=2)
ax.set_xticks(x, [f"{v:g}\n(N={n})" for v, n in zip(x, ns, strict=True)])
ax.set_xlabel("overcompleteness N / D (D = 64; K = N latents)")
ax.set_ylabel("MCC (sae-lens)")
ax.set_title("mini recipe at fixed D: MCC against overcompleteness (seed mean, min-max)")
ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
fig.tight_layout()
fig.savefig("docs/eval/synthetic/overcomplete_mcc.png", dpi=130)
