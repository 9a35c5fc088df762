"""The InfoMax weights below a hundredth, and the LSE alone, on the 16k synthetic model (issue
18): the table and the rules of docs/eval/synthetic/gpu16k-im-low-PLAN.md (fixed before the
run), from the files in docs/eval/synthetic/gpu16k-im-low/:

- `l0.json`, `l1.json` (seventeenth session): one call on nvidia-h200, the plan's single-GPU
  fallback recorded in docs/eval/next-gpu-PLAN.md before firing: seeds 0 and 1 of
  `encoder-im0.003` and `encoder-im0` (both InfoMax weights at 0: the LSE alone), one process
  per seed, the two processes sharing the GPU;
- `l2.json` (eighteenth session): seed 2 of both rows, a process of
  docs/eval/synthetic/gpu16k-im-cliff-PLAN.md's call C2 (rule 6 of that plan);
- `m0.json`-`m2.json` (eighteenth session): `encoder-im0.001`, seeds 0-2, one row a process,
  three processes sharing one GPU; the clock cut each at ~42,350 of 47,927 steps, so rule 2
  reports them and they are not compared;
- `n0.json`-`n2.json` (nineteenth session): the same three processes with clock flags that
  fit the full length (`--budget 470 --reserve 60`): 47,927 steps each, compared.

Rule 3 reads the weights there are, on the seeds there are (`owed` lists what is missing).

The file set is gpu16k_seeds_table.py's (`IML_FILES`), so this script and the seeds table read
the same rows through the same checks (`planned_rows`). The committed rows the rules read, as
gpu16k_seeds_table.py reads them (`load_rows`): `encoder-im0.01` (rule 3), `encoder` (rule 4),
and every SAE row at an L0 matched to a new row's (rule 6, `eval.verdict.matched_l0`). All at
width 4,096 and 47,927 steps (49.1 M samples). The weight curve lists every weight of the 16k
recipe in the seeds table (`IM_WEIGHTS`; 0.007 and 0.005 from gpu16k-im-cliff).

Run from the repository root: python docs/eval/synthetic/gpu16k_im_low_table.py
Prints the markdown tables and each rule's outcome; writes docs/eval/synthetic/gpu16k-im-low.json.
"""

# the script's folder is on sys.path
import gpu16k_seeds_table as T
from gpu16k_seeds_table import beside, controls, mccs, span

from implicit_em.eval.verdict import MARGIN, apart

WEIGHTS = ("encoder-im0.003", "encoder-im0.001")  # rule 3, in the plan's order
LSE = "encoder-im0"  # rule 4: both InfoMax weights at 0
PLANNED = (*WEIGHTS, LSE)
SEEDS = (0, 1, 2)  # the plan's seeds
IM = "encoder-im0.01"  # rule 3's reference (0.3978-0.4009)
ENCODER = "encoder"  # rule 4's reference (0.2092-0.2103)


def below_a_hundredth(readings: dict[str, str | None]) -> str:
    """Rule 3's words from `apart` of each weight against encoder-im0.01 (None: not measured):
    "MCC keeps rising below a hundredth" for any "above", "the rise stops at or above 0.003"
    for "below" on both weights, else each weight's reading in turn (and, when every weight
    measured is "below", the weights the second words still wait on)."""
    if "above" in readings.values():
        return "MCC keeps rising below a hundredth"
    if all(a == "below" for a in readings.values()):
        return "the rise stops at or above 0.003"
    words = "; ".join(f"{n}: {a if a else 'not measured (owed)'}" for n, a in readings.items())
    unmeasured = [n for n, a in readings.items() if a is None]
    if unmeasured and all(a in ("below", None) for a in readings.values()):
        words += (f" ('the rise stops at or above 0.003' waits on {', '.join(unmeasured)}, "
                  "which must read below too)")  # fmt: skip
    return words


def evaluate() -> dict:
    """The plan's rules on the committed files: {"summary" (`summarise` of the table's rows),
    "sweep" (`weight_curve`: every weight of the 16k recipe measured, largest first),
    "detection", "per_seed", "owed", "rules", "lines"}."""
    lines: list[str] = []
    t = T.plan_tables(T.IML, T.IML_FILES, PLANNED, SEEDS, lines)
    measured, rows, gt, by = t["measured"], t["rows"], t["gt"], t["by"]
    names = set(measured)
    rules: dict = {}

    # rule 3: each weight below a hundredth against encoder-im0.01
    got, each = {}, {}
    for w in WEIGHTS:
        if w not in names:
            got[w] = None
            lines.append(f"Rule 3: {w}: not measured (owed).")
            continue
        got[w], each[w], line = T.against(w, IM, by, rows)
        lines.append(f"Rule 3: {line}")
    rules["3_below_a_hundredth"] = {"apart": got, "reading": below_a_hundredth(got), **each}
    lines.append(f"Rule 3 reads: {rules['3_below_a_hundredth']['reading']}.")

    # rules 4-5: controls of every new row; the LSE alone also against the encoder
    against = {n: controls(by[n]) for n in PLANNED if n in names}
    if LSE in names:
        c, s = against[LSE], by[LSE]
        words = ("the LSE alone learns more than its controls" if c["reading"] == "above"
                 else "the LSE alone does not learn the features")  # fmt: skip
        rules["4_lse_alone"] = {"controls": c["reading"], "words": words,
                                ENCODER: apart(mccs(rows, LSE), mccs(rows, ENCODER), MARGIN),
                                "l0": s["l0"], "dead_latents": s["dead_latents"]}  # fmt: skip
        lines.append(f"Rule 4: {LSE} ({span(rows, LSE)}; {beside(s)}) against its controls: "
                     f"{c['reading']}; against {ENCODER} ({span(rows, ENCODER)}): "
                     f"{rules['4_lse_alone'][ENCODER]}. Reads: {words}.")  # fmt: skip
    else:
        rules["4_lse_alone"] = None
        lines.append(f"Rule 4: no {LSE} row passed rules 1-2.")
    rules["5_controls"] = against
    lines.append("Rule 5: " + "; ".join(
        f"{n} {c['reading']} (seeds {c['worst_seed']:.4f}-{c['best_seed']:.4f}, control seeds "
        f"{c['worst_control']:.4f}-{c['best_control']:.4f})"
        for n, c in rules["5_controls"].items()) + ".")  # fmt: skip

    # rule 6: every committed SAE row at a new row's L0, with apart
    rules["6_own_l0"] = {n: T.saes_at_l0(n, by, gt, rows) for n in measured}
    lines += [f"Rule 6: {T.own_l0_words(n, by, rules['6_own_l0'][n], rows)}" for n in measured]

    # rule 7: what gpu16k-seeds.json's verdict now reads of the new rows
    beats = [w for w, a in got.items() if a == "above"]
    rules["7_verdict"], line = T.verdict_reading(rows, measured, beats)
    lines.append(f"Rule 7: {line}")

    shown = (*PLANNED, IM, ENCODER, *(s["name"] for v in rules["6_own_l0"].values() for s in v))
    return T.weight_plan_output(t, PLANNED, shown, rules, lines)


def main() -> None:
    """Print the tables and the rules' lines; write docs/eval/synthetic/gpu16k-im-low.json."""
    T.print_weight_plan(evaluate(), "gpu16k-im-low.json")


if __name__ == "__main__":
    main()
