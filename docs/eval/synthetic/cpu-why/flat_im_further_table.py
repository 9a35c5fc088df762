"""The rules of docs/eval/synthetic/cpu-why/flat-im-further-PLAN.md (fixed before the run)
on cpu-why/flat-further-im0.01-6000/ and cpu-why/flat-further-im0.001-3000/, against
cpu-why/flat-longer-*/ (flat-im-longer-PLAN.md's runs).

Run from the repository root: python docs/eval/synthetic/cpu-why/flat_im_further_table.py
Prints each rule's outcome, a markdown table and the MCC trajectories; writes
cpu-why/flat-im-further.json.
"""

import json

from why_rows import ROOT, controls_max, mcc, print_table, print_trajectories, rows

from implicit_em.eval.verdict import MARGIN, apart

SEEDS = [0, 1, 2]
HALF = 2048 // 2  # more dead units than this is "collapsing"
COLUMNS = ["MCC", "L0", "F1", "dead", "features covered", "untrained", "random at L0"]


def main() -> None:
    im6 = rows("flat-further-im0.01-6000", "encoder-im0.01", SEEDS)
    im3 = rows("flat-longer-encoder-im0.01", "encoder-im0.01", SEEDS)
    enc3 = rows("flat-longer-encoder", "encoder", SEEDS)
    th3 = rows("flat-further-im0.001-3000", "encoder-im0.001", SEEDS)
    a1 = apart(mcc(im6), mcc(im3), MARGIN)
    word1 = {"above": "it keeps rising", "level": "it has levelled off",
             "below": "it falls with more steps"}[a1]  # fmt: skip
    a2 = apart(mcc(th3), mcc(im3), MARGIN)
    word2 = {"above": "weaker still is better", "level": "no further gain",
             "below": "too weak"}[a2]  # fmt: skip
    dead = [r["trained"]["dead_latents"] for r in th3]
    if min(dead) > HALF:
        word2 += " (collapsing)"
    lines = [f"Rule 1: encoder-im0.01 at 6,000 steps {min(mcc(im6)):.4f}-{max(mcc(im6)):.4f} "
             f"against 3,000 steps {min(mcc(im3)):.4f}-{max(mcc(im3)):.4f}: {a1}, {word1}.",
             f"Rule 2: encoder-im0.001 at 3,000 steps {min(mcc(th3)):.4f}-{max(mcc(th3)):.4f} "
             f"against encoder-im0.01 at 3,000 steps: {a2}, {word2}."]  # fmt: skip
    print("\n".join(f"- {x}" for x in lines))
    named = [("InfoMax x 0.01, 6,000 steps", im6), ("InfoMax x 0.01, 3,000 steps", im3),
             ("InfoMax x 0.001, 3,000 steps", th3), ("default weights, 3,000 steps", enc3)]
    print_table("run", named, COLUMNS)
    print_trajectories("MCC every 250 steps (seed 0):", named)
    out = {"1_longer": {"apart": a1, "reading": word1, "mcc6000": mcc(im6)},
           "2_thousandth": {"apart": a2, "reading": word2, "mcc": mcc(th3), "dead": dead},
           "controls_max": controls_max(im6 + th3), "lines": lines}  # fmt: skip
    print(f"\nbest control seed (untrained, random@L0): {out['controls_max']:.4f}")
    (ROOT / "flat-im-further.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
