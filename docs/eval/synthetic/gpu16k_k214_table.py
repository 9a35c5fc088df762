"""BatchTopK and Matryoshka with sae-lens's protocol at the encoder's L0 (k = 214) on the 16k
synthetic model (issue 18): the table and the rules of docs/eval/synthetic/gpu16k-k214-PLAN.md
(fixed before the runs), from the files in docs/eval/synthetic/gpu16k-k214/ (fifteenth
session):

- `a0.json`, `a1.json`: call A (nvidia-h200-x2, one process per GPU), seeds 0 and 1 of
  `batchtopk-k214-sl-all` and `matryoshka-k214-sl-all` (two rows in lockstep per process).
- `b2.json`: call B (GPU 1 of nvidia-h200-x2, beside issue 19's round 10 on GPU 0), seed 2 of
  both rows.

The committed rows the rules read (the plan's list), all as gpu16k_seeds_table.py reads them
(`load_rows`): the encoder's seeds 0-2 at 49.1 M (gpu16k-converged/), `topk-k214` seeds 0-2
(gpu16k-matched-l0/ and gpu16k-next11/), and, for the order at L0 25 that rule 5 asks about,
`matryoshka-k25-sl-all`, `batchtopk-k25-sl-all` and `topk-k25`. `tied-topk-k214` is shown in the
table beside them; no rule reads it.

Run from the repository root: python docs/eval/synthetic/gpu16k_k214_table.py
Prints the markdown tables and each rule's outcome; writes
docs/eval/synthetic/gpu16k-k214.json.
"""

from pathlib import Path

# the script's folder is on sys.path
from gpu16k_seeds_table import COLUMNS, detection_rows, load_rows, print_report, read_rows

from implicit_em.eval.synthetic import summarise
from implicit_em.eval.verdict import MARGIN, apart

ROOT = Path("docs/eval/synthetic")
STEPS = 47927  # 49.1 M samples at batch 1,024
NEW = ROOT / "gpu16k-k214"
ROWS = ("batchtopk-k214-sl-all", "matryoshka-k214-sl-all")
NEW_FILES = {"a0.json": ROWS, "a1.json": ROWS, "b2.json": ROWS}
# the committed rows the rules read, as gpu16k_seeds_table.load_rows reads them (the encoder's
# seeds 0-2 from gpu16k-converged/, the k = 214 SAEs from gpu16k-matched-l0/ and gpu16k-next11/)
OLD = ("encoder", "topk-k214", "tied-topk-k214")
# rule 1: the sae-lens-protocol init of each seed (the plan's values, exact; independent of k)
INIT = {0: 0.1481378674507141, 1: 0.1480361372232437, 2: 0.1479351669549942}
L0_WINDOW = (160, 268)  # rule 3: 214 +- 25 %
TOPK = "topk-k214"  # rule 5's reference
# rule 5: the order at L0 25 (Matryoshka above BatchTopK's protocol row, both against TopK)
AT25 = {"batchtopk-k214-sl-all": "batchtopk-k25-sl-all",
        "matryoshka-k214-sl-all": "matryoshka-k25-sl-all", TOPK: "topk-k25"}  # fmt: skip


def mccs(rows: list[dict], name: str) -> list[float]:
    """The trained MCC of every row named `name`, one per seed."""
    return [r["trained"]["mcc"] for r in rows if r["variant"] == name]


def span(values: list[float]) -> str:
    """The seed range 'min-max' to 4 decimals."""
    return f"{min(values):.4f}-{max(values):.4f}"


def evaluate() -> dict:
    """The plan's rules on the committed files: {"steps", "seeds" (variant -> seeds read),
    "summary" (`summarise` of the table's rows), "detection" (per-feature detection of the new
    rows and topk-k214, by seed), "rules" (each rule's outcome), "lines" (the rules' text)}."""
    new = [r for f, names in NEW_FILES.items() for r in read_rows(NEW / f, names)]
    at25 = load_rows()  # every committed 49.1 M row; rule 5 reads the L0-25 ones too
    old = [r for r in at25 if r["variant"] in OLD]
    lines, rules = [], {"1_init": [], "2_short": [], "3_l0": {}}
    ok = []
    for r in new:  # rules 1 and 2
        init = r["untrained"]["mcc"]
        passed = init == INIT[r["seed"]]
        rules["1_init"].append({"variant": r["variant"], "seed": r["seed"], "untrained": init,
                                "expected": INIT[r["seed"]], "passed": passed})  # fmt: skip
        if not passed:
            lines.append(f"Rule 1: {r['variant']} seed {r['seed']} untrained MCC {init!r} "
                         f"against {INIT[r['seed']]!r}: FAILED (reported, not compared).")  # fmt: skip
        if r["steps_done"] != STEPS:
            rules["2_short"].append({"variant": r["variant"], "seed": r["seed"],
                                     "steps": r["steps_done"], "samples": r["samples"]})  # fmt: skip
            lines.append(f"Rule 2: {r['variant']} seed {r['seed']} stopped at {r['steps_done']} "
                         f"steps ({r['samples']:,} samples): reported, not compared.")  # fmt: skip
        if passed and r["steps_done"] == STEPS:
            ok.append(r)
    n_pass = sum(x["passed"] for x in rules["1_init"])
    lines.insert(0, f"Rule 1 (init check, exact): {n_pass} of {len(new)} new rows equal their "
                    f"seed's committed untrained MCC; rule 2: {len(new) - len(rules['2_short'])} "
                    f"of {len(new)} reached {STEPS} steps.")  # fmt: skip
    rows = old + ok
    seeds_of = {n: sorted(r["seed"] for r in rows if r["variant"] == n)
                for n in dict.fromkeys(r["variant"] for r in rows)}  # fmt: skip
    for n, s in seeds_of.items():
        if len(s) != len(set(s)):
            raise SystemExit(f"{n}: a seed appears twice ({s})")
    by = {s["variant"]: s for s in summarise(rows)}

    def seeds_word(n: str) -> str:
        k = len(seeds_of[n])
        return f"{k} seed" + ("s" if k != 1 else "")

    # rule 3: the L0 window; rules 4 and 5 read only the rows inside it
    compared = []
    for n in ROWS:
        if n not in by:
            lines.append(f"Rule 3: {n}: no row passed rules 1-2.")
            continue
        l0 = by[n]["l0"]["mean"]
        inside = L0_WINDOW[0] <= l0 <= L0_WINDOW[1]
        rules["3_l0"][n] = {"l0": l0, "inside": inside}
        lines.append(f"Rule 3: {n} mean L0 {l0:.1f}: "
                     + ("inside" if inside else "OUTSIDE (reported, not used for rules 4-5)")
                     + f" {L0_WINDOW[0]}-{L0_WINDOW[1]}.")  # fmt: skip
        if inside:
            compared.append(n)

    # rule 4: against the encoder at its L0
    rules["4_against_encoder"] = {}
    enc = by["encoder"]
    for n in compared:
        s = by[n]
        a = apart(mccs(rows, n), mccs(rows, "encoder"), MARGIN)
        control = max(s["mcc_untrained"]["max"], s["mcc_random_at_l0"]["max"])
        above_controls = s["mcc"]["min"] > control + MARGIN
        rules["4_against_encoder"][n] = {
            "apart": a, "seeds": seeds_of[n], "mcc": s["mcc"], "l0": s["l0"]["mean"],
            "dead_latents": s["dead_latents"], "f1": s["f1"], "feature_f1": s["feature_f1"],
            "best_control": control, "above_controls": above_controls}  # fmt: skip
        word = {"above": "stays", "level": "changes (level)", "below": "changes (below)"}[a]
        lines.append(f"Rule 4: {n} ({seeds_word(n)}, MCC {span(mccs(rows, n))}, L0 "
                     f"{s['l0']['mean']:.1f}, dead {s['dead_latents']['min']:.0f}-"
                     f"{s['dead_latents']['max']:.0f} of 4,096, F1 {s['f1']['mean']:.3f}, feature "
                     f"F1 {s['feature_f1']['mean']:.3f}) against encoder ({seeds_word('encoder')}, "
                     f"{span(mccs(rows, 'encoder'))}, L0 {enc['l0']['mean']:.1f}): {a}; the "
                     f"standing reading 'the SAE family beats the encoder at its L0' {word}; "
                     f"{'above' if above_controls else 'NOT above'} its controls (best control "
                     f"seed {control:.4f}).")  # fmt: skip

    # rule 5: against topk-k214, and whether the order at L0 25 holds at L0 214

    def seen(name: str, rs: list[dict]) -> str:
        vals = mccs(rs, name)
        return f"{name} ({len(vals)} seed{'s' * (len(vals) != 1)}, {span(vals)})"

    rules["5_order"] = {"at_214": {}, "at_25": {}}
    pairs = [(n, TOPK) for n in ROWS] + [("matryoshka-k214-sl-all", "batchtopk-k214-sl-all")]
    for a_name, b_name in pairs:
        a25, b25 = AT25[a_name], AT25[b_name]
        there = apart(mccs(at25, a25), mccs(at25, b25), MARGIN)
        rules["5_order"]["at_25"][f"{a25} vs {b25}"] = there
        if a_name not in compared or b_name not in (TOPK, *compared):
            rules["5_order"]["at_214"][f"{a_name} vs {b_name}"] = None
            lines.append(f"Rule 5: {a_name} against {b_name}: not compared (rules 1-3).")
            continue
        here = apart(mccs(rows, a_name), mccs(rows, b_name), MARGIN)
        rules["5_order"]["at_214"][f"{a_name} vs {b_name}"] = here
        lines.append(f"Rule 5: {seen(a_name, rows)} against {seen(b_name, rows)}: {here}; at "
                     f"L0 25 {seen(a25, at25)} against {seen(b25, at25)}: {there}; "
                     + ("the same" if here == there else "not the same") + ".")  # fmt: skip
    order = rules["5_order"]
    got = [order["at_214"][f"{a} vs {b}"] == order["at_25"][f"{AT25[a]} vs {AT25[b]}"]
           for a, b in pairs if order["at_214"][f"{a} vs {b}"] is not None]  # fmt: skip
    order["holds"] = all(got) if len(got) == len(pairs) else None
    word = {True: "holds", False: "does not hold", None: "cannot be read (a row not compared)"}
    lines.append(f"Rule 5: the order at L0 25 {word[order['holds']]} at L0 214 (reported; no "
                 "default or verdict criterion reads it).")  # fmt: skip

    table = [by[n] for n in (*ROWS, TOPK, "tied-topk-k214", "encoder") if n in by]
    detection = detection_rows(rows, (*ROWS, TOPK))
    return {"steps": STEPS, "seeds": seeds_of, "summary": table, "detection": detection,
            "rules": rules, "lines": lines}  # fmt: skip


def main() -> None:
    """Print the tables and the rules' lines; write docs/eval/synthetic/gpu16k-k214.json."""
    out = evaluate()
    cols = [COLUMNS[0], ("MCC enc. rows", "mcc_encoder_rows", 3), *COLUMNS[1:6],
            ("feature F1", "feature_f1", 3), *COLUMNS[6:]]  # fmt: skip
    print_report(out, cols, "gpu16k-k214.json")


if __name__ == "__main__":
    main()
