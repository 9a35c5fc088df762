"""The rules of docs/eval/synthetic/cpu-why/wr-from-filters-PLAN.md (fixed before the run) on
cpu-why/wr-from-filters/results.json, against the committed rows of why.md (diag: `encoder`;
from-filters-rate and from-filters-rate-s12: `encoder-from-filters-rate`).

Run from the repository root: python docs/eval/synthetic/cpu-why/wr_from_filters_table.py
Prints each rule's outcome and the MCC trajectories; writes cpu-why/wr-from-filters.json.
"""

import json

from why_rows import ROOT, controls_max, mcc, print_trajectories, rows

from implicit_em.eval.verdict import MARGIN, apart

START = 0.456  # the ideal filters' MCC at step 0 (why.md section 4; the same for every seed)


def main() -> None:
    ff = rows("wr-from-filters", "encoder-wr-from-filters-rate")
    wr = rows("wr-from-filters", "encoder-wr")
    enc = rows("diag", "encoder")
    plain_ff = rows("from-filters-rate", "encoder-from-filters-rate") + rows(
        "from-filters-rate-s12", "encoder-from-filters-rate")  # fmt: skip
    for name, rs in (("wr from filters", ff), ("wr", wr), ("encoder", enc),
                     ("encoder from filters", plain_ff)):  # fmt: skip
        if sorted(r["seed"] for r in rs) != [0, 1, 2]:
            raise SystemExit(f"{name}: seeds {sorted(r['seed'] for r in rs)}, not 0-2")
    out, lines = {}, []
    end = mcc(ff)
    keep = "wr keeps the ideal filters" if min(end) >= START - MARGIN else (
        "wr walks away from them too" if max(end) < START - MARGIN else "mixed")  # fmt: skip
    at50 = [r["history"][0]["mcc"] for r in ff]
    out["1_keep"] = {"start": START, "step50": at50, "step600": end, "reading": keep}
    lines.append(f"Rule 1: step 0 {START}, step 50 {min(at50):.4f}-{max(at50):.4f}, step 600 "
                 f"{min(end):.4f}-{max(end):.4f}: {keep}.")  # fmt: skip
    a2 = apart(end, mcc(wr), MARGIN)
    word2 = {"level": "it ends where random init ends", "above": "the start persists under wr",
             "below": "it ends below random init"}[a2]  # fmt: skip
    out["2_end"] = {"apart": a2, "wr_random_init": mcc(wr), "reading": word2}
    lines.append(f"Rule 2: against encoder-wr from random init {min(mcc(wr)):.4f}-"
                 f"{max(mcc(wr)):.4f}: {a2}, {word2}.")  # fmt: skip
    a3 = apart(mcc(wr), mcc(enc), MARGIN)
    word3 = {"above": "wr's 16k lift appears on mini", "level": "no lift on mini",
             "below": "wr costs on mini"}[a3]  # fmt: skip
    out["3_lift"] = {"apart": a3, "encoder": mcc(enc), "reading": word3}
    lines.append(f"Rule 3: encoder-wr {min(mcc(wr)):.4f}-{max(mcc(wr)):.4f} against encoder "
                 f"{min(mcc(enc)):.4f}-{max(mcc(enc)):.4f}: {a3}, {word3}.")  # fmt: skip
    a4 = apart(end, mcc(plain_ff), MARGIN)
    out["4_against_plain"] = {"apart": a4, "encoder_from_filters": mcc(plain_ff)}
    lines.append(f"Rule 4: against encoder-from-filters-rate at step 600 {min(mcc(plain_ff)):.4f}-"
                 f"{max(mcc(plain_ff)):.4f}: {a4}.")  # fmt: skip
    print("\n".join(f"- {x}" for x in lines))
    print_trajectories("MCC every 50 steps (seed 0):", [
        ("encoder-wr-from-filters-rate", ff), ("encoder-wr", wr),
        ("encoder-from-filters-rate", plain_ff)])  # fmt: skip
    out["controls_max"] = controls_max(ff + wr)
    print(f"\nbest control seed (untrained, random@L0) of the new rows: {out['controls_max']:.4f}")
    out["lines"] = lines
    (ROOT / "wr-from-filters.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
