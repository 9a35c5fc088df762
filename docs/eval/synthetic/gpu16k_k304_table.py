"""TopK at the weight-redundancy encoder's L0 (k = 304) on the 16k synthetic model (issue 18):
the table and the rules of docs/eval/synthetic/gpu16k-k304-PLAN.md (fixed before the runs),
from the files in docs/eval/synthetic/gpu16k-k304/ (sixteenth session):

- `k0.json`, `k1.json`: call K1 (nvidia-h200-x2, one process per GPU), seeds 0 and 1 of
  `topk-k304`;
- `k2.json`: call K2 (GPU 0 of the warm nvidia-h200-x2), seed 2.

The committed rows the rules read, all as gpu16k_seeds_table.py reads them (`load_rows`):
`encoder-wr`, `encoder-wr-centred` and `encoder-centred` (rule 4) and `topk-k214` (rule 5),
3 seeds each at 49.1 M. Rule 6's own-L0 readings are `eval.verdict.at_own_l0` on every row of
`load_rows` (the table the verdict reads, gpu16k-seeds.json), for the decoder-free rows whose
L0 is matched to 304 and for the encoder (L0 214), whose reading should not move.

Run from the repository root: python docs/eval/synthetic/gpu16k_k304_table.py
Prints the markdown tables and each rule's outcome; writes
docs/eval/synthetic/gpu16k-k304.json.
"""

from pathlib import Path

# the script's folder is on sys.path
from gpu16k_seeds_table import COLUMNS, detection_rows, load_rows, print_report, read_rows

from implicit_em.eval.synthetic import summarise
from implicit_em.eval.verdict import MARGIN, apart, at_own_l0, ground_truth_rows

ROOT = Path("docs/eval/synthetic")
STEPS = 47927  # 49.1 M samples at batch 1,024
NEW = ROOT / "gpu16k-k304"
ROW = "topk-k304"
NEW_FILES = {"k0.json": (ROW,), "k1.json": (ROW,), "k2.json": (ROW,)}
# rule 1: the TopK family's untrained MCC at width 4,096 per seed (the plan's values, exact;
# independent of k; encoder-wr's seeds start from the same)
INIT = {0: 0.14807778596878052, 1: 0.14800229668617249, 2: 0.14777010679244995}
L0_WINDOW = (228, 380)  # rule 3: 304 +- 25 %
WR = "encoder-wr"  # rule 4's reference
BESIDE = ("encoder-wr-centred", "encoder-centred")  # rule 4: reported beside it
TOPK = "topk-k214"  # rule 5's reference
# rule 6: the rows whose own-L0 reading the plan names (matched to 304; the unit-row encoders
# also to 214; the encoder to 214 only)
OWN_L0 = (WR, *BESIDE, "encoder-unit-rows", "encoder-wr-unit-rows", "encoder")


def mccs(rows: list[dict], name: str) -> list[float]:
    """The trained MCC of every row named `name`, one per seed."""
    return [r["trained"]["mcc"] for r in rows if r["variant"] == name]


def span(values: list[float]) -> str:
    """The seed range 'min-max' to 4 decimals."""
    return f"{min(values):.4f}-{max(values):.4f}"


def seeds_word(k: int) -> str:
    return f"{k} seed" + ("s" if k != 1 else "")


def check(new: list[dict]) -> tuple[list[dict], dict, list[str]]:
    """Rules 1-3 on each new row (one per seed): (the rows that pass all three, each rule's
    outcome, the rules' lines). A row that fails one is reported, not compared."""
    rules, lines, ok = {"1_init": [], "2_short": [], "3_l0": []}, [], []
    for r in new:
        init, l0 = r["untrained"]["mcc"], r["trained"]["l0"]
        passed = init == INIT.get(r["seed"])
        rules["1_init"].append({"seed": r["seed"], "untrained": init,
                                "expected": INIT.get(r["seed"]), "passed": passed})  # fmt: skip
        if not passed:
            lines.append(f"Rule 1: {ROW} seed {r['seed']} untrained MCC {init!r} against "
                         f"{INIT.get(r['seed'])!r}: FAILED (reported, not compared).")  # fmt: skip
        if r["steps_done"] != STEPS:
            rules["2_short"].append({"seed": r["seed"], "steps": r["steps_done"],
                                     "samples": r["samples"]})  # fmt: skip
            lines.append(f"Rule 2: {ROW} seed {r['seed']} stopped at {r['steps_done']} steps "
                         f"({r['samples']:,} samples): reported, not compared.")  # fmt: skip
        inside = L0_WINDOW[0] <= l0 <= L0_WINDOW[1]
        rules["3_l0"].append({"seed": r["seed"], "l0": l0, "inside": inside})
        if not inside:
            lines.append(f"Rule 3: {ROW} seed {r['seed']} L0 {l0:.1f} OUTSIDE {L0_WINDOW[0]}-"
                         f"{L0_WINDOW[1]}: reported, not used for rules 4-5.")  # fmt: skip
        if passed and r["steps_done"] == STEPS and inside:
            ok.append(r)
    n = len(new)
    lines.insert(0, f"Rules 1-3: init exact {sum(x['passed'] for x in rules['1_init'])} of {n}; "
                    f"{n - len(rules['2_short'])} of {n} reached {STEPS} steps; L0 inside "
                    f"{L0_WINDOW[0]}-{L0_WINDOW[1]} {sum(x['inside'] for x in rules['3_l0'])} of "
                    f"{n} (L0 per seed: "
                    + ", ".join(f"{x['l0']:.1f}" for x in rules["3_l0"]) + ").")  # fmt: skip
    return ok, rules, lines


def evaluate() -> dict:
    """The plan's rules on the committed files: {"steps", "seeds" (variant -> seeds read),
    "summary" (`summarise` of the table's rows), "detection" (per-feature detection of
    topk-k304 and topk-k214, by seed), "rules" (each rule's outcome), "lines" (the rules'
    text)}."""
    new = [r for f, names in NEW_FILES.items() for r in read_rows(NEW / f, names)]
    ok, rules, lines = check(new)
    every = load_rows()  # every committed 49.1 M row (topk-k304 among them, by the same rules)
    rows = [r for r in every if r["variant"] in (WR, *BESIDE, TOPK)] + ok
    seeds_of = {n: sorted(r["seed"] for r in rows if r["variant"] == n)
                for n in dict.fromkeys(r["variant"] for r in rows)}  # fmt: skip
    for n, s in seeds_of.items():
        if len(s) != len(set(s)):
            raise SystemExit(f"{n}: a seed appears twice ({s})")
    by = {s["variant"]: s for s in summarise(rows)}

    def seen(name: str) -> str:
        return f"{name} ({seeds_word(len(seeds_of[name]))}, {span(mccs(rows, name))})"

    # rule 4: against the wr encoder at its L0, and the centred rows beside it
    rules["4_against_wr"] = {}
    if ROW in by:
        s = by[ROW]
        control = max(s["mcc_untrained"]["max"], s["mcc_random_at_l0"]["max"])
        above_controls = s["mcc"]["min"] > control + MARGIN
        rules["4_controls"] = {"best_control": control, "above_controls": above_controls,
                               "dead_latents": s["dead_latents"], "f1": s["f1"],
                               "feature_f1": s["feature_f1"]}  # fmt: skip
        for ref in (WR, *BESIDE):
            a = apart(mccs(rows, ROW), mccs(rows, ref), MARGIN)
            rules["4_against_wr"][ref] = {"apart": a, "mcc": by[ref]["mcc"],
                                          "l0": by[ref]["l0"]["mean"],
                                          "gap_worst_best": by[ROW]["mcc"]["min"] - by[ref]["mcc"]["max"]}  # fmt: skip
            what = ""
            if ref == WR:
                word = {"above": "holds", "level": "changes (level)",
                        "below": "changes (below)"}[a]  # fmt: skip
                what = f"; 'the SAE family beats the wr encoder at its L0' {word}"
            lines.append(f"Rule 4: {seen(ROW)} against {seen(ref)}, L0 "
                         f"{by[ref]['l0']['mean']:.1f}: {a} (worst-best "
                         f"{by[ROW]['mcc']['min'] - by[ref]['mcc']['max']:+.4f}){what}.")  # fmt: skip
        lines.append(f"Rule 4: {ROW} dead {s['dead_latents']['min']:.0f}-"
                     f"{s['dead_latents']['max']:.0f} of 4,096, F1 {s['f1']['mean']:.3f}, feature "
                     f"F1 {s['feature_f1']['mean']:.3f}; "
                     f"{'above' if above_controls else 'NOT above'} its controls (worst seed "
                     f"{s['mcc']['min']:.4f}, best control seed {control:.4f}).")  # fmt: skip
    else:
        lines.append(f"Rules 4-5: {ROW}: no row passed rules 1-3.")

    # rule 5: TopK from L0 214 to 304 (reported; decides rule 6's unit-row readings)
    if ROW in by:
        a = apart(mccs(rows, ROW), mccs(rows, TOPK), MARGIN)
        rules["5_against_topk_k214"] = {
            "apart": a, "seeds": seeds_of[ROW], "mean": by[ROW]["mcc"]["mean"],
            "topk_k214_mean": by[TOPK]["mcc"]["mean"],
            "exceeds_k214_mean": by[ROW]["mcc"]["mean"] > by[TOPK]["mcc"]["mean"]}  # fmt: skip
        lines.append(f"Rule 5: {seen(ROW)} against {seen(TOPK)}: {a}; mean "
                     f"{by[ROW]['mcc']['mean']:.4f} against {by[TOPK]['mcc']['mean']:.4f} "
                     "(reported; no default or verdict criterion reads it).")  # fmt: skip

    # rule 6: each named row's own-L0 reading, as the verdict takes it from gpu16k-seeds.json
    gt = ground_truth_rows(summarise(every))
    named = {r["name"]: r for r in gt}
    rules["6_own_l0"] = {}
    for n in OWN_L0:
        r = named[n]
        own = at_own_l0(r, gt)
        rules["6_own_l0"][n] = None if own is None else {
            "l0": r["l0"], "mcc": r["mcc"], "sae": own["name"], "sae_mcc": own["mcc"],
            "sae_l0": own["l0"], "sae_seeds": own["seeds"], "margin": r["mcc"] - own["mcc"]}  # fmt: skip
        lines.append(f"Rule 6: `{n}` {r['mcc']:.4f} (L0 {r['l0']:.1f}) against "
                     + (f"`{own['name']}` {own['mcc']:.4f} (L0 {own['l0']:.1f}, "
                        f"{seeds_word(own['seeds'])}): {r['mcc'] - own['mcc']:+.4f}."
                        if own else "no SAE row at an L0 matched to its own."))  # fmt: skip

    table = [by[n] for n in (ROW, TOPK, WR, *BESIDE) if n in by]
    detection = detection_rows(rows, (ROW, TOPK))
    return {"steps": STEPS, "seeds": seeds_of, "summary": table, "detection": detection,
            "rules": rules, "lines": lines}  # fmt: skip


def main() -> None:
    """Print the tables and the rules' lines; write docs/eval/synthetic/gpu16k-k304.json."""
    out = evaluate()
    cols = [COLUMNS[0], ("MCC enc. rows", "mcc_encoder_rows", 3), *COLUMNS[1:6],
            ("feature F1", "feature_f1", 3), *COLUMNS[6:]]  # fmt: skip
    print_report(out, cols, "gpu16k-k304.json")


if __name__ == "__main__":
    main()
