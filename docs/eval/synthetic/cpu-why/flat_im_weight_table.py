"""The rules of docs/eval/synthetic/cpu-why/flat-im-weight-PLAN.md (fixed before the run) on
cpu-why/flat-im0.1/ and cpu-why/flat-im0.01/ (results.json), against section 7's committed
rows (flat-from-filters-step0, flat-from-filters).

Run from the repository root: python docs/eval/synthetic/cpu-why/flat_im_weight_table.py
Prints each rule's outcome, a markdown table and the MCC trajectories; writes
cpu-why/flat-im-weight.json.
"""

import json

from why_rows import ROOT, controls_max, mcc, print_table, print_trajectories, rows

from implicit_em.eval.verdict import MARGIN, apart

SEEDS = [0, 1, 2]
HALF = 2048 // 2  # rule 3: more dead units than this is "collapsing"


def label(name: str, rs: list[dict]) -> str:
    """`name`, marked "(collapsing)" when every seed has more than half its units dead."""
    dead = [r["trained"]["dead_latents"] for r in rs]
    return name + (" (collapsing)" if min(dead) > HALF else "")


def main() -> None:
    start = mcc(rows("flat-from-filters-step0", "encoder-from-filters-rate", [0]))[0]
    d_ff = rows("flat-from-filters", "encoder-from-filters-rate", SEEDS)
    d_enc = rows("flat-from-filters", "encoder", SEEDS)
    out, lines, table, named = {"start": start}, [], [], []
    for f in ("0.1", "0.01"):
        ff = rows(f"flat-im{f}", f"encoder-im{f}-from-filters-rate", SEEDS)
        enc = rows(f"flat-im{f}", f"encoder-im{f}", SEEDS)
        end = mcc(ff)
        if min(end) >= start - MARGIN:
            keep, a1 = f"at {f} the objective keeps the components", None
        else:
            a1 = apart(end, mcc(d_ff), MARGIN)
            keep = {"above": "a weaker InfoMax keeps more of the start",
                    "level": "the weight does not matter here",
                    "below": "it keeps less of the start than the default weights"}[a1]  # fmt: skip
        a2 = apart(mcc(enc), mcc(d_enc), MARGIN)
        lift = {"above": "a weaker InfoMax lifts the encoder on near-mixture data",
                "level": "level with the default weights from random init",
                "below": "below the default weights from random init"}[a2]  # fmt: skip
        out[f] = {"1_keep": {"step1500": end, "apart_vs_default": a1, "reading": keep},
                  "2_lift": {"step1500": mcc(enc), "apart": a2, "reading": lift},
                  "l0": {"from_filters": [r["trained"]["l0"] for r in ff],
                         "random_init": [r["trained"]["l0"] for r in enc]},
                  "dead": {"from_filters": [r["trained"]["dead_latents"] for r in ff],
                           "random_init": [r["trained"]["dead_latents"] for r in enc]},
                  "controls_max": controls_max(ff + enc)}  # fmt: skip
        lines.append(f"f = {f}, rule 1: from the filters {min(end):.4f}-{max(end):.4f} (start "
                     f"{start:.4f}, default weights {min(mcc(d_ff)):.4f}-{max(mcc(d_ff)):.4f}): "
                     f"{keep}.")  # fmt: skip
        lines.append(f"f = {f}, rule 2: from random init {min(mcc(enc)):.4f}-{max(mcc(enc)):.4f} "
                     f"against the default weights' {min(mcc(d_enc)):.4f}-{max(mcc(d_enc)):.4f}: "
                     f"{a2}, {lift}.")  # fmt: skip
        table += [(label(f"InfoMax x {f}, from the ideal filters", ff), ff),
                  (label(f"InfoMax x {f}, random init", enc), enc)]  # fmt: skip
        named += [(f"x {f} from filters", ff), (f"x {f} random init", enc)]
    table += [(label("default weights (section 7), from the ideal filters", d_ff), d_ff),
              (label("default weights (section 7), random init", d_enc), d_enc)]  # fmt: skip
    print("\n".join(f"- {x}" for x in lines))
    print_table("run (step 1,500)", table, ["MCC", "L0", "F1", "dead", "features covered",
                                             "untrained", "random at L0"])  # fmt: skip
    print_trajectories("MCC every 250 steps (seed 0):", named)
    print(f"\nbest control seed (untrained, random@L0): "
          f"{max(out[f]['controls_max'] for f in ('0.1', '0.01')):.4f}")  # fmt: skip
    out["lines"] = lines
    (ROOT / "flat-im-weight.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
