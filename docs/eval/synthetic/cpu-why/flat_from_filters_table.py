"""The rules of docs/eval/synthetic/cpu-why/flat-from-filters-PLAN.md (fixed before the run)
on cpu-why/flat-from-filters-step0/ and cpu-why/flat-from-filters/ (results.json).

Run from the repository root: python docs/eval/synthetic/cpu-why/flat_from_filters_table.py
Prints each rule's outcome, a markdown table and the MCC trajectories; writes
cpu-why/flat-from-filters.json.
"""

import json

from why_rows import ROOT, controls_max, mcc, print_table, print_trajectories, rows

from implicit_em.eval.verdict import MARGIN, apart

FF = "encoder-from-filters-rate"


def main() -> None:
    start = mcc(rows("flat-from-filters-step0", FF, [0]))[0]
    ff, enc = rows("flat-from-filters", FF, [0, 1, 2]), rows("flat-from-filters", "encoder", [0, 1, 2])
    end, base = mcc(ff), mcc(enc)
    out, lines = {"start": start}, []
    keep = ("on near-mixture data the objective keeps the ideal filters"
            if min(end) >= start - MARGIN else
            "it walks away on near-mixture data too" if max(end) < start - MARGIN else "mixed")  # fmt: skip
    at250 = [r["history"][0]["mcc"] for r in ff]
    out["1_keep"] = {"step250": at250, "step1500": end, "reading": keep}
    lines.append(f"Rule 1: start {start:.4f}, step 250 {min(at250):.4f}-{max(at250):.4f}, "
                 f"step 1,500 {min(end):.4f}-{max(end):.4f}: {keep}.")  # fmt: skip
    a2 = apart(end, base, MARGIN)
    mean_ff, mean_enc = sum(end) / 3, sum(base) / 3
    kept = (mean_ff - mean_enc) / (start - mean_enc)
    word2 = {"level": "it ends where random init ends",
             "above": f"part of the start persists ({kept:.0%} of the gap kept)",
             "below": "it ends below random init"}[a2]  # fmt: skip
    out["2_end"] = {"apart": a2, "random_init": base, "gap_kept": kept, "reading": word2}
    lines.append(f"Rule 2: against `encoder` from random init {min(base):.4f}-{max(base):.4f}: "
                 f"{a2}, {word2}.")  # fmt: skip
    print("\n".join(f"- {x}" for x in lines))
    print_table("run", [("from the ideal filters, step 1,500", ff), ("random init, step 1,500", enc)],
                ["MCC", "lstsq read-out", "L0", "dead", "features covered", "untrained",
                 "random at L0"])  # fmt: skip
    print_trajectories("MCC every 250 steps (seed 0):", [("from filters", ff),
                                                          ("random init", enc)])  # fmt: skip
    out["controls_max"] = controls_max(ff + enc)
    print(f"\nbest control seed (untrained, random@L0): {out['controls_max']:.4f}")
    out["lines"] = lines
    (ROOT / "flat-from-filters.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
