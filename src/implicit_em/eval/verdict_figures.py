"""The figures of the cross-study verdict (`implicit-em eval-suite verdict`, issue 18's
"MCC-vs-L0 and probing plots" beside the verdict), drawn from the same study files as
`eval.summary`, so that they cannot drift from its tables.

- `mcc_vs_l0`: ground-truth MCC (sae-lens `mean_correlation_coefficient`) against L0 for every
  row of the ground-truth table, by kind (`eval.verdict.row_kind`), with each row's controls
  (the best seed of its untrained init and of random directions at its L0) and the table's
  target L0;
- `probing_vs_l0`: k-sparse probing accuracy (SAEBench protocol, mean over datasets and
  k in {1, 2, 5, 10, 20}) against L0 at each K, for every row of the probing compare files:
  SAE baselines, decoder-free, hybrid and one-matrix models, their untrained twins and random
  directions at their L0, and the raw activations read k-sparse (`eval.verdict.RAW_ROW`: a
  baseline that rows can exceed, not a ceiling) as a line. Probing against L0
  rather than k: the compare files hold the mean over k, and at LLM scale the controls' level
  rises with L0, which is what a reader must see beside each model. The rows of the longer
  budget (gpu5, `eval.summary.longer_budget`) are drawn beside gpu4's as series of their own
  ("<series> (gpu5)"), every one hollow.

Each function returns the points it drew per series (`{series: [(l0, value), ...]}`), so that
tests can check what is on the figure. Needs matplotlib (the `plot` extra).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from implicit_em.atomic import atomic_save
from implicit_em.eval.verdict import (
    DECODER_FREE,
    HYBRID,
    LONGER_STUDY,
    ONE_MATRIX,
    PROBING_STUDIES,
    RAW_ROW,
    SAE,
    ground_truth_rows,
    probing_row_label,
)

KIND_STYLE = {
    SAE: ("s", "0.45", "SAE baselines"),
    DECODER_FREE: ("o", "tab:blue", "decoder-free"),
    HYBRID: ("^", "tab:orange", "hybrid"),
    ONE_MATRIX: ("D", "tab:green", "one-matrix (tied)"),
}
"""kind -> (marker, colour, legend label)."""
CONTROL_STYLE = {
    "untrained": ("x", "tab:red", "untrained init (gpu2, at its own L0)"),
    "twin": ("1", "tab:red", "untrained twin (gpu3-gpu8, at its row's L0)"),
    "random": ("+", "tab:purple", "random directions at the L0"),
}
LONGER_TAG = " (gpu5)"
"""Suffix of the longer budget's series (eval.summary.LONGER: gpu4's rows, 7.2x the tokens)."""
LONGER_STYLE = {
    **{
        k + LONGER_TAG: (m, c, f"{lab}, gpu5: 7.2x tokens") for k, (m, c, lab) in KIND_STYLE.items()
    },
    "twin" + LONGER_TAG: ("v", "tab:red", "untrained twin of a gpu5 row, at its L0"),
    "random" + LONGER_TAG: ("P", "tab:purple", "random directions at a gpu5 row's L0"),
}
"""The longer budget's series, every one drawn hollow (`_scatter`): the kinds' markers and
colours, the controls as hollow triangles (twin) and plus signs (random directions)."""


def _axes(n: int, width: float = 6.0, height: float = 4.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return plt, fig, list(axes[0])


def _scatter(ax, points: dict, styles: dict) -> None:
    """One scatter per series; the longer budget's series (LONGER_TAG) are drawn hollow and
    larger, on top, so they read apart from gpu4's filled markers."""
    for series, pts in points.items():
        if pts and series in styles:
            marker, colour, label = styles[series]
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            if series.endswith(LONGER_TAG):
                ax.scatter(xs, ys, marker=marker, facecolors="none", edgecolors=colour,
                           linewidths=1.6, s=56, zorder=3, label=f"{label} ({len(pts)})")  # fmt: skip
            else:
                ax.scatter(xs, ys, marker=marker, c=colour, label=f"{label} ({len(pts)})",
                           s=36, alpha=0.85)  # fmt: skip


def infomax_curve(rows: list[dict]) -> list[tuple[float, dict]]:
    """The decoder-free encoder at each InfoMax weight measured: (weight, row) for `encoder`
    (x 1) and every `encoder-im<w>` row of `ground_truth_rows`, by weight, largest first."""
    out = []
    for r in rows:  # a row name of the registry, not a family: `encoder` is x 1
        m = re.fullmatch(r"encoder(?:-im(\d+(?:\.\d+)?))?", r["name"])
        if m:
            out.append((1.0 if m.group(1) is None else float(m.group(1)), r))
    return sorted(out, key=lambda wr: -wr[0])


def _label_candidates(ax, rows: list[dict]) -> None:
    """The InfoMax-weight curve joined by a line, each point labelled with its weight, and the
    hybrid and one-matrix rows labelled by name (the other points stay unlabelled: the
    verdict's table names them all)."""
    curve = infomax_curve(rows)
    if len(curve) > 1:
        ax.plot([r["l0"] for _, r in curve], [r["mcc"] for _, r in curve], "-", c="tab:blue",
                lw=0.8, alpha=0.6, zorder=1,
                label="decoder-free encoder, InfoMax weights x 1 to x 0")  # fmt: skip
        for w, r in curve:  # the weights below 0.01 sit left of the curve's top, the rest right
            left = w < 0.01
            ax.annotate(f"x{w:g}", (r["l0"], r["mcc"]), xytext=(-4 if left else 4, 2),
                        textcoords="offset points", fontsize=6.5, color="tab:blue",
                        ha="right" if left else "left")  # fmt: skip
    named = sorted((r for r in rows if r["kind"] in (HYBRID, ONE_MATRIX)), key=lambda r: -r["mcc"])
    for i, r in enumerate(named):  # right of the point; a line lower per higher neighbour
        near = sum(abs(math.log10(q["l0"] / r["l0"])) < 0.2 and q["mcc"] - r["mcc"] < 0.06
                   for q in named[:i])  # fmt: skip
        ax.annotate(r["name"], (r["l0"], r["mcc"]), xytext=(10, 6 - 8 * near),
                    textcoords="offset points", fontsize=6, color="0.25")  # fmt: skip


def mcc_vs_l0(table: dict, path: Path) -> dict[str, list[tuple[float, float]]]:
    """Ground-truth MCC against L0 (log axis) for every row of a ground-truth table
    (`docs/eval/synthetic/gpu16k_seeds_table.py`'s JSON: "summary", "target_l0"), written to
    `path` (PNG). Controls: each row's best control seed at its L0. Returns the points per
    series (kinds of `KIND_STYLE`, "untrained" for the controls)."""
    rows = ground_truth_rows(table["summary"])
    points: dict[str, list] = {k: [] for k in KIND_STYLE}
    points["untrained"] = []
    for r in rows:
        points.setdefault(r["kind"], []).append((r["l0"], r["mcc"]))
        points["untrained"].append((r["l0"], r["control"]))
    plt, fig, (ax,) = _axes(1, 7.0, 5.4)
    styles = {**KIND_STYLE, "untrained": ("x", "tab:red", "controls: best of untrained and "
                                          "random directions")}  # fmt: skip
    _scatter(ax, points, styles)
    _label_candidates(ax, rows)
    ax.axvline(table["target_l0"], ls=":", c="k", lw=1, label=f"target L0 {table['target_l0']}")
    ax.set(xscale="log", xlabel="L0 (active latents per sample)", ylabel="MCC (sae-lens)",
           title="Ground truth (SynthSAEBench-16k): MCC against L0")  # fmt: skip
    # below the axes: inside, it hid points wherever it was put (the SAEs at L0 214)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    fig.tight_layout()
    atomic_save(lambda tmp: fig.savefig(tmp, dpi=110, format="png"), path)
    plt.close(fig)
    return points


def _probing_points(study: str, data: dict, K: str, skip: set[str] = frozenset()) -> dict:
    """The points of one K of a probing compare file ("probing2": gpu2_compare.json's rows;
    "probing3" / "probing4" / "probing6" / "probing7" / "probing8" / "probing5":
    gpu3_compare.json's / gpu4_compare.json's / gpu6_compare.json's / gpu7_compare.json's /
    gpu8_compare.json's rows, or gpu5's as
    `eval.summary.longer_budget` reads them, with their untrained twin, "twin", drawn at the
    row's L0 since the files do not hold the twin's own, and their random-direction control),
    leaving out the row names in `skip` (probing3/4/6/7/8) and gpu2's
    responsibilities read-out rows (`encoder[r]`, r = softmax(-a): chance, 0.500, at L0 = K).
    gpu2's raw-residual row, under its name of either session (`eval.verdict.probing_row_label`),
    goes to series "raw"."""
    e = data.get(K)
    points: dict[str, list] = {"raw": []}
    if e is None:
        return points
    if study == "probing2":
        kinds = {f"{m}-{K}": v["kind"] for m, v in e["verdict"]["models"].items()}
        for name, r in e["rows"].items():
            if r.get("mean_k") is None or "[r]" in name:
                continue
            if probing_row_label(name) == RAW_ROW:
                points["raw"].append((None, r["mean_k"]))
                continue
            if r.get("l0") is None:
                continue
            if name.startswith("random dirs"):
                series = "random"
            elif name.endswith("(untrained)"):
                series = "untrained"
            else:
                series = kinds.get(name, SAE)
            points.setdefault(series, []).append((r["l0"], r["mean_k"]))
    else:
        for name, r in e["rows"].items():
            if name in skip:
                continue
            points.setdefault(r["kind"], []).append((r["l0"], r["mean_k"]))
            for key, series in (("twin_mean_k", "twin"), ("random_mean_k", "random")):
                if r.get(key) is not None:
                    points.setdefault(series, []).append((r["l0"], r[key]))
    return points


ONE_PASS_LATEST = tuple(k for k in reversed(PROBING_STUDIES) if k not in ("probing2", LONGER_STUDY))
"""The one-pass probing runs of compare3's shape (`eval.verdict.PROBING_STUDIES` without
gpu2's file, whose rows are named otherwise, and the longer budget), latest first: a row name
drawn from one is not drawn again from a later entry."""


def probing_vs_l0(studies: dict[str, dict], path: Path) -> dict[str, dict[str, list]]:
    """k-sparse probing accuracy (mean over datasets and k) against L0, one panel per K, from
    the probing compare files {"probing2": data, "probing3": data, "probing4": data,
    "probing6": data, "probing7": data, "probing8": data, "probing5": data} (any may be missing;
    probing4 and probing6-8 have probing3's shape, and so has probing5 as
    `eval.summary.longer_budget` returns it), written to `path` (PNG).
    Returns {K: {series: points}}; "raw" holds the raw activations' k-sparse accuracy (drawn as
    a line, labelled `eval.verdict.RAW_ROW`: a baseline, not a ceiling). A row in several of
    gpu3, gpu4 and gpu6-gpu8 is drawn once, from the latest (as `eval.summary` reads it); gpu5's
    rows, at another budget, are drawn beside gpu4's as series "<series> (gpu5)"."""
    ks = sorted({K for d in studies.values() if d for K in d}, key=lambda k: int(k[1:]))
    if not ks:
        raise ValueError("no probing study to plot: pass gpu2_compare.json or gpu3_compare.json")
    plt, fig, axes = _axes(len(ks), width=7.0, height=6.4)
    out = {}
    for ax, K in zip(axes, ks, strict=True):
        merged: dict[str, list] = {}
        drawn: set[str] = set()  # the latest one-pass run first: its rows win over earlier ones'
        for study in sorted(studies, key=lambda k: ONE_PASS_LATEST.index(k)
                            if k in ONE_PASS_LATEST else len(ONE_PASS_LATEST)):  # fmt: skip
            data = studies[study]
            if not data:
                continue
            tag = LONGER_TAG if study == LONGER_STUDY else ""
            for series, pts in _probing_points(study, data, K, set() if tag else drawn).items():
                merged.setdefault(series if series == "raw" else series + tag, []).extend(pts)
            if study in ONE_PASS_LATEST and K in data:
                drawn |= set(data[K]["rows"])
        _scatter(ax, merged, {**KIND_STYLE, **CONTROL_STYLE, **LONGER_STYLE})
        for _, acc in merged.get("raw", [])[:1]:
            ax.axhline(acc, ls="--", c="k", lw=1, label=f"{RAW_ROW} {acc:.3f}")
        ax.set(xscale="log", xlabel="L0 (active latents per token)",
               ylabel="k-sparse probing accuracy (mean over tasks, k)",
               title=f"SmolLM2-135M layer 15, K = {K[1:]}")  # fmt: skip
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
        if any(s.endswith(LONGER_TAG) and pts for s, pts in merged.items()):
            ax.set_title(ax.get_title() + "\nhollow markers: gpu5 (gpu4's rows, 7.2x the "
                         "training tokens)", fontsize=9)  # fmt: skip
        out[K] = merged
    fig.tight_layout()
    atomic_save(lambda tmp: fig.savefig(tmp, dpi=110, format="png"), path)
    plt.close(fig)
    return out


FIGURES = ("verdict_mcc_vs_l0.png", "verdict_probing_vs_l0.png")
"""The files `eval.summary.run` writes beside verdict.md (in this order)."""

__all__ = ["FIGURES", "mcc_vs_l0", "probing_vs_l0"]
