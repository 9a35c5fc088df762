"""The report of the GPU probing study (issue 18): merge, summarize, render, plot.

A run writes one results.json per process (`run.main_run`: one per GPU, or per K); the report
merges them (`merge_results`), folds the seeds of each row together (`summarize`: rows named
without their seed, `row_id`), and writes the tables (`render`: k-sparse probing accuracy per
k, mean over datasets, mean [min, max] over seeds, beside the untrained twin, the random
directions at the row's L0, the raw residual read k-sparse (a baseline) and its probe on all D
dimensions (the ceiling); downstream CE-loss recovered, KL, FVU) and the probing-vs-k plot
(`plot`). Moved from scripts/probing_gpu.py; the raw row is shown under `eval.verdict.RAW_ROW`
(result files written before the eleventh session name it `OLD_RAW_ROW`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from implicit_em.eval.verdict import RAW_ROW, ceiling_label, probing_row_label


def merge_results(parts: list[dict]) -> dict:
    """One results dict from several (e.g. one process per K): the per-name tables are
    united (a name in two parts, such as the raw residual, keeps the first part's entry),
    in the order of the parts (so per-seed lists follow the files' order: seeds 0-1 of one
    file, then seed 2 of the next), the block lists joined; plan and data come from the
    first part, with the union of Ks."""

    def unite(first: dict, later: dict) -> dict:
        return {**first, **{k: v for k, v in later.items() if k not in first}}

    res = json.loads(json.dumps(parts[0]))
    for part in parts[1:]:
        for key in ("l0", "dead_fraction", "kinds", "train", "fvu", "downstream", "rows",
                    "block_seconds", "errors"):  # fmt: skip
            if key in part:
                res[key] = unite(res.get(key, {}), part[key])
        for variant, rows in part.get("probing", {}).items():
            res["probing"][variant] = unite(res["probing"].get(variant, {}), rows)
        for key in ("blocks_done", "not_run"):
            res[key] = res.get(key, []) + part.get(key, [])
        res["plan"]["Ks"] = sorted(set(res["plan"]["Ks"]) | set(part["plan"]["Ks"]))
    return res


def row_id(name: str) -> str:
    """Seed-free row name: `topk-K4096-k58-s1` -> `topk-K4096`; controls keep their tag; the
    raw residual's old name (`eval.verdict.OLD_RAW_ROW`) -> `RAW_ROW`."""
    import re

    name = probing_row_label(name)

    if name.startswith("random dirs"):
        inner = name.split(" (", 1)[1][:-1]  # "random dirs @ L0 {k} ({name})"
        return f"random dirs @ L0 of {row_id(inner)}"
    tag = " (untrained)" if name.endswith(" (untrained)") else ""
    base = name.removesuffix(" (untrained)")
    base = re.sub(r"-s\d+$", "", base)
    base = re.sub(r"-k\d+$", "", base)
    return base + tag


def dataset_mean(per_task: dict, key: str) -> float:
    """Mean over datasets (the five source tasks count as one), SAEBench's averaging."""
    by_ds: dict[str, list[float]] = {}
    for task, r in per_task.items():
        v = r["full"] if key == "full" else r["k"].get(key)
        if v is not None:
            by_ds.setdefault(task.split(":")[0], []).append(v)
    return float(np.mean([np.mean(v) for v in by_ds.values()])) if by_ds else float("nan")


def summarize(res: dict) -> dict:
    """Per seed-free row: kind, K, L0 and accuracies per k (mean, min, max over seeds)."""
    ks = [str(k) for k in res["plan"]["ks"]]
    rows: dict = {}
    for variant, per_row in res["probing"].items():
        for name, per_task in per_row.items():
            rid = row_id(name)
            r = rows.setdefault(rid, {"kind": res["kinds"].get(name), "names": [], "acc": {}})
            if name not in r["names"]:
                r["names"].append(name)
            for key in [*ks, "full"]:
                r["acc"].setdefault(variant, {}).setdefault(key, []).append(
                    dataset_mean(per_task, key)
                )
    for r in rows.values():
        r["l0"] = [res["l0"][n] for n in r["names"] if n in res["l0"]]
        r["seeds"] = len(r["names"])
    ce: dict = {}
    for d in res["downstream"].values():
        for key, v in d.items():
            if key in ("orig", "zero"):
                ce.setdefault(key, {}).setdefault("ce", []).append(v["ce"])
                continue
            name, readout = key.split(" | ", 1)
            c = ce.setdefault(f"{row_id(name)} | {readout}", {"kind": v["kind"], "names": []})
            c["names"].append(name)
            for m in ("ce", "kl", "ce_loss_recovered"):
                c.setdefault(m, []).append(v[m])
            f = res["fvu"].get(key)
            if f:
                c.setdefault("fvu", []).append(f["all"])
                c.setdefault("fvu_typical", []).append(f["typical"])
    for c in ce.values():
        if "names" in c:
            c["l0"] = [res["l0"][n] for n in c["names"] if n in res["l0"]]
    return {"probing": rows, "downstream": ce, "ks": ks}


def _ms(v: list, fmt: str = ".3f") -> str:
    if not v:
        return "-"
    if len(v) == 1:
        return format(v[0], fmt)
    return f"{format(float(np.mean(v)), fmt)} [{format(min(v), fmt)}, {format(max(v), fmt)}]"


def _order(rid: str) -> tuple:
    import re

    m = re.search(r"K(\d+)", rid)
    K = int(m.group(1)) if m else 0
    kind = 2 if rid.startswith("random") else (1 if "untrained" in rid else 0)
    fam = rid.split(" @ L0 of ")[-1].split("-K")[0]
    return (K, fam, kind)


def input_dim(res: dict) -> int | None:
    """D, the residual's width, from the results (the language model's d_model, else a row's
    config); None when neither is there."""
    d = (res.get("lm") or {}).get("d_model")
    rows = res.get("rows") or {}
    return d or next((r["config"]["model"]["input_dim"] for r in rows.values()), None)


def ceiling_values(summ: dict, variant: str = "saebench") -> list[float]:
    """The raw row's full probes (all D input dimensions: the ceiling) under `variant`
    ("saebench" or "standardized"), one accuracy per seed, NaNs (rows without it) dropped;
    [] when the summary (`summarize`) has no raw row or no full probe."""
    raw = summ["probing"].get(RAW_ROW)
    full = raw["acc"].get(variant, {}).get("full", []) if raw else []
    return [float(v) for v in full if not np.isnan(v)]


def render(res: dict, summ: dict) -> str:
    ks = summ["ks"]
    raw = summ["probing"].get(RAW_ROW)
    ceiling = ceiling_label(input_dim(res))
    lines = []
    for variant, title in (
        ("saebench", "SAEBench probe (logistic regression on raw pooled codes)"),
        ("standardized", "same, features z-scored with train statistics"),
    ):
        full = ceiling_values(summ, variant)
        note = (" The first row is the ceiling: the same probe on all of the raw residual's "
                "dimensions (not k-sparse: one number, under every k). The raw residual read "
                f"k-sparse like every other row is the `{RAW_ROW}` row, a baseline that trained "
                "rows can exceed." if full else "")  # fmt: skip
        lines += [
            "",
            f"### Probing accuracy, mean over datasets: {title}",
            "",
            "Mean over the seeds, [min, max] in brackets; L0 on the held-out tokens." + note,
            "",
            "| read-out | kind | seeds | L0 | " + " | ".join(f"k={k}" for k in ks) + " |",
            "|---|---|---|---|" + "---|" * len(ks),
        ]
        if full:  # the ceiling row first
            lines.append(f"| {ceiling} | raw | {raw['seeds']} | - | "
                         + " | ".join(_ms(full) for _ in ks) + " |")  # fmt: skip
        for rid in sorted(summ["probing"], key=_order):
            r = summ["probing"][rid]
            acc = r["acc"].get(variant, {})
            l0 = _ms(r["l0"], ".1f")
            lines.append(
                f"| {rid} | {r['kind']} | {r['seeds']} | {l0} | "
                + " | ".join(_ms(acc.get(k, [])) for k in ks)
                + " |"
            )
    ce = summ["downstream"]
    lines += [
        "",
        "### Downstream loss (read-out spliced in at layer 15, full 30-block forward)",
        "",
        f"CE of the unmodified model {_ms(ce['orig']['ce'], '.4f')} nats/token; zero "
        f"ablation {_ms(ce['zero']['ce'], '.4f')}.",
        "",
        "| model | spliced through | kind | L0 | CE-loss recovered | KL | FVU | FVU typical |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = [k for k in ce if k not in ("orig", "zero")]
    for key in sorted(keys, key=lambda k: _order(k.split(" | ")[0])):
        c = ce[key]
        name, ro = key.split(" | ", 1)
        lines.append(
            f"| {name} | {ro} | {c['kind']} | {_ms(c['l0'], '.1f')} | "
            f"{_ms(c['ce_loss_recovered'])} | {_ms(c['kl'])} | {_ms(c.get('fvu', []))} | "
            f"{_ms(c.get('fvu_typical', []))} |"
        )
    return "\n".join(lines) + "\n"


def plot(res: dict, summ: dict, path: Path, variant: str = "saebench") -> None:
    """Mean probing accuracy vs k, one panel per K: trained solid, untrained dashed, random
    directions dotted, the raw residual's k-sparse baseline black, its probe on all D
    dimensions (the ceiling) a dashed black line; bars = min-max over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [int(k) for k in summ["ks"]]
    Ks = res["plan"]["Ks"]
    fig, axes = plt.subplots(1, len(Ks), figsize=(7 * len(Ks), 5.5), sharey=True)
    axes = np.atleast_1d(axes)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fams = sorted({rid.split(" @ L0 of ")[-1].split("-K")[0] for rid in summ["probing"]})
    for ax, K in zip(axes, Ks, strict=True):
        for rid, r in summ["probing"].items():
            acc = r["acc"].get(variant, {})
            if rid == RAW_ROW:
                style, color, lw = "-", "black", 2.5
                full = ceiling_values(summ, variant)
                if full:  # the ceiling: all D dimensions, mean over seeds as in the table
                    label = ceiling_label(input_dim(res))
                    ax.axhline(float(np.mean(full)), ls="--", c="black", lw=1, label=label)
            else:
                if f"-K{K}" not in rid:
                    continue
                fam = rid.split(" @ L0 of ")[-1].split("-K")[0]
                color = palette[fams.index(fam) % len(palette)]
                style = (
                    ":" if r["kind"] == "random" else ("--" if r["kind"] == "untrained" else "-")
                )
                lw = 2 if r["kind"] == "trained" else 1.1
            y = np.array([np.mean(acc[str(k)]) for k in ks])
            lo = y - np.array([min(acc[str(k)]) for k in ks])
            hi = np.array([max(acc[str(k)]) for k in ks]) - y
            ax.errorbar(
                ks,
                y,
                yerr=[lo, hi],
                fmt=style,
                color=color,
                lw=lw,
                marker="o",
                ms=3,
                capsize=2,
                label=rid,
            )
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("k (latents selected by class-mean difference)")
        ax.set_title(
            f"K = {K}: {variant} probe, mean over 5 datasets and the seeds (bars min-max)",
            fontsize=9,
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=5.5, loc="lower right", ncol=2)
    axes[0].set_ylabel("test accuracy")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
