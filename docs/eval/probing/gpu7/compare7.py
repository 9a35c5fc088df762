"""The verdict rules of GPU run 7 (docs/eval/probing/gpu7_plan.md, "Rules"), as code fixed before
the run: the hybrid with the weight-redundancy term (tied-topk-im-3.0-wr) against the hybrid
(a), against tied TopK without the implicit-EM terms (b) and against its controls (c), per K,
with the synthetic model's pattern (d); and every row of the run by gpu3's rules
(`compare.compare3`, so that the cross-study verdict can read the file as it reads
gpu3_compare.json and gpu6_compare.json).

    python docs/eval/probing/gpu7/compare7.py --results R7/results.json \
        --baseline docs/eval/probing/gpu2/gpu2_compare.json --out docs/eval/probing/gpu7

writes gpu7_compare.md and gpu7_compare.json (refuses to replace them). Probing = SAEBench
probe, mean over the datasets and k (`compare.row_stats`), per seed; *apart* =
`eval.verdict.apart` (margin `eval.verdict.MARGIN` = 0.01 for probing, 0 for CE-loss recovered
through the tied rows' own decoder, a W + b_dec). The pair and row statistics and the
controls rule are `compare`'s (`pair_words`, `row_stats_ce` read through the own decoder,
`controls`), shared with gpu6/compare6.py and gpu8/compare8.py.
"""

from __future__ import annotations

import argparse
import sys

COMBINATION = "tied-topk-im-3.0-wr"
"""The new row: the hybrid with lambda_wr (gpu7/plan.json)."""
BASE = "tied-topk-im-3.0"
"""The hybrid without wr (rule a; its numbers also read against gpu2 by check_repro.py)."""
TIED = "tied-topk"
"""Tied TopK without the LSE + InfoMax terms (rule b); its untrained twin is both hybrids'."""
READOUT = "own decoder"
FILES = ("gpu7_compare.md", "gpu7_compare.json")
SYNTHETIC = {"vs_base": "level"}
"""docs/eval/synthetic/cpu-wr-hybrid.md, rule 3 (`mini` recipe, 3 seeds, MCC, margin 0.01):
tied-topk-im-3.0-wr level with tied-topk-im-3.0 (0.424 against 0.424)."""
WORDS = {
    "vs_base": {"above": "wr lifts the hybrid", "level": "wr does not move the hybrid",
                "below": "wr lowers the hybrid"},
    "vs_tied": {"above": "above tied-topk", "level": "level with tied-topk",
                "below": "below tied-topk"},
}  # fmt: skip
"""The fixed sentences of gpu7_plan.md's rules (a) and (b), by the probing word."""


def words(v: dict) -> list[str]:
    """The fixed sentences for the combination at one K (v: its entry)."""
    out = [WORDS[rule][v[rule]["probing"]] for rule in ("vs_base", "vs_tied") if v.get(rule)]
    out.append("beats its controls" if v["beats_controls"] else "does not beat its controls")
    if v.get("vs_base"):
        same = v["vs_base"]["probing"] == SYNTHETIC["vs_base"]
        out.append("as on the synthetic model" if same else "unlike the synthetic model (there: "
                   f"{SYNTHETIC['vs_base']} with the hybrid)")  # fmt: skip
    return out


def wr_hybrid(res: dict) -> dict:
    """Per K (str): the combination's rules (a)-(d), the hybrid's own controls (rule c for
    BASE, for the record) and the hybrid against tied-topk (the reference for rule b)."""
    from implicit_em.eval.probing_study.compare import controls, entry, pair_words, row_stats_ce
    from implicit_em.eval.probing_study.plan import label_of
    from implicit_em.eval.probing_study.report import summarize

    summ = summarize(res)
    twin_of = {label_of(r): r.get("twin_of", label_of(r)) for r in res["plan"]["rows"]}

    def stats(rid: str) -> dict | None:
        return row_stats_ce(summ, res, rid, READOUT)

    out: dict = {}
    for K in res["plan"]["Ks"]:
        e: dict = {}
        base, tied = stats(f"{BASE}-K{K}"), stats(f"{TIED}-K{K}")
        if base is not None and tied is not None:
            e["hybrid vs tied-topk"] = pair_words(base, tied)
        for row in (COMBINATION, BASE):
            st = stats(f"{row}-K{K}")
            if st is None:
                e[row] = {"measured": False}
                continue
            twin = stats(f"{twin_of.get(row, row)}-K{K} (untrained)")
            rnd = stats(f"random dirs @ L0 of {row}-K{K}")
            v = {**entry(st), **controls(st, twin, rnd)}
            if row == COMBINATION:
                if base is not None:
                    v["vs_base"] = pair_words(st, base)
                if tied is not None:
                    v["vs_tied"] = pair_words(st, tied)
                v["words"] = words(v)
            e[row] = v
        out[str(K)] = e
    return out


def compare7(res: dict, baseline: dict) -> tuple[str, dict]:
    """(markdown, numbers): compare3's rows and rules, each K entry with "wr_hybrid"."""
    from implicit_em.eval.probing_study.compare import compare3, pair_cell, rule_row, unmeasured_row

    md3, nums = compare3(res, baseline)
    comb = wr_hybrid(res)
    lines = ["# GPU run 7: wr in combination with the hybrid (gpu7_plan.md's rules, fixed "
             "before the run)", "", "## Rules (a)-(d) per K", ""]  # fmt: skip
    for K, e in comb.items():
        nums[f"K{K}"]["wr_hybrid"] = e
        lines += [f"### K = {K}", "",
                  "| row | seeds | L0 | dead | probing [seeds] | (a) vs tied-topk-im-3.0 | "
                  "(b) vs tied-topk | (c) vs twin | (c) vs random @ L0 | margin over best "
                  "control | CE-loss rec. [seeds] | CE (a) / (b) | words |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for row in (COMBINATION, BASE):
            v = e[row]
            if not v["measured"]:
                lines.append(unmeasured_row(row, 13))
                continue
            lines.append(rule_row(row, v, [v.get("vs_base"), v.get("vs_tied")]))
        ht = e.get("hybrid vs tied-topk")
        if ht:
            lines += ["", f"tied-topk-im-3.0 against tied-topk (the reference for rule b, this "
                      f"run): probing {pair_cell(ht)}, CE-loss recovered {pair_cell(ht, 'ce')}"]  # fmt: skip
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
    return compare_to_baseline(a.results, a.baseline, a.out, FILES, compare7)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
