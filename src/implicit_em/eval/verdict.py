"""Plain verdicts for the evaluation reports (issue 18): which models beat their controls,
which model is best, and where the decoder-free model wins or loses, written from the
measured rows only.

Legend: a "row" is one model (one variant, or one read-out of one model) scored with its
controls: the same model untrained (random init) and K random unit directions read out at
the trained row's L0. A row *beats its controls* when even its worst seed is above the best
seed of either control by more than `margin` (the ranges do not touch); it is *at the
controls* otherwise. "Matched L0" means the two L0s differ by at most `l0_tolerance`
(relative). No threshold here is tuned to a result: they are fixed, stated in the text the
verdict writes, and the same for every model.

Model kinds (synthetic harness; from the variant's spec, `eval.options.Variant`, and the
family registry):
- "decoder-free": the paper's encoder family with no reconstruction term (Eq. 5 alone, or with
  its energy / penalty variants).
- "hybrid": a model with a reconstruction (or a later decoder) that also carries the
  encoder's LSE + InfoMax terms: a tied model with the encoder terms on (variant, or a family
  registered with `em_terms=True`), the harness's TopK "hybrid", or decoder-free pre-training.
- "one-matrix": a tied model (the decoder is the encoder's own rows) without those terms.
- "SAE": a registered SAE family with its own decoder, trained from random init.
The issue's target asks for a decoder-free or hybrid model: a one-matrix model is reported
but cannot meet it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from implicit_em.families.registry import DEFAULT_FAMILY, FAMILIES

MARGIN = 0.01
"""A row beats a control when its worst seed exceeds the control's best seed by more than
this (MCC or accuracy units)."""
L0_TOLERANCE = 0.25
"""Two rows are at matched L0 when |L0_a - L0_b| <= this x max(L0_a, L0_b)."""

DECODER_FREE, SAE, ONE_MATRIX, HYBRID = "decoder-free", "SAE", "one-matrix", "hybrid"


def variant_kind(spec) -> str:
    """DECODER_FREE, HYBRID, ONE_MATRIX or SAE for an `eval.options.Variant` (module doc)."""
    entry = FAMILIES.get(spec.family)
    if getattr(spec, "tied_recon", 0.0):
        return HYBRID if getattr(spec, "encoder_terms", True) else ONE_MATRIX
    if getattr(spec, "pretrain_fraction", 0.0):
        return HYBRID if getattr(spec, "pretrain", DEFAULT_FAMILY) == DEFAULT_FAMILY else SAE
    if spec.family == DEFAULT_FAMILY:
        return DECODER_FREE
    if spec.family == "hybrid" or (entry is not None and entry.em_terms):
        return HYBRID
    if entry is not None and entry.tied:
        return ONE_MATRIX
    return SAE


def pretrain_control(name: str, names: Iterable[str]) -> str | None:
    """The control of a pre-trained variant among `names`: the variant of VARIANTS whose spec
    is `name`'s with the pre-training dropped (`pretrain="none"`: the same decoder steps from
    random init, e.g. `topk-half` for `topk-pretrained`); None when `name` is not pre-trained
    or no such row is in `names`."""
    from dataclasses import replace

    from implicit_em.eval.options import VARIANTS

    spec = VARIANTS.get(name)
    if spec is None or not getattr(spec, "pretrain_fraction", 0.0):
        return None
    want = replace(spec, pretrain="none")
    return next((n for n in names if n != name and VARIANTS.get(n) == want), None)


def row_kind(name: str, mcc_encoder_rows: float) -> str:
    """The kind of a synthetic row by its variant name; a name outside VARIANTS falls back to
    its columns (an SAE reports the MCC of its encoder rows beside its decoder's)."""
    from implicit_em.eval.options import VARIANTS

    if name in VARIANTS:
        return variant_kind(VARIANTS[name])
    return SAE if not math.isnan(mcc_encoder_rows) else DECODER_FREE


def matched_l0(a: float, b: float, tol: float = L0_TOLERANCE) -> bool:
    """|a - b| <= tol x max(a, b): the two models fire about as many latents per sample."""
    return abs(a - b) <= tol * max(a, b, 1e-12)


def apart(a: list[float], b: list[float], margin: float = MARGIN) -> str:
    """Seed values a against b: "above" when a's worst exceeds b's best by more than margin,
    "below" the other way round, else "level" (the rule for beating a control: MARGIN)."""
    if min(a) > max(b) + margin:
        return "above"
    if max(a) < min(b) - margin:
        return "below"
    return "level"


def nearest_in_window(l0: dict[str, float], target_l0: float,
                      tol: float = L0_TOLERANCE) -> str | None:  # fmt: skip
    """The name whose L0 lies in the window [target_l0 (1 - tol), target_l0 (1 + tol)] and is
    nearest target_l0; None when no L0 is inside.

    l0: name -> mean L0 (latents firing per sample), e.g. one coefficient sweep of a family.
    The window is fixed around the target (for 25 at tol 0.25: [18.75, 31.25]), unlike
    `matched_l0`, which scales with the larger of two L0s. A tie goes to the first name given.
    Used for rules of the form "the headline row is the coefficient whose mean L0 is inside
    the window and nearest the target" (docs/eval/synthetic/gpu16k-jumprelu-PLAN.md).
    """
    inside = {n: v for n, v in l0.items() if abs(v - target_l0) <= tol * target_l0}
    return min(inside, key=lambda n: abs(inside[n] - target_l0), default=None)


def ground_truth_rows(summary: list[dict], margin: float = MARGIN) -> list[dict]:
    """One plain row per entry of a ground-truth summary (`eval.synthetic.summarise`): name,
    seeds, kind (`row_kind`), mean MCC, worst-seed MCC ("mcc_min"), the best control seed
    ("control": max over seeds of the untrained init's and random directions' MCC), mean L0,
    dead latents (mean and worst seed) and "beats": worst seed > control + margin."""
    rows = []
    for s in summary:
        control = max(s["mcc_untrained"]["max"], s["mcc_random_at_l0"]["max"])
        rows.append({
            "name": s["variant"], "seeds": s["seeds"], "mcc": s["mcc"]["mean"],
            "mcc_min": s["mcc"]["min"], "control": control, "l0": s["l0"]["mean"],
            "dead": s["dead_latents"]["mean"], "dead_max": s["dead_latents"]["max"],
            "kind": row_kind(s["variant"], s["mcc_encoder_rows"]["mean"]),
            "beats": s["mcc"]["min"] > control + margin,
        })  # fmt: skip
    return rows


def best_sae_baseline(rows: list[dict], target_l0: float | None = None,
                      l0_tolerance: float = L0_TOLERANCE) -> dict | None:  # fmt: skip
    """The SAE row of `ground_truth_rows` with the highest mean MCC, among those at an L0
    matched to target_l0 (`matched_l0`) when given; None when there is none."""
    sae = [r for r in rows if r["kind"] == SAE]
    if target_l0 is not None:
        sae = [r for r in sae if matched_l0(r["l0"], target_l0, l0_tolerance)]
    return max(sae, key=lambda r: r["mcc"], default=None)


def seeds_text(n: int) -> str:
    """The text "1 seed" or "N seeds": how the verdicts write a row's seed count."""
    return "1 seed" if n == 1 else f"{n} seeds"


def best_row(rows: list[dict], margin: float = MARGIN) -> dict | None:
    """The row to name as "best" among rows of `ground_truth_rows`: of the rows whose mean MCC
    is within `margin` of the highest (level with it by the seed-range rule's margin), the one
    with the most seeds, then the highest mean MCC; None for no rows. A one-seed row 0.0002
    above a three-seed row is not named over it: the difference is inside the margin and the
    one-seed row has no spread. Used for the descriptive "best" lines of `synthetic_verdict`
    only; the best SAE *baseline* a target is judged against stays the highest mean MCC
    (`best_sae_baseline`), so that the reference is never the weaker of two level rows."""
    if not rows:
        return None
    top = max(r["mcc"] for r in rows)
    level = [r for r in rows if r["mcc"] >= top - margin]
    return max(level, key=lambda r: (r["seeds"], r["mcc"]))


def at_own_l0(r: dict, rows: list[dict], tol: float = L0_TOLERANCE) -> dict | None:
    """The best SAE row of `rows` at an L0 matched to r's own (`best_sae_baseline` with r's L0
    as the target); None when no SAE row is there. The matched-L0 reading of a model whose L0
    is off a table's target L0 (e.g. the encoder at L0 214 against TopK trained at k = 214)."""
    return best_sae_baseline(rows, r["l0"], tol)


def synthetic_verdict(summary: list[dict], margin: float = MARGIN,
                      l0_tolerance: float = L0_TOLERANCE,
                      target_l0: float | None = None) -> list[str]:  # fmt: skip
    """Markdown lines of a plain verdict on a ground-truth table.

    summary: `eval.synthetic.summarise(rows)` (each entry: variant, seeds, and mean / min /
    max of mcc, mcc_encoder_rows, mcc_untrained, mcc_random_at_l0, l0, dead_latents).
    Metric: sae-lens `mean_correlation_coefficient` (MCC) of the model's feature directions
    against the true features. target_l0: the L0 a table was run at (e.g. k = 25); when given,
    the best SAE baseline is the best SAE row at an L0 matched to it (`matched_l0`), and SAE
    rows off it are named but not compared against; None: every SAE row is eligible.
    The "best" model of each kind (and the best candidate for the target) is `best_row`: of
    the rows within `margin` of the highest mean MCC, the one with the most seeds. A
    decoder-free or hybrid row off the best SAE baseline's L0 is also read against the best
    SAE row at its own L0 (`at_own_l0`), when the table has one ("At their own L0").
    Returns [] for an empty summary.
    """
    if not summary:
        return []
    rows = ground_truth_rows(summary, margin)

    def show(r: dict) -> str:
        return (f"`{r['name']}` ({r['kind']}) MCC {r['mcc']:.3f} at L0 {r['l0']:.1f}, "
                f"{r['dead']:.0f} dead, {seeds_text(r['seeds'])}")  # fmt: skip

    out = [
        "## Verdict",
        "",
        f"Written by `eval.verdict.synthetic_verdict` from the table above. A model *beats its "
        f"controls* when its worst seed is more than {margin} above the best seed of both its "
        f"untrained init and random directions at its L0; L0s are *matched* within "
        f"{l0_tolerance:.0%}.",
        "",
    ]
    at_controls = [r for r in rows if not r["beats"]]
    if at_controls:
        out.append("- **At its controls** (no better than an untrained model or random "
                   "directions): " + "; ".join(show(r) for r in at_controls) + ".")  # fmt: skip
    else:
        out.append("- **Every model beats its controls.**")
    best = best_row(rows, margin)
    out.append(f"- **Best model:** {show(best)}.")
    by_kind = {k: [r for r in rows if r["kind"] == k]
               for k in (SAE, DECODER_FREE, HYBRID, ONE_MATRIX)}  # fmt: skip
    eligible = by_kind[SAE]
    if target_l0 is not None:
        eligible = [r for r in eligible if matched_l0(r["l0"], target_l0, l0_tolerance)]
        off = [r for r in by_kind[SAE] if r not in eligible]
        if off:
            out.append(f"- **SAE rows off the target L0 {target_l0:g}** (not eligible as the "
                       "best SAE baseline): " + "; ".join(show(r) for r in off) + ".")  # fmt: skip
    best_sae = best_sae_baseline(rows, target_l0, l0_tolerance)
    if best_sae is not None:
        at = f" (at the target L0 {target_l0:g})" if target_l0 is not None else ""
        out.append(f"- **Best SAE baseline{at}:** {show(best_sae)}.")
    for kind in (DECODER_FREE, HYBRID, ONE_MATRIX):
        if not by_kind[kind]:
            continue
        r = best_row(by_kind[kind], margin)
        line = f"- **Best {kind} model:** {show(r)}"
        if best_sae is not None:
            diff = r["mcc"] - best_sae["mcc"]
            side = "above" if diff > margin else "below" if diff < -margin else "level with"
            l0 = (
                "at matched L0"
                if matched_l0(r["l0"], best_sae["l0"], l0_tolerance)
                else f"but NOT at matched L0 ({r['l0']:.1f} against {best_sae['l0']:.1f})"
            )
            line += f"; {abs(diff):.3f} {side} the best SAE baseline, {l0}"  # fmt: skip
        out.append(line + ".")
    if best_sae is not None:
        own = []
        for r in rows:
            if r["kind"] not in (DECODER_FREE, HYBRID) or matched_l0(
                r["l0"], best_sae["l0"], l0_tolerance
            ):
                continue
            s = at_own_l0(r, rows, l0_tolerance)
            if s is not None:
                d = r["mcc"] - s["mcc"]
                side = "above" if d > margin else "below" if d < -margin else "level with"
                own.append(f"`{r['name']}` MCC {r['mcc']:.3f} at L0 {r['l0']:.1f} is "
                           f"{abs(d):.3f} {side} {show(s)}")  # fmt: skip
        if own:
            out.append("- **At their own L0** (decoder-free and hybrid rows off the best SAE "
                       "baseline's L0, against the best SAE row at an L0 matched to theirs): "
                       + "; ".join(own) + ".")  # fmt: skip

        def misses(r: dict) -> list[str]:
            out = []
            if not r["beats"]:
                out.append("it is not above its controls")
            if r["dead"] != 0:
                out.append(f"it has {r['dead']:.0f} dead latents")
            if r["mcc"] < best_sae["mcc"] - margin:
                out.append(f"its MCC is {best_sae['mcc'] - r['mcc']:.3f} below the best SAE "
                           "baseline")  # fmt: skip
            if not matched_l0(r["l0"], best_sae["l0"], l0_tolerance):
                out.append(f"its L0 {r['l0']:.1f} is not matched to {best_sae['l0']:.1f}")
            return out

        candidates = [r for r in rows if r["kind"] in (DECODER_FREE, HYBRID)]
        wins = [r for r in candidates if not misses(r)]
        target = ("- **Ground-truth half of the issue's target** (a decoder-free or hybrid "
                  "model at least level with the best SAE baseline at matched L0, with zero "
                  "dead latents, above its controls): ")  # fmt: skip
        if wins:
            names = ", ".join(f"`{r['name']}`" for r in wins)
            out.append(target + f"**met in this table** by {names}.")
        elif candidates:
            near = best_row(candidates, margin)
            out.append(target + f"**not met in this table**: the best candidate, `{near['name']}`"
                       f" ({near['kind']}): " + "; ".join(misses(near)) + ".")  # fmt: skip
        else:
            out.append(target + "**not met in this table**: it has no decoder-free or hybrid "
                       "model.")  # fmt: skip
    if any(r["seeds"] == 1 for r in rows):
        out.append("- Rows with one seed have no spread: a difference there may be seed noise.")
    return out


PROBING_FILES = {
    "probing2": ("gpu2 compare", "verdict", "`implicit-em eval-suite probing-study compare`"),
    "probing3": ("gpu3 compare", "rows", "`implicit-em eval-suite probing-study compare3`"),
    "probing4": ("gpu4 compare", "rows", "`implicit-em eval-suite probing-study compare4`"),
    "probing6": ("gpu6 compare", "rows", "docs/eval/probing/gpu6/compare6.py"),
    "probing7": ("gpu7 compare", "rows", "docs/eval/probing/gpu7/compare7.py"),
    "probing8": ("gpu8 compare", "rows", "docs/eval/probing/gpu8/compare8.py"),
    "probing5": ("gpu5 compare", "gpu5", "docs/eval/probing/gpu5/compare5.py"),
}
"""The probing studies' compare files, one row each: slot -> (what it is called in errors, the
key each "K<latents>" entry must hold, what writes it). A new one-pass probing run is a row
here (before LONGER_STUDY) plus its `eval.options.VerdictOptions` field of the same name; the
loader, the verdict, its figures and the CLI read this table. "probing5" (LONGER_STUDY) has its
own shape (`eval.summary.longer_budget`)."""

PROBING_STUDIES = tuple(PROBING_FILES)
"""The probing studies the cross-study verdict reads (`eval.summary.PROBING`), shortest budget
and earliest first: gpu2-gpu4 and gpu6-gpu8 at one pass over the 2 M training tokens (a later
run's row of a name replaces an earlier run's probing and CE), LONGER_STUDY at the longer budget
(it supersedes any model and K it measured). Here, below both `eval.summary` and
`eval.verdict_figures`, so that both read one list."""
LONGER_STUDY = "probing5"
assert PROBING_STUDIES[-1] == LONGER_STUDY

RAW_ROW = "raw residual (k-sparse baseline)"
"""The probing row of the raw residual (kind "raw"): its D dimensions read out like latents,
the k with the largest class-mean difference. A baseline, not a ceiling: trained read-outs
can score above it. The ceiling is the probe on all D dimensions (`ceiling_label`)."""
OLD_RAW_ROW = "raw residual (ceiling)"
"""RAW_ROW's name in result files written before the eleventh session (the committed files
under docs/eval/probing/ keep it); `probing_row_label` shows it as RAW_ROW."""


def probing_row_label(name: str) -> str:
    """The name a probing row is shown under: OLD_RAW_ROW as RAW_ROW, any other name as is."""
    return RAW_ROW if name == OLD_RAW_ROW else name


def ceiling_label(dim: int | None = None) -> str:
    """The name of the probing ceiling: the logistic probe on all `dim` dimensions of the raw
    residual (the raw row's `full` probe; 'all dims' when dim is not known)."""
    return f"raw residual, all {dim} dims (ceiling)" if dim else "raw residual, all dims (ceiling)"


def _base_and_suffix(row: str) -> tuple[str, str]:
    """'encoder-relu (untrained) [a]' -> ('encoder-relu (untrained)', ' [a]')."""
    for suffix in (" [a]", " [r]"):
        if row.endswith(suffix):
            return row[: -len(suffix)], suffix
    return row, ""


def probing_controls(row: str, kinds: dict[str, str]) -> list[str]:
    """The control rows of a trained probing row: its untrained twin (same read-out suffix)
    and the random directions drawn at its L0 (named '... (<row>)')."""
    base, suffix = _base_and_suffix(row)
    out = [f"{base} (untrained){suffix}"] if f"{base} (untrained){suffix}" in kinds else []
    out += [r for r, k in kinds.items() if k == "random" and r.endswith(f"({base})")]
    return out


def probing_verdict(summary: dict[str, dict], kinds: dict[str, str], ks: Iterable,
                    margin: float = MARGIN) -> list[str]:  # fmt: skip
    """Markdown lines of a plain verdict on a k-sparse probing table.

    summary: row -> {"mean": {k: accuracy}} (mean test accuracy over datasets; the SAEBench
    k-sparse probing protocol, Gao et al. 2024 / Kantamneni et al. 2025); kinds: row ->
    trained / untrained / random / raw. Decoder-free read-outs are the rows with a " [a]"
    (energies) or " [r]" (responsibilities) suffix. A row beats its controls at k when its
    accuracy exceeds the best of its controls (`probing_controls`) by more than `margin`.
    """
    ks = [str(k) for k in ks]
    trained = [r for r, k in kinds.items() if k == "trained" and r in summary]
    raw = [r for r, k in kinds.items() if k == "raw" and r in summary]
    if not trained:
        return []
    out = [
        "## Verdict",
        "",
        f"Written by `eval.verdict.probing_verdict` from the first table above (mean over "
        f"datasets). A read-out *beats its controls* at k when it is more than {margin} above "
        f"both its untrained twin and random directions at its L0.",
        "",
    ]
    for k in ks:
        acc = {r: summary[r]["mean"][k] for r in summary}
        best = max(trained, key=acc.get)
        parts = [f"best trained read-out `{best}` {acc[best]:.3f}"]
        if raw:
            parts.append(f"{probing_row_label(raw[0])} {acc[raw[0]]:.3f}")
        below = []
        for r in trained:
            ctrl = probing_controls(r, kinds)
            if ctrl and acc[r] <= max(acc[c] for c in ctrl) + margin:
                c = max(ctrl, key=acc.get)
                below.append(f"`{r}` {acc[r]:.3f} against `{c}` {acc[c]:.3f}")
        dfree = [r for r in trained if _base_and_suffix(r)[1]]
        if dfree:
            d = max(dfree, key=acc.get)
            parts.append(f"best decoder-free read-out `{d}` {acc[d]:.3f} "
                         f"({acc[d] - acc[best]:+.3f} against the best)")  # fmt: skip
        line = f"- **k = {k}:** " + "; ".join(parts) + "."
        line += (" At or below its controls: " + "; ".join(below) + "." if below
                 else " Every trained read-out beats its controls.")  # fmt: skip
        out.append(line)
    return out


def downstream_verdict(ce: dict[str, dict]) -> list[str]:
    """Markdown lines on CE-loss recovered (the fraction of the zero-ablation CE increase that
    splicing the reconstruction in removes; Bricken et al. 2023 / SAEBench).

    ce: "<model> | <read-out>" -> {"ce_loss_recovered", "kind"} as `probing_suite` writes it
    (entries "orig" and "zero" are skipped). Names the best trained entry and every trained
    entry that recovers no more than its untrained twin through the same read-out."""
    entries = {n: r for n, r in ce.items() if n not in ("orig", "zero")}
    trained = {n: r for n, r in entries.items() if r.get("kind") == "trained"}
    if not trained:
        return []
    best = max(trained, key=lambda n: trained[n]["ce_loss_recovered"])
    out = ["", f"- **CE-loss recovered:** best trained `{best}` "
               f"{trained[best]['ce_loss_recovered']:.3f}."]  # fmt: skip
    for name, r in trained.items():
        model, readout = name.split(" | ", 1)
        twin = entries.get(f"{model} (untrained) | {readout}")
        if twin is not None and twin["ce_loss_recovered"] >= r["ce_loss_recovered"]:
            out.append(f"- `{name}` {r['ce_loss_recovered']:.3f} is no better than its untrained "
                       f"twin ({twin['ce_loss_recovered']:.3f}).")  # fmt: skip
    return out


__all__ = [
    "apart",
    "at_own_l0",
    "best_row",
    "best_sae_baseline",
    "ceiling_label",
    "downstream_verdict",
    "ground_truth_rows",
    "DECODER_FREE",
    "HYBRID",
    "L0_TOLERANCE",
    "MARGIN",
    "OLD_RAW_ROW",
    "ONE_MATRIX",
    "RAW_ROW",
    "SAE",
    "pretrain_control",
    "seeds_text",
    "matched_l0",
    "probing_controls",
    "probing_row_label",
    "probing_verdict",
    "row_kind",
    "synthetic_verdict",
    "variant_kind",
]
