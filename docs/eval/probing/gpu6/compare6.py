"""The verdict rules of GPU run 6 (docs/eval/probing/gpu6_plan.md, "Rules"), as code fixed before
the run: wr in combination with softplus and with unit-norm rows, each against wr alone (a),
against its base variant (b) and against its controls (c), per K; and every row of the run by
gpu3's rules (`compare.compare3`, so that the cross-study verdict can read the file as it reads
gpu3_compare.json).

    python docs/eval/probing/gpu6/compare6.py --results R6/results.json \
        --baseline docs/eval/probing/gpu2/gpu2_compare.json --out docs/eval/probing/gpu6

writes gpu6_compare.md and gpu6_compare.json (refuses to replace them). Probing = SAEBench
probe, mean over the datasets and k (`compare.row_stats`), per seed; *apart* =
`eval.verdict.apart` (margin `eval.verdict.MARGIN` = 0.01 for probing, 0 for CE-loss recovered
through post-hoc least squares).
"""

from __future__ import annotations

import argparse
import sys

COMBINATIONS = {
    "encoder-wr-softplus": "encoder-softplus",
    "encoder-wr-unit-rows": "encoder-unit-rows",
}
"""Each combination row and its base variant (the same row without wr; its untrained twin is
the combination's control too: same init, wr changes only the loss)."""
WR = "encoder-wr"
"""wr alone (rule a)."""
READOUT = "post-hoc least squares"
FILES = ("gpu6_compare.md", "gpu6_compare.json")
SYNTHETIC = {"vs_wr": "below", "vs_base": "above"}
"""docs/eval/synthetic/gpu16k-next11.md, rules 3-4: both combinations below wr alone and above
their base rows (3 seeds each, MCC, margin 0.01)."""


def words(v: dict, base: str) -> list[str]:
    """The fixed sentences of gpu6_plan.md for one combination at one K (v: its entry)."""
    out = []
    a, b = v.get("vs_wr"), v.get("vs_base")
    if a:
        out.append({"above": "adds to wr alone", "level": "level with wr alone",
                    "below": "below wr alone"}[a["probing"]])  # fmt: skip
    if b:
        out.append({"above": f"wr lifts {base}", "level": f"wr does not move {base}",
                    "below": f"wr lowers {base}"}[b["probing"]])  # fmt: skip
    out.append("beats its controls" if v["beats_controls"] else "does not beat its controls")
    if a and b:
        same = a["probing"] == SYNTHETIC["vs_wr"] and b["probing"] == SYNTHETIC["vs_base"]
        out.append("as on the synthetic model" if same else "unlike the synthetic model ("
                   f"there: {SYNTHETIC['vs_wr']} wr alone, {SYNTHETIC['vs_base']} its base)")  # fmt: skip
    return out


def combinations(res: dict) -> dict:
    """Per K (str): each combination's rules (a)-(c), and wr's own lift on the encoder."""
    from implicit_em.eval.probing_study.compare import controls, entry, pair_words, row_stats_ce
    from implicit_em.eval.probing_study.plan import label_of
    from implicit_em.eval.probing_study.report import summarize

    summ = summarize(res)

    def stats(rid: str) -> dict | None:
        return row_stats_ce(summ, res, rid, READOUT)

    twin_of = {label_of(r): r.get("twin_of", label_of(r)) for r in res["plan"]["rows"]}
    out: dict = {}
    for K in res["plan"]["Ks"]:
        e: dict = {}
        wr = stats(f"{WR}-K{K}")
        enc = stats(f"encoder-K{K}")
        if wr is not None and enc is not None:
            e["encoder-wr vs encoder"] = pair_words(wr, enc)
        for combo, base in COMBINATIONS.items():
            st = stats(f"{combo}-K{K}")
            if st is None:
                e[combo] = {"measured": False}
                continue
            bs = stats(f"{base}-K{K}")
            twin = stats(f"{twin_of.get(combo, combo)}-K{K} (untrained)")
            rnd = stats(f"random dirs @ L0 of {combo}-K{K}")
            v = entry(st)
            if wr is not None:
                v["vs_wr"] = pair_words(st, wr)
            if bs is not None:
                v["vs_base"] = pair_words(st, bs)
            v |= controls(st, twin, rnd)
            v["words"] = words(v, base)
            e[combo] = v
        out[str(K)] = e
    return out


def compare6(res: dict, baseline: dict) -> tuple[str, dict]:
    """(markdown, numbers): compare3's rows and rules, each K entry with "combinations"."""
    from implicit_em.eval.probing_study.compare import (
        compare3,
        controls_cells,
        entry_cells,
        unmeasured_row,
    )

    md3, nums = compare3(res, baseline)
    comb = combinations(res)
    lines = ["# GPU run 6: wr in combination (gpu6_plan.md's rules, fixed before the run)", "",
             "## Rules (a)-(c) per combination", ""]  # fmt: skip
    for K, e in comb.items():
        nums[f"K{K}"]["combinations"] = e
        lines += [f"### K = {K}", "",
                  "| row | seeds | L0 | dead | probing [seeds] | (a) vs encoder-wr | (b) vs base | "
                  "(c) vs twin | (c) vs random @ L0 | margin over best control | CE-loss rec. "
                  "(a) / (b) | words |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for combo, v in e.items():
            if combo not in COMBINATIONS:
                continue
            if not v["measured"]:
                lines.append(unmeasured_row(combo, 12))
                continue
            a, b = v.get("vs_wr", {}), v.get("vs_base", {})
            lines.append(
                entry_cells(combo, v)
                + f"{a.get('probing', '-')} ({a.get('probing_delta', 0.0):+.3f}) | "
                f"{b.get('probing', '-')} ({b.get('probing_delta', 0.0):+.3f}) | "
                f"{controls_cells(v)} | {a.get('ce', '-')} / {b.get('ce', '-')} | "
                f"{'; '.join(v['words'])} |"
            )
        ew = e.get("encoder-wr vs encoder")
        if ew:
            lines += ["", f"encoder-wr against encoder (wr's lift on the plain encoder, this run): "
                      f"probing {ew['probing']} ({ew['probing_delta']:+.3f}), CE-loss recovered "
                      f"{ew['ce']}"]  # fmt: skip
        lines.append("")
    lines += ["## Every row by gpu3's rules (`compare.compare3`)", "", md3]
    return "\n".join(lines), nums


def main(argv: list[str]) -> int:
    from implicit_em.eval.probing_study.commands import compare_to_baseline

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", nargs="+", required=True)
    p.add_argument("--baseline", required=True, help="docs/eval/probing/gpu2/gpu2_compare.json")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    return compare_to_baseline(a.results, a.baseline, a.out, FILES, compare6)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
