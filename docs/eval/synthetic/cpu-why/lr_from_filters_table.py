"""The rules of docs/eval/synthetic/cpu-why/lr-from-filters-PLAN.md (fixed before the run) on
cpu-why/lr-from-filters-{A,B}/results.json, against the committed rows of why.md section 4
(from-filters-rate-step0: the start; from-filters-rate, from-filters-rate-s12: lr 1e-3).

Run from the repository root: python docs/eval/synthetic/cpu-why/lr_from_filters_table.py
Prints each rule's outcome, a markdown table and the MCC trajectories; writes
cpu-why/lr-from-filters.json.
"""

import json

from why_rows import ROOT, controls_max, mcc, print_trajectories, rows, span

from implicit_em.eval.verdict import MARGIN, apart

SMALL_MOVE = 0.002  # rule 3: "left the filters" means more than this below the start
FF = "encoder-from-filters-rate"


def main() -> None:
    start = json.loads((ROOT / "from-filters-rate-step0" / "results.json").read_text())
    start = start["rows"][0]["trained"]["mcc"]
    seeds = [0, 1, 2]
    a_ff, a_enc = rows("lr-from-filters-A", FF, seeds), rows("lr-from-filters-A", "encoder", seeds)
    b_ff = rows("lr-from-filters-B", FF, seeds)
    at_1e3 = [r["trained"]["mcc"] for g in ("from-filters-rate", "from-filters-rate-s12")
              for r in json.loads((ROOT / g / "results.json").read_text())["rows"]
              if r["variant"] == FF]  # fmt: skip
    out, lines = {"start": start}, []

    end = mcc(a_ff)
    keep = ("a smaller rate keeps the ideal filters: the walk away at 1e-3 was a large-step "
            "effect") if min(end) >= start - MARGIN else (
        "it walks away at a tenth of the rate too" if max(end) < start - MARGIN else "mixed")  # fmt: skip
    out["1_keep"] = {"step6000": end, "reading": keep}
    lines.append(f"Rule 1: start {start:.4f}, lr 1e-4 step 6,000 {min(end):.4f}-{max(end):.4f}: "
                 f"{keep}.")  # fmt: skip
    a2 = apart(end, mcc(a_enc), MARGIN)
    word2 = {"level": "it ends where random init ends at this rate",
             "above": "the start persists at this rate",
             "below": "it ends below random init at this rate"}[a2]  # fmt: skip
    a2b = apart(end, at_1e3, MARGIN)
    out["2_end"] = {"apart": a2, "random_init": mcc(a_enc), "reading": word2,
                    "apart_vs_lr_1e-3": a2b, "lr_1e-3": at_1e3}  # fmt: skip
    lines.append(f"Rule 2: against `encoder` from random init at 1e-4 {min(mcc(a_enc)):.4f}-"
                 f"{max(mcc(a_enc)):.4f}: {a2}, {word2}; against the 1e-3 endpoint "
                 f"{min(at_1e3):.4f}-{max(at_1e3):.4f}: {a2b}.")  # fmt: skip

    small = mcc(b_ff)
    left = ("the flow leaves the filters from the first steps"
            if max(small) < start - SMALL_MOVE else
            "at the smallest steps it stays" if min(small) >= start else "mixed")  # fmt: skip
    trajectories = [[h["mcc"] for h in r["history"]] for r in b_ff]
    monotone = [all(b <= a for a, b in zip([start] + t, t, strict=False)) for t in trajectories]
    out["3_local"] = {"step600": small, "reading": left, "trajectories": trajectories,
                      "monotone_falling": monotone}  # fmt: skip
    lines.append(f"Rule 3: lr 1e-5 step 600 {min(small):.4f}-{max(small):.4f} against the start "
                 f"{start:.4f}: {left}; falling at every record: {monotone}.")  # fmt: skip

    print("\n".join(f"- {x}" for x in lines))
    print("\n| run | seeds | MCC at the end | L0 at the end | dead | untrained | random at L0 |")
    print("|---|---|---|---|---|---|---|")
    for name, rs in (("from the ideal filters, lr 1e-4, 6,000 steps", a_ff),
                     ("random init, lr 1e-4, 6,000 steps", a_enc),
                     ("from the ideal filters, lr 1e-5, 600 steps", b_ff)):  # fmt: skip
        t = [r["trained"] for r in rs]
        print(f"| {name} | 3 | {span(mcc(rs))} | {span([x['l0'] for x in t], '.1f')} | "
              f"{min(x['dead_latents'] for x in t)}-{max(x['dead_latents'] for x in t)} | "
              f"{span([r['untrained']['mcc'] for r in rs])} | "
              f"{span([x['random_at_l0']['mcc'] for x in t])} |")  # fmt: skip
    print_trajectories("MCC at each history record (seed 0):", [
        ("A from filters (every 500)", a_ff), ("A random init (every 500)", a_enc),
        ("B from filters (every 50)", b_ff)])  # fmt: skip
    out["controls_max"] = controls_max(a_ff + a_enc + b_ff)
    print(f"\nbest control seed (untrained, random@L0): {out['controls_max']:.4f}")
    out["lines"] = lines
    (ROOT / "lr-from-filters.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
