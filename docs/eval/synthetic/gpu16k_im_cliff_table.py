"""Between the cliff and the best weight, on the 16k synthetic model (issue 18): the table and
the rules of docs/eval/synthetic/gpu16k-im-cliff-PLAN.md (fixed before the calls), from the
files in docs/eval/synthetic/gpu16k-im-cliff/ (eighteenth session, nvidia-h200, two processes
sharing its GPU in each call):

- `c0.json`, `c1.json`: call C1, seeds 0 and 1 of `encoder-im0.005` and `encoder-im0.007`
  (both InfoMax weights at 0.005 and 0.007 of their reference-K values) in lockstep, one
  process per seed;
- `c2.json`: call C2, seed 2 of both, beside im-low's owed seed 2 (gpu16k-im-low/l2.json, which
  gpu16k_im_low_table.py reads: rule 6).

The file set is gpu16k_seeds_table.py's (`IMC_FILES`), so this script and the seeds table read
the same rows through the same checks (`planned_rows`). The committed rows the rules read, as
gpu16k_seeds_table.py reads them (`load_rows`): `encoder-im0.01` (rule 3), `encoder-im0.003`
and `encoder-im0.01` (rule 4), every SAE row at an L0 matched to a new row's (rule 5,
`eval.verdict.matched_l0`). All at width 4,096 and 47,927 steps (49.1 M samples).

Run from the repository root: python docs/eval/synthetic/gpu16k_im_cliff_table.py
Prints the markdown tables, each rule's outcome and the weight curve; writes
docs/eval/synthetic/gpu16k-im-cliff.json.
"""

# the script's folder is on sys.path
import gpu16k_im_low_table as LOW
import gpu16k_seeds_table as T
from gpu16k_seeds_table import controls, im_weight

WEIGHTS = T.IMC_ROWS  # encoder-im0.005, encoder-im0.007: rule 3, in the plan's order
SEEDS = (0, 1, 2)  # the plan's seeds
IM = T.IM_BEST  # encoder-im0.01, rule 3's reference (0.3978-0.4009)
CLIFF = ("encoder-im0.01", "encoder-im0.007", "encoder-im0.005", "encoder-im0.003")
"""Rule 4's weights, largest first: the cliff lies between two adjacent ones."""


def where_mcc_turns(readings: dict[str, str | None], mcc: dict[str, float]) -> str:
    """Rule 3's words from `apart` of each weight against encoder-im0.01 (None: not measured;
    `mcc`: each weight's mean MCC). "MCC peaks below 0.01: the best weight measured is w" for
    any "above" (of two, the one with the higher mean MCC); "0.01 stays the best weight
    measured; MCC falls on both sides of it" for "below" on every weight; else each weight's
    reading in turn, with what "level" means."""
    above = [w for w, a in readings.items() if a == "above"]
    if above:
        best = max(above, key=lambda w: mcc[w])
        return f"MCC peaks below 0.01: the best weight measured is {im_weight(best):g}"
    if all(a == "below" for a in readings.values()):
        return "0.01 stays the best weight measured; MCC falls on both sides of it"
    words = "; ".join(f"{n}: {a if a else 'not measured (owed)'}" for n, a in readings.items())
    if "level" in readings.values():
        words += " (level: 0.01 is one of two or three equal weights)"
    return words


def cliff(readings: dict[str, str]) -> str:
    """Rule 4's words from each weight's reading against its controls (`controls`; CLIFF's
    weights that were measured): the two adjacent weights, largest first, between which a row
    stops being above its controls."""
    ws = [w for w in CLIFF if w in readings]
    steps = [(lo, hi) for hi, lo in zip(ws, ws[1:], strict=False)
             if readings[hi] == "above" and readings[lo] != "above"]  # fmt: skip
    if not steps:
        side = "above" if all(readings[w] == "above" for w in ws) else "not above"
        return f"every weight from {im_weight(ws[-1]):g} to {im_weight(ws[0]):g} is {side} its controls"
    where = " and between ".join(f"{im_weight(lo):g} and {im_weight(hi):g}" for lo, hi in steps)
    return f"the cliff lies between {where}"


def im_low() -> tuple[dict, list[str]]:
    """Rule 6: gpu16k-im-low-PLAN.md's rules read again by gpu16k_im_low_table.py on the seeds
    there are: (each rule's reading, the table's lines)."""
    out = LOW.evaluate()
    r = out["rules"]
    got = {"seeds": {s["variant"]: s["seeds"] for s in out["summary"] if s["variant"] in LOW.PLANNED},
           "owed": out["owed"], "3_below_a_hundredth": r["3_below_a_hundredth"]["reading"],
           "4_lse_alone": None if r["4_lse_alone"] is None else r["4_lse_alone"]["words"],
           "5_controls": {n: c["reading"] for n, c in r["5_controls"].items()},
           "6_own_l0": {n: [s["name"] for s in v] for n, v in r["6_own_l0"].items()}}  # fmt: skip
    return got, out["lines"]


def evaluate() -> dict:
    """The plan's rules on the committed files: {"summary" (`summarise` of the table's rows),
    "sweep" (`weight_curve`: every weight of the 16k recipe measured, largest first),
    "detection", "per_seed", "owed", "rules", "lines"}."""
    lines: list[str] = []
    t = T.plan_tables(T.IMC, T.IMC_FILES, WEIGHTS, SEEDS, lines)
    measured, rows, gt, by = t["measured"], t["rows"], t["gt"], t["by"]
    rules: dict = {}

    # rule 3: where MCC turns, each new weight against encoder-im0.01
    got, each = dict.fromkeys(WEIGHTS), {}
    for w in measured:
        got[w], each[w], line = T.against(w, IM, by, rows)
        lines.append(f"Rule 3: {line}")
    lines += [f"Rule 3: {w}: not measured (owed)." for w in WEIGHTS if w not in measured]
    words = where_mcc_turns(got, {w: by[w]["mcc"]["mean"] for w in measured})
    rules["3_where_mcc_turns"] = {"apart": got, "reading": words, **each}
    lines.append(f"Rule 3 reads: {words}.")

    # rule 4: where the cliff is, each weight from 0.003 to 0.01 against its controls
    ctl = {w: controls(by[w]) for w in CLIFF if w in by}
    rules["4_cliff"] = {"controls": ctl,
                        "reading": cliff({w: c["reading"] for w, c in ctl.items()})}  # fmt: skip
    lines.append("Rule 4: " + "; ".join(
        f"{w} {c['reading']} ({by[w]['seeds']} seeds, {c['worst_seed']:.4f}-{c['best_seed']:.4f}; "
        f"control seeds {c['worst_control']:.4f}-{c['best_control']:.4f})"
        for w, c in ctl.items()) + f". Reads: {rules['4_cliff']['reading']}.")  # fmt: skip

    # rule 5: every committed SAE row at a new row's L0, with apart
    rules["5_own_l0"] = {w: T.saes_at_l0(w, by, gt, rows) for w in measured}
    lines += [f"Rule 5: {T.own_l0_words(w, by, rules['5_own_l0'][w], rows)}" for w in measured]

    # rule 6: im-low's rules on the seeds there are
    rules["6_im_low"], low = im_low()
    lines += [f"Rule 6 (gpu16k_im_low_table.py): {x}" for x in low]

    # rule 7: what gpu16k-seeds.json's verdict now reads of the new rows
    beats = [w for w, a in got.items() if a == "above"]
    rules["7_verdict"], line = T.verdict_reading(rows, measured, beats)
    lines.append(f"Rule 7: {line}")

    shown = (*WEIGHTS, IM, "encoder-im0.003",
             *(s["name"] for v in rules["5_own_l0"].values() for s in v))  # fmt: skip
    return T.weight_plan_output(t, WEIGHTS, shown, rules, lines)


def main() -> None:
    """Print the tables and the rules' lines; write docs/eval/synthetic/gpu16k-im-cliff.json."""
    T.print_weight_plan(evaluate(), "gpu16k-im-cliff.json")


if __name__ == "__main__":
    main()
