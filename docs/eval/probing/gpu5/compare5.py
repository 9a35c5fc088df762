"""The verdict rules of GPU run 5 (docs/eval/probing/gpu5_plan.md, "Verdict rules"), as code
fixed before the run: the rows of run 5 (two passes over 7.23 M tokens) and the same rows of
gpu4 (one pass over 2 M tokens), each read by the same words, and every word that differs.

    python docs/eval/probing/gpu5/compare5.py --new R5_K16384/results.json R5_K4096/results.json \
        --old docs/eval/probing/gpu4/results_r4.json --out docs/eval/probing/gpu5

writes gpu5_compare.md and gpu5_compare.json (refuses to replace them). Probing = SAEBench
probe, mean over the datasets and k (`compare.row_stats`), per seed; *apart* =
`eval.verdict.apart` (margin `eval.verdict.MARGIN` = 0.01 for probing, 0 for CE-loss recovered
and dead-latent counts).
"""

from __future__ import annotations

import argparse
import sys

ROWS = ("encoder", "topk", "matryoshka", "encoder-wr", "encoder-wr-topk", "encoder-topk")
"""The rows of each block of run 5 (gpu5/plan_K*.json), all of them in gpu4 too."""
SAES = ("topk", "matryoshka")
ENCODERS = ("encoder", "encoder-wr", "encoder-wr-topk", "encoder-topk")
PAIRS = (("encoder", "topk"), ("encoder", "matryoshka"), ("encoder-wr-topk", "topk"),
         ("encoder-wr-topk", "matryoshka"), ("encoder-topk", "topk"), ("encoder-wr", "topk"))  # fmt: skip
"""Decoder-free row against SAE row: probing (margin 0.01) and CE-loss recovered (margin 0)."""


def read(res: dict) -> dict:
    """Per K (str) and row: L0, dead per seed, probing (mean, seed range), CE-loss recovered
    (least squares for the encoder rows, own decoder for the SAEs), its controls (untrained
    twin per the plan's twin_of, random directions at its L0), the raw-residual ceiling, and
    the words of gpu5_plan.md's rules R1-R4."""
    from implicit_em.eval.probing_study.compare import row_stats, w3_word
    from implicit_em.eval.probing_study.plan import label_of
    from implicit_em.eval.probing_study.report import summarize
    from implicit_em.eval.verdict import MARGIN, RAW_ROW, apart, matched_l0

    summ = summarize(res)
    twin_of = {label_of(r): r.get("twin_of", label_of(r)) for r in res["plan"]["rows"]}
    out: dict = {}
    raw = row_stats(summ, res, RAW_ROW, None)  # R2's "ceiling": the k-sparse raw row
    for K in res["plan"]["Ks"]:
        rows: dict = {}

        def stats(rid: str, readout: str | None) -> dict | None:
            st = row_stats(summ, res, rid, readout)
            if st is not None and readout:
                st["ce_seeds"] = (
                    summ["downstream"].get(f"{rid} | {readout}", {}).get("ce_loss_recovered", [])
                )
            return st

        for lab in ROWS:
            ro = "own decoder" if lab in SAES else "post-hoc least squares"
            st = stats(f"{lab}-K{K}", ro)
            if st is None or lab not in twin_of:
                continue
            twin = stats(f"{twin_of[lab]}-K{K} (untrained)", ro)
            rnd = stats(f"random dirs @ L0 of {lab}-K{K}", "post-hoc least squares")
            r = {"l0": st["l0"], "dead": st["dead"], "probing": st["mean_k"],
                 "probing_range": st["mean_k_range"], "ce": st.get("ce"),
                 "ce_range": st.get("ce_range")}  # fmt: skip
            best_control = None
            for name, c in (("twin", twin), ("random", rnd)):
                if c is None:
                    r[f"vs_{name}"] = "not measured"
                    continue
                r[f"{name}_probing"], r[f"{name}_range"] = c["mean_k"], c["mean_k_range"]
                r[f"{name}_ce"] = c.get("ce")
                r[f"vs_{name}"] = apart(st["mean_k_range"], c["mean_k_range"], MARGIN)
                best_control = max(best_control or -1.0, c["mean_k_range"][1])
            # R1: beats its controls (both above); the margin over the best control seed
            r["beats_controls"] = r.get("vs_twin") == "above" and r.get("vs_random") == "above"
            if best_control is not None:
                r["margin_over_controls"] = st["mean_k_range"][0] - best_control
            if raw is not None:  # R2: against the raw residual, probed the same way
                r["minus_ceiling"] = st["mean_k"] - raw["mean_k"]
                r["above_ceiling"] = st["mean_k"] > raw["mean_k"]
            rows[lab] = r
        pairs: dict = {}
        for a, b in PAIRS:  # R3: decoder-free against SAE, like for like within the run
            if a in rows and b in rows:
                pairs[f"{a} vs {b}"] = {
                    "probing": apart(rows[a]["probing_range"], rows[b]["probing_range"], MARGIN),
                    "ce": apart(rows[a]["ce_range"], rows[b]["ce_range"], 0.0)
                    if rows[a]["ce_range"] and rows[b]["ce_range"] else "not measured",
                }  # fmt: skip
        dead: dict = {}
        if "encoder" in rows:  # R3: the dead-latent win (gpu4_plan.md C2)
            enc0 = all(d == 0 for d in rows["encoder"]["dead"])
            for f in SAES:
                if f in rows:
                    fd = rows[f]["dead"]
                    dead[f"encoder vs {f}"] = (
                        "win" if enc0 and all(d > 0 for d in fd)
                        else "no win (the encoder has dead latents)" if not enc0
                        else "no win (the SAE has 0 dead in some seed)"
                    )  # fmt: skip
        w3 = "not measured"
        if all(x in rows for x in ("encoder-wr-topk", "encoder", "encoder-topk")):  # R4
            wrk, enc = rows["encoder-wr-topk"], rows["encoder"]
            w3 = w3_word(apart(wrk["probing_range"], enc["probing_range"], MARGIN),
                         apart(wrk["probing_range"], rows["encoder-topk"]["probing_range"], MARGIN),
                         matched_l0(wrk["l0"], enc["l0"]))  # fmt: skip
        out[str(K)] = {"rows": rows, "pairs": pairs, "dead": dead, "w3": w3,
                       "raw_ceiling": raw["mean_k"] if raw else None}  # fmt: skip
    return out


def words(r: dict) -> dict[str, str]:
    """The words of one K's reading, flat: what a change is counted on."""
    w = {f"{lab}: vs {c}": v[f"vs_{c}"] for lab, v in r["rows"].items() for c in ("twin", "random")}
    w |= {
        f"{lab}: above the raw ceiling": str(v.get("above_ceiling")) for lab, v in r["rows"].items()
    }
    w |= {f"{p}: probing": v["probing"] for p, v in r["pairs"].items()}
    w |= {f"{p}: CE-loss recovered": v["ce"] for p, v in r["pairs"].items()}
    w |= {f"dead latents, {p}": v for p, v in r["dead"].items()}
    w["encoder-wr-topk at the reference's L0 (W3)"] = r["w3"]
    return w


def compare5(new: dict, old: dict) -> tuple[str, dict]:
    """Run 5 (`new`, merged results of its K runs) against gpu4 (`old`): numbers and markdown."""
    a, b = read(new), read(old)
    numbers: dict = {"gpu5": a, "gpu4": b, "changes": {}}
    md = ["# GPU run 5 against gpu4: the same rows, 7.2x the training tokens", "",
          "Rules: docs/eval/probing/gpu5_plan.md (fixed before the run); words by "
          "docs/eval/probing/gpu5/compare5.py.", ""]  # fmt: skip
    for K in a:
        wa, wb = words(a[K]), words(b.get(K, {"rows": {}, "pairs": {}, "dead": {}, "w3": "-"}))
        changes = {k: [wb.get(k, "not in gpu4"), v] for k, v in wa.items() if wb.get(k) != v}
        numbers["changes"][K] = changes
        md += [f"## K = {K}", "",
               "| row | L0 (gpu4 → gpu5) | dead per seed | probing [seeds] gpu4 | probing [seeds] gpu5 "
               "| margin over best control gpu4 → gpu5 | minus raw ceiling gpu4 → gpu5 | CE-loss rec. gpu4 → gpu5 |",
               "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for lab in ROWS:
            x, y = b.get(K, {}).get("rows", {}).get(lab), a[K]["rows"].get(lab)
            if y is None:
                continue

            def f(v, fmt=".4f"):
                return "-" if v is None else format(v, fmt)

            def pr(r):
                if r is None:
                    return "-"
                lo, hi = r["probing_range"]
                return f"{r['probing']:.4f} [{lo:.4f}, {hi:.4f}]"

            md.append(
                f"| {lab} | {f(x and x['l0'], '.1f')} → {f(y['l0'], '.1f')} | "
                f"{x and x['dead']} → {y['dead']} | {pr(x)} | {pr(y)} | "
                f"{f(x and x.get('margin_over_controls'), '+.4f')} → "
                f"{f(y.get('margin_over_controls'), '+.4f')} | "
                f"{f(x and x.get('minus_ceiling'), '+.4f')} → {f(y.get('minus_ceiling'), '+.4f')} | "
                f"{f(x and x['ce'])} → {f(y['ce'])} |"
            )
        md += ["", f"Words that changed ({len(changes)} of {len(wa)}):", ""]
        md += [f"- {k}: {o} → {n}" for k, (o, n) in changes.items()] or ["- none"]
        md.append("")
    return "\n".join(md), numbers


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--new", nargs="+", required=True, help="run 5's results.json files")
    p.add_argument("--old", required=True, help="gpu4's results_r4.json")
    p.add_argument("--out", required=True, help="folder for gpu5_compare.md / .json")
    args = p.parse_args(argv)
    from implicit_em.eval.probing_study.commands import load_results, write_compare

    return write_compare(args.out, ("gpu5_compare.md", "gpu5_compare.json"),
                         lambda: compare5(load_results(args.new), load_results([args.old])))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
