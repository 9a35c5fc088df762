"""The verdict rules of GPU run 8 (docs/eval/probing/gpu8_plan.md, "Rules"), as code fixed before
the run: the encoder with a hundredth of the InfoMax weights (encoder-im0.01) against the
reference encoder (a), against encoder-wr (b), against its controls (c) and against TopK at its
own L0 (d), per K, with the synthetic model's pattern (e); and every row of the run by gpu3's
rules (`compare.compare3`, so that the cross-study verdict can read the file as it reads
gpu3_compare.json, gpu6_compare.json and gpu7_compare.json).

    python docs/eval/probing/gpu8/compare8.py --results R8/results.json \
        --baseline docs/eval/probing/gpu2/gpu2_compare.json --out docs/eval/probing/gpu8

writes gpu8_compare.md and gpu8_compare.json (refuses to replace them). Probing = SAEBench
probe, mean over the datasets and k (`compare.row_stats`), per seed; *apart* =
`eval.verdict.apart` (margin `eval.verdict.MARGIN` = 0.01 for probing, 0 for CE-loss
recovered). CE-loss recovered is read through post-hoc least squares for the encoder rows
(gpu3's headline) and through the own decoder for TopK. The pair and row statistics and the
controls rule are `compare`'s (`pair_words`, `row_stats_ce`, `controls`), shared with
gpu6/compare6.py and gpu7/compare7.py.
"""

from __future__ import annotations

import argparse
import sys

ROW = "encoder-im0.01"
"""The new row: the encoder with lambda_var = lambda_tc = 0.01 (gpu8/plan.json; the registry
row `eval.options.VARIANTS["encoder-im0.01"]`)."""
REFERENCE = "encoder"
WR = "encoder-wr"
"""The best decoder-free row of gpu3 / gpu6 at this budget (rule b)."""
SAE_AT_L0 = "topk-at-im0.01"
"""TopK trained at k = ROW's held-out L0 in the same block (`"k_of"`, rule d)."""
TOPK = "topk"
"""TopK at the reference encoder's L0 (the CE reference of the target; beside rule d)."""
LSQ, OWN = "post-hoc least squares", "own decoder"
FILES = ("gpu8_compare.md", "gpu8_compare.json")
SYNTHETIC = {"vs_reference": "above", "vs_wr": "above", "beats_controls": True}
"""docs/eval/synthetic/gpu16k-im001.md, rules 3-5 (16k recipe, 3 seeds, MCC, margin 0.01):
encoder-im0.01 above the encoder (0.400 against 0.210), above its controls (0.148) and above
encoder-wr (0.311-0.313)."""
SYNTHETIC_SAE = "below (jumprelu-0.003, MCC 0.594 at L0 10.7, one seed)"
"""The synthetic reading beside rule (d): the nearest SAE row at its own L0 (gpu16k-im001.md,
rule 5); reported, not part of the pattern."""
WORDS = {
    "vs_reference": {"above": "the InfoMax weights at 1/100 lift the encoder",
                     "level": "the InfoMax weights at 1/100 do not move the encoder",
                     "below": "the InfoMax weights at 1/100 lower the encoder"},
    "vs_wr": {"above": "above encoder-wr", "level": "level with encoder-wr",
              "below": "below encoder-wr"},
    "vs_sae": {"above": "above TopK at its own L0", "level": "level with TopK at its own L0",
               "below": "below TopK at its own L0"},
}  # fmt: skip
"""The fixed sentences of gpu8_plan.md's rules (a), (b) and (d), by the probing word."""


def words(v: dict) -> list[str]:
    """The fixed sentences for ROW at one K (v: its entry); the last one is rule (e)'s."""
    out = [WORDS[rule][v[rule]["probing"]] for rule in ("vs_reference", "vs_wr", "vs_sae")
           if v.get(rule)]  # fmt: skip
    out.append("beats its controls" if v["beats_controls"] else "does not beat its controls")
    here = {"vs_reference": (v.get("vs_reference") or {}).get("probing"),
            "vs_wr": (v.get("vs_wr") or {}).get("probing"),
            "beats_controls": v["beats_controls"]}  # fmt: skip
    differ = [f"{rule}: {here[rule]} (there: {want})" for rule, want in SYNTHETIC.items()
              if here[rule] != want]  # fmt: skip
    out.append("as on the synthetic model" if not differ
               else "unlike the synthetic model (" + "; ".join(differ) + ")")  # fmt: skip
    return out


def im001(res: dict) -> dict:
    """Per K (str): ROW's rules (a)-(e), its L0 against the reference's, wr against the
    encoder (the reference for "lifts", as gpu6) and TopK at ROW's L0 against its own controls
    and against TopK at the encoder's L0 (for the record)."""
    from implicit_em.eval.probing_study.compare import controls, entry, pair_words, row_stats_ce
    from implicit_em.eval.probing_study.plan import label_of
    from implicit_em.eval.probing_study.report import summarize
    from implicit_em.eval.verdict import matched_l0

    summ = summarize(res)
    twin_of = {label_of(r): r.get("twin_of", label_of(r)) for r in res["plan"]["rows"]}

    def stats(rid: str, readout: str = LSQ) -> dict | None:
        return row_stats_ce(summ, res, rid, readout)

    def with_controls(row: str, K: int, readout: str) -> dict | None:
        st = stats(f"{row}-K{K}", readout)
        if st is None:
            return None
        twin = stats(f"{twin_of.get(row, row)}-K{K} (untrained)", readout)
        rnd = stats(f"random dirs @ L0 of {row}-K{K}")
        return {**entry(st), **controls(st, twin, rnd)}

    out: dict = {}
    for K in res["plan"]["Ks"]:
        e: dict = {}
        ref, wr = stats(f"{REFERENCE}-K{K}"), stats(f"{WR}-K{K}")
        sae, topk = stats(f"{SAE_AT_L0}-K{K}", OWN), stats(f"{TOPK}-K{K}", OWN)
        if wr is not None and ref is not None:
            e["encoder-wr vs encoder"] = pair_words(wr, ref)
        v = with_controls(ROW, K, LSQ)
        if v is None:
            e[ROW] = {"measured": False}
        else:
            st = stats(f"{ROW}-K{K}")
            if ref is not None:
                v["vs_reference"] = pair_words(st, ref)
                v["l0_ratio"] = st["l0"] / ref["l0"]
                v["l0_matched_to_reference"] = matched_l0(st["l0"], ref["l0"])
            if wr is not None:
                v["vs_wr"] = pair_words(st, wr)
            if sae is not None:
                v["vs_sae"] = pair_words(st, sae)
                v["l0_matched_to_sae"] = matched_l0(st["l0"], sae["l0"])
            if topk is not None:
                v["vs_topk_at_reference_l0"] = pair_words(st, topk)
                v["l0_matched_to_topk"] = matched_l0(st["l0"], topk["l0"])
            v["words"] = words(v)
            v["synthetic_sae"] = SYNTHETIC_SAE
            e[ROW] = v
        s = with_controls(SAE_AT_L0, K, OWN)
        if s is not None and topk is not None:
            s["vs_topk"] = pair_words(stats(f"{SAE_AT_L0}-K{K}", OWN), topk)
        e[SAE_AT_L0] = s or {"measured": False}
        out[str(K)] = e
    return out


def compare8(res: dict, baseline: dict) -> tuple[str, dict]:
    """(markdown, numbers): compare3's rows and rules, each K entry with "im001"."""
    from implicit_em.eval.probing_study.compare import compare3, pair_cell, rule_row, unmeasured_row

    md3, nums = compare3(res, baseline)
    rules = im001(res)
    lines = ["# GPU run 8: the encoder with a hundredth of the InfoMax weights (gpu8_plan.md's "
             "rules, fixed before the run)", "", "## Rules (a)-(e) per K", ""]  # fmt: skip
    for K, e in rules.items():
        nums[f"K{K}"]["im001"] = e
        lines += [f"### K = {K}", "",
                  "| row | seeds | L0 | dead | probing [seeds] | (a) vs encoder | (b) vs "
                  "encoder-wr | (d) vs topk-at-im0.01 | (c) vs twin | (c) vs random @ L0 | "
                  "margin over best control | CE-loss rec. [seeds] | CE (a) / (b) / (d) | words |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for row in (ROW, SAE_AT_L0):
            v = e[row]
            if not v["measured"]:
                lines.append(unmeasured_row(row, 14))
                continue
            pairs = [v.get("vs_reference"), v.get("vs_wr"), v.get("vs_sae")]
            lines.append(rule_row(row, v, pairs))
        v = e[ROW]
        if v.get("measured") and "l0_ratio" in v:
            lines += ["", f"{ROW}'s L0 is {v['l0_ratio']:.2f}x the encoder's (matched within 25 %: "
                      f"{v['l0_matched_to_reference']}); matched to topk-at-im0.01's: "
                      f"{v.get('l0_matched_to_sae')}; to topk's (the encoder's L0): "
                      f"{v.get('l0_matched_to_topk')}. Against topk at the encoder's L0 (beside): "
                      f"probing {pair_cell(v.get('vs_topk_at_reference_l0'))}. The synthetic model "
                      f"at its own L0: {SYNTHETIC_SAE}."]  # fmt: skip
        wr = e.get("encoder-wr vs encoder")
        if wr:
            lines += ["", f"encoder-wr against encoder (this run; gpu3: level at 4096, above at "
                      f"16384): probing {pair_cell(wr)}, CE-loss recovered {pair_cell(wr, 'ce')}"]  # fmt: skip
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
    return compare_to_baseline(a.results, a.baseline, a.out, FILES, compare8)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
