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
through the tied rows' own decoder, a W + b_dec). The pair and row statistics are gpu6's
(`gpu6/compare6.py`: `_pair`, `_stats` read through the own decoder).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

COMBINATION = "tied-topk-im-3.0-wr"
"""The new row: the hybrid with lambda_wr (gpu7/plan.json)."""
BASE = "tied-topk-im-3.0"
"""The hybrid without wr (rule a; its numbers also read against gpu2 by check_repro.py)."""
TIED = "tied-topk"
"""Tied TopK without the LSE + InfoMax terms (rule b); its untrained twin is both hybrids'."""
READOUT = "own decoder"
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


def _gpu6():
    """gpu6/compare6.py, loaded from its file (its `_pair` and `_stats`)."""
    path = Path(__file__).resolve().parents[1] / "gpu6" / "compare6.py"
    spec = importlib.util.spec_from_file_location("compare6", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def controls(st: dict, twin: dict | None, rnd: dict | None) -> dict:
    """Rule (c) for one row's statistics: its untrained twin and random directions at its own
    L0, each by apart (0.01); beats its controls = above both; the margin of its worst seed
    over the best control seed."""
    from implicit_em.eval.verdict import MARGIN, apart

    v: dict = {}
    best = None
    for name, c in (("twin", twin), ("random", rnd)):
        if c is None:
            v[f"vs_{name}"] = "not measured"
            continue
        v[f"{name}_probing"], v[f"{name}_range"] = c["mean_k"], c["mean_k_range"]
        v[f"vs_{name}"] = apart(st["mean_k_range"], c["mean_k_range"], MARGIN)
        best = c["mean_k_range"][1] if best is None else max(best, c["mean_k_range"][1])
    v["beats_controls"] = v.get("vs_twin") == "above" and v.get("vs_random") == "above"
    if best is not None:
        v["margin_over_controls"] = st["mean_k_range"][0] - best
    return v


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
    from implicit_em.eval.probing_study.plan import label_of
    from implicit_em.eval.probing_study.report import summarize

    c6 = _gpu6()
    summ = summarize(res)
    twin_of = {label_of(r): r.get("twin_of", label_of(r)) for r in res["plan"]["rows"]}

    def stats(rid: str) -> dict | None:
        return c6._stats(summ, res, rid, READOUT)

    out: dict = {}
    for K in res["plan"]["Ks"]:
        e: dict = {}
        base, tied = stats(f"{BASE}-K{K}"), stats(f"{TIED}-K{K}")
        if base is not None and tied is not None:
            e["hybrid vs tied-topk"] = c6._pair(base, tied)
        for row in (COMBINATION, BASE):
            st = stats(f"{row}-K{K}")
            if st is None:
                e[row] = {"measured": False}
                continue
            twin = stats(f"{twin_of.get(row, row)}-K{K} (untrained)")
            rnd = stats(f"random dirs @ L0 of {row}-K{K}")
            v = {"measured": True, "seeds": st["seeds"], "l0": st["l0"], "dead": st["dead"],
                 "probing": st["mean_k"], "probing_range": st["mean_k_range"],
                 "ce": st.get("ce"), "ce_seeds": st.get("ce_seeds"),
                 **controls(st, twin, rnd)}  # fmt: skip
            if row == COMBINATION:
                if base is not None:
                    v["vs_base"] = c6._pair(st, base)
                if tied is not None:
                    v["vs_tied"] = c6._pair(st, tied)
                v["words"] = words(v)
            e[row] = v
        out[str(K)] = e
    return out


def _cell(p: dict | None, key: str = "probing") -> str:
    if not p:
        return "-"
    delta = p.get(f"{key}_delta")
    return p[key] + (f" ({delta:+.3f})" if delta is not None else "")


def compare7(res: dict, baseline: dict) -> tuple[str, dict]:
    """(markdown, numbers): compare3's rows and rules, each K entry with "wr_hybrid"."""
    from implicit_em.eval.probing_study.compare import compare3

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
                lines.append(f"| {row} | 0 | not measured | | | | | | | | | | |")
                continue
            a, b = v.get("vs_base"), v.get("vs_tied")
            cs = v["ce_seeds"] or []
            ce = f"{v['ce']:.4f} [{min(cs):.4f}, {max(cs):.4f}]" if cs else "-"
            lines.append(
                f"| {row} | {v['seeds']} | {v['l0']:.1f} | {'/'.join(map(str, v['dead']))} | "
                f"{v['probing']:.3f} [{v['probing_range'][0]:.3f}, {v['probing_range'][1]:.3f}] | "
                f"{_cell(a)} | {_cell(b)} | {v['vs_twin']} | {v['vs_random']} | "
                f"{v.get('margin_over_controls', 0.0):+.3f} | {ce} | "
                f"{_cell(a, 'ce') if a else '-'} / {_cell(b, 'ce') if b else '-'} | "
                f"{'; '.join(v.get('words', [])) or '(rule c only)'} |"
            )
        ht = e.get("hybrid vs tied-topk")
        if ht:
            lines += ["", f"tied-topk-im-3.0 against tied-topk (the reference for rule b, this "
                      f"run): probing {_cell(ht)}, CE-loss recovered {_cell(ht, 'ce')}"]  # fmt: skip
        lines.append("")
    lines += ["## Every row by gpu3's rules (`compare.compare3`)", "", md3]
    return "\n".join(lines), nums


def main(argv: list[str]) -> int:
    from implicit_em.atomic import free_paths
    from implicit_em.eval.probing_study.commands import load_results, read_json

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", nargs="+", required=True)
    p.add_argument("--baseline", required=True, help="docs/eval/probing/gpu2/gpu2_compare.json")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    res = load_results(a.results)
    base = read_json(a.baseline, "baseline", "`implicit-em eval-suite probing-study compare`")
    md_path, json_path = free_paths(Path(a.out), ("gpu7_compare.md", "gpu7_compare.json"), False)
    md, nums = compare7(res, base)
    md_path.write_text(md)
    json_path.write_text(json.dumps(nums, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
