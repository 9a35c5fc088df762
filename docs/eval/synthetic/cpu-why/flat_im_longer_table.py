"""The rules of docs/eval/synthetic/cpu-why/flat-im-longer-PLAN.md (fixed before the run) on
cpu-why/flat-longer-encoder-im0.01/ and cpu-why/flat-longer-encoder/ (results.json).

Run from the repository root: python docs/eval/synthetic/cpu-why/flat_im_longer_table.py
Prints each rule's outcome, a markdown table and the MCC trajectories; writes
cpu-why/flat-im-longer.json.
"""

import json

from why_rows import ROOT, controls_max, mcc, print_table, print_trajectories, rows

from implicit_em.eval.verdict import MARGIN, apart

SEEDS = [0, 1, 2]
COLUMNS = ["MCC", "L0", "F1", "dead", "features covered", "untrained", "random at L0"]
LIFT_1500 = 0.012  # section 8: encoder-im0.01 minus encoder at 1,500 steps, in the mean


def main() -> None:
    im = rows("flat-longer-encoder-im0.01", "encoder-im0.01", SEEDS)
    enc = rows("flat-longer-encoder", "encoder", SEEDS)
    a1 = apart(mcc(im), mcc(enc), MARGIN)
    lift = sum(mcc(im)) / 3 - sum(mcc(enc)) / 3
    word1 = {"above": f"the lift holds at twice the steps (+{lift:.3f})",
             "level": "the lift does not hold", "below": "below the default weights"}[a1]  # fmt: skip
    word2 = "it grows" if lift > LIFT_1500 + MARGIN else "it does not grow"
    lines = [f"Rule 1: encoder-im0.01 {min(mcc(im)):.4f}-{max(mcc(im)):.4f} against encoder "
             f"{min(mcc(enc)):.4f}-{max(mcc(enc)):.4f} at 3,000 steps: {a1}, {word1}.",
             f"Rule 2: mean lift {lift:+.4f} against {LIFT_1500:+.3f} at 1,500 steps: {word2}."]  # fmt: skip
    print("\n".join(f"- {x}" for x in lines))
    print_table("run (3,000 steps)", [("InfoMax x 0.01, random init", im),
                                      ("default weights, random init", enc)], COLUMNS)  # fmt: skip
    print_trajectories("MCC every 250 steps (seed 0):", [("x 0.01", im), ("default", enc)])
    out = {"1_lift": {"apart": a1, "lift": lift, "reading": word1}, "2_grows": word2,
           "im": mcc(im), "encoder": mcc(enc), "controls_max": controls_max(im + enc),
           "lines": lines}  # fmt: skip
    print(f"\nbest control seed (untrained, random@L0): {out['controls_max']:.4f}")
    (ROOT / "flat-im-longer.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
