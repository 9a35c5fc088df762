"""The rules of docs/eval/synthetic/cpu-why/im-weight-recipes-PLAN.md (fixed before the run)
on cpu-why/mini-im/, cpu-why/small-im/ and cpu-why/small-im-encoder/, against cpu-why/diag/.

Run from the repository root: python docs/eval/synthetic/cpu-why/im_weight_recipes_table.py
Prints each rule's outcome and a markdown table; writes cpu-why/im-weight-recipes.json.
"""

import json

from why_rows import ROOT, controls_max, mcc, print_table, rows

from implicit_em.eval.verdict import MARGIN, apart

SEEDS = [0, 1, 2]
COLUMNS = ["MCC", "L0", "F1", "dead", "features covered", "untrained", "random at L0"]
WORDS = {"above": "the weaker InfoMax lifts the encoder on {}", "level": "no lift on {}",
         "below": "below the default weights on {}"}  # fmt: skip


def main() -> None:
    enc_mini = rows("diag", "encoder", SEEDS)
    enc_small = rows("small-im-encoder", "encoder", SEEDS)
    named, out, lines = [], {}, []
    for recipe, group, f, base in (("mini", "mini-im", "0.1", enc_mini),
                                   ("mini", "mini-im", "0.01", enc_mini),
                                   ("small", "small-im", "0.01", enc_small)):  # fmt: skip
        rs = rows(group, f"encoder-im{f}", SEEDS)
        a = apart(mcc(rs), mcc(base), MARGIN)
        word = WORDS[a].format(recipe)
        out[f"{recipe} x {f}"] = {"mcc": mcc(rs), "default": mcc(base), "apart": a,
                                  "reading": word, "controls_max": controls_max(rs)}  # fmt: skip
        lines.append(f"{recipe}, x {f}: {min(mcc(rs)):.4f}-{max(mcc(rs)):.4f} against the "
                     f"default {min(mcc(base)):.4f}-{max(mcc(base)):.4f}: {a}, {word}.")  # fmt: skip
        named.append((f"{recipe}, InfoMax x {f}", rs))
    named += [("mini, default weights (diag)", enc_mini), ("small, default weights", enc_small)]
    print("\n".join(f"- {x}" for x in lines))
    print_table("run", named, COLUMNS)
    out["lines"] = lines
    (ROOT / "im-weight-recipes.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
