"""The InfoMax weights below a hundredth, and the LSE alone, on the 16k synthetic model (issue
18): the table and the rules of docs/eval/synthetic/gpu16k-im-low-PLAN.md (fixed before the
run), from the files in docs/eval/synthetic/gpu16k-im-low/ (seventeenth session):

- `l0.json`, `l1.json`: one call on nvidia-h200, the plan's single-GPU fallback recorded in
  docs/eval/next-gpu-PLAN.md before firing: seeds 0 and 1 of `encoder-im0.003` and
  `encoder-im0` (both InfoMax weights at 0: the LSE alone), one process per seed, the two
  processes sharing the GPU.

Owed under the plan: seed 2 of both rows, and `encoder-im0.001` on every seed. Rule 3 reads the
weights there are, on the seeds there are (`OWED` lists what is missing).

The file set is gpu16k_seeds_table.py's (`IML_FILES`), so this script and the seeds table read
the same rows through the same checks (`planned_rows`). The committed rows the rules read, as
gpu16k_seeds_table.py reads them (`load_rows`): `encoder-im0.01` (rule 3), `encoder` (rule 4),
and every SAE row at an L0 matched to a new row's (rule 6, `eval.verdict.matched_l0`). All at
width 4,096 and 47,927 steps (49.1 M samples).

Run from the repository root: python docs/eval/synthetic/gpu16k_im_low_table.py
Prints the markdown tables and each rule's outcome; writes docs/eval/synthetic/gpu16k-im-low.json.
"""

# the script's folder is on sys.path
import gpu16k_seeds_table as T
from gpu16k_seeds_table import controls, mccs, span

from implicit_em.eval.synthetic import summarise
from implicit_em.eval.verdict import (
    MARGIN,
    SAE,
    apart,
    at_own_l0,
    ground_truth_rows,
    matched_l0,
)

WEIGHTS = ("encoder-im0.003", "encoder-im0.001")  # rule 3, in the plan's order
LSE = "encoder-im0"  # rule 4: both InfoMax weights at 0
PLANNED = (*WEIGHTS, LSE)
SEEDS = (0, 1, 2)  # the plan's seeds
IM = "encoder-im0.01"  # rule 3's reference (0.3978-0.4009)
ENCODER = "encoder"  # rule 4's reference (0.2092-0.2103)
SWEEP = ("encoder", "encoder-im0.05", "encoder-im0.03", "encoder-im0.02", "encoder-im0.01",
         "encoder-im0.003", "encoder-im0.001", "encoder-im0")  # fmt: skip
"""The InfoMax weights of the 16k recipe, largest first (`encoder`: the default, x 1)."""


def weight(name: str) -> float:
    """The InfoMax weights' fraction of their reference-K values in a row of SWEEP."""
    return 1.0 if name == ENCODER else float(name.removeprefix("encoder-im"))


def checked(lines: list[str]) -> list[dict]:
    """Rules 1-2 on the files' rows (`gpu16k_seeds_table.planned_rows` with K304_INIT): the
    rows that pass. A failing row gets a line in `lines` and is left out; the first line counts
    them."""

    def note(r: dict, failed: list[str]) -> None:
        lines.append(f"{r['variant']} seed {r['seed']}: {'; '.join(failed)}: reported, not "
                     f"compared (MCC {r['trained']['mcc']:.4f} at {r['samples'] / 1e6:.1f} M "
                     "samples).")  # fmt: skip

    raw = {f: T.read_rows(T.IML / f, names) for f, names in T.IML_FILES.items()}
    kept = T.planned_rows(T.IML, raw, T.K304_INIT, report=note)
    n = sum(len(v) for v in raw.values())
    lines.insert(0, f"Rules 1-2 (init exactly K304_INIT of the seed, {T.STEPS:,} steps): "
                    f"{len(kept)} of {n} rows pass.")  # fmt: skip
    return kept


def owed(rows: list[dict]) -> dict[str, list[int]]:
    """The plan's rows with the seeds of SEEDS that `rows` lacks: {name: [seed, ...]}, the
    rows with every seed left out."""
    have = {(r["variant"], r["seed"]) for r in rows}
    missing = {n: [s for s in SEEDS if (n, s) not in have] for n in PLANNED}
    return {n: s for n, s in missing.items() if s}


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


def beside(s: dict) -> str:
    """L0, dead latents, F1, per-feature F1 and features covered of one `summarise` entry."""

    def rng(key: str, nd: int) -> str:
        v = s[key]
        return f"{v['min']:,.{nd}f}-{v['max']:,.{nd}f}"

    return (f"L0 {rng('l0', 3)}, dead {rng('dead_latents', 0)}, F1 {rng('f1', 3)}, feature F1 "
            f"{rng('feature_f1', 3)}, features covered {rng('features_covered', 0)}")  # fmt: skip


def evaluate() -> dict:
    """The plan's rules on the committed files: {"summary" (`summarise` of the table's rows),
    "sweep" (every weight of SWEEP measured, largest first), "detection", "per_seed",
    "owed", "rules", "lines"}."""
    lines: list[str] = []
    new = checked(lines)
    missing = owed(new)
    lines.append("Owed under the plan: " + "; ".join(
        f"{n} seed{'s' * (len(s) > 1)} {', '.join(map(str, s))}" for n, s in missing.items())
        + "." if missing else "Owed under the plan: nothing.")  # fmt: skip
    names = {r["variant"] for r in new}
    every = T.load_rows()  # the seeds table's rows (the new ones among them, by the same checks)
    old = [r for r in every if r["variant"] not in PLANNED]
    gt = ground_truth_rows(summarise(old))  # the committed rows before this run
    rows = old + new
    by = {s["variant"]: s for s in summarise(rows)}
    rules: dict = {}

    # rule 3: each weight below a hundredth against encoder-im0.01
    got = {w: apart(mccs(rows, w), mccs(rows, IM), MARGIN) if w in names else None
           for w in WEIGHTS}  # fmt: skip
    rules["3_below_a_hundredth"] = {"apart": got, "reading": below_a_hundredth(got)}
    for w, a in got.items():
        if a is None:
            lines.append(f"Rule 3: {w}: not measured (owed).")
            continue
        gap = (by[w]["mcc"]["min"] - by[IM]["mcc"]["max"] if a == "above"
               else by[IM]["mcc"]["min"] - by[w]["mcc"]["max"])  # fmt: skip
        rules["3_below_a_hundredth"][w] = {"gap": gap, "seeds": by[w]["seeds"]}
        lines.append(f"Rule 3: {w} ({span(rows, w)}, mean {by[w]['mcc']['mean']:.4f}; "
                     f"{beside(by[w])}) against {IM} ({span(rows, IM)}): {a}, by {gap:.4f} "
                     "between the nearer seeds.")  # fmt: skip
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
    rules["6_own_l0"] = {}
    for n in (x for x in PLANNED if x in names):
        l0 = by[n]["l0"]["mean"]
        near = sorted((r for r in gt if r["kind"] == SAE and matched_l0(l0, r["l0"])),
                      key=lambda r: -r["mcc"])  # fmt: skip
        rules["6_own_l0"][n] = [{"name": r["name"], "mcc": r["mcc"], "l0": r["l0"],
                                 "seeds": r["seeds"], "dead": r["dead"],
                                 "apart": apart(mccs(rows, n), mccs(rows, r["name"]), MARGIN)}
                                for r in near]  # fmt: skip
        lines.append(f"Rule 6: {n} (L0 {l0:.3f}): " + ("; ".join(
            f"{r['name']} ({span(rows, r['name'])}, L0 {r['l0']:.2f}, {r['dead']:,.0f} dead): "
            f"{r['apart']}" for r in rules["6_own_l0"][n]) if near else "no SAE at its L0")
            + ".")  # fmt: skip

    # rule 7: what gpu16k-seeds.json's verdict now reads of the new rows (`synthetic_verdict`'s
    # own-L0 and best decoder-free lines, on the table with them)
    table = ground_truth_rows(summarise(rows))
    named = {r["name"]: r for r in table}
    _, top, level = T.best_decoder_free(table)
    beats = [w for w, a in got.items() if a == "above"]
    own = {n: at_own_l0(named[n], table) for n in PLANNED if n in names}
    rules["7_verdict"] = {
        "own_l0": {n: None if s is None else s["name"] for n, s in own.items()},
        "beats_im0.01": beats, "best_decoder_free_within_margin": level,
        "weights_measured": [n for n in SWEEP if n in by]}  # fmt: skip
    lines.append(f"Rule 7: decoder-free rows within {MARGIN} of the highest mean MCC ({top:.4f}) "
                 f"in the seeds table: {', '.join(level)}; a new weight above {IM}: "
                 f"{', '.join(beats) if beats else 'none'}. The best is a pick among "
                 f"{len(rules['7_verdict']['weights_measured'])} weights measured "
                 f"({', '.join(f'{weight(n):g}' for n in rules['7_verdict']['weights_measured'])}"
                 ").")  # fmt: skip

    sweep = [{"variant": n, "weight": weight(n), "seeds": by[n]["seeds"],
              "mcc": by[n]["mcc"]["mean"], "mcc_min": by[n]["mcc"]["min"],
              "mcc_max": by[n]["mcc"]["max"], "l0": by[n]["l0"]["mean"],
              "dead_latents": by[n]["dead_latents"]["mean"],
              "controls": controls(by[n])["reading"]} for n in SWEEP if n in by]  # fmt: skip
    per_seed = T.per_seed(sorted(new, key=lambda r: (PLANNED.index(r["variant"]), r["seed"])))
    shown = (*PLANNED, IM, ENCODER, *(s["name"] for v in rules["6_own_l0"].values() for s in v))
    return {"steps": T.STEPS, "summary": [by[n] for n in dict.fromkeys(shown) if n in by],
            "sweep": sweep, "detection": T.detection_rows(new, PLANNED), "per_seed": per_seed,
            "owed": missing, "rules": rules, "lines": lines}  # fmt: skip


def main() -> None:
    """Print the tables and the rules' lines; write docs/eval/synthetic/gpu16k-im-low.json."""
    out = evaluate()
    cols = [T.COLUMNS[0], ("MCC enc. rows", "mcc_encoder_rows", 3), *T.COLUMNS[1:6],
            ("feature F1", "feature_f1", 3), *T.COLUMNS[6:]]  # fmt: skip
    T.print_report(out, cols, "gpu16k-im-low.json")
    print("\n| weight | variant | seeds | MCC | L0 | dead | controls |")
    print("|---|---|---|---|---|---|---|")
    for s in out["sweep"]:
        print(f"| {s['weight']:g} | {s['variant']} | {s['seeds']} | {s['mcc']:.3f} "
              f"[{s['mcc_min']:.3f}, {s['mcc_max']:.3f}] | {s['l0']:.2f} | "
              f"{s['dead_latents']:,.0f} | {s['controls']} |")  # fmt: skip


if __name__ == "__main__":
    main()
