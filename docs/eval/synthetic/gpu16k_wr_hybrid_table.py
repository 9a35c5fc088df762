"""The hybrid with the weight-redundancy term on the 16k synthetic model (issue 18): the table and
the rules of docs/eval/synthetic/gpu16k-wr-hybrid-PLAN.md (fixed before the runs), from the
files in docs/eval/synthetic/gpu16k-wr-hybrid/ (sixteenth session):

- `w0.json`, `w1.json`: call W1 (nvidia-h200-x2, one process per GPU), seeds 0 and 1 of
  `tied-topk-im-3.0-wr`, each alone in its process.
- `w2.json`, `h0.json`: call W2, seed 2 of `tied-topk-im-3.0-wr` (GPU 0) and seed 0 of the
  hybrid `tied-topk-im-3.0` alone (GPU 1; rule 3's reproduction check).

The committed rows the rules read, as gpu16k_seeds_table.py reads them (`load_rows`): the
hybrid's three seeds, `tied-topk` and the best SAE baseline at L0 25
(`matryoshka-k25-sl-all`), all at width 4,096 and 47,927 steps (49.1 M samples).

Run from the repository root: python docs/eval/synthetic/gpu16k_wr_hybrid_table.py
Prints the markdown table and each rule's outcome; writes
docs/eval/synthetic/gpu16k-wr-hybrid.json.
"""

from pathlib import Path

# the script's folder is on sys.path
from gpu16k_seeds_table import COLUMNS, load_rows, planned_rows, print_report, read_rows

from implicit_em.eval.synthetic import summarise
from implicit_em.eval.verdict import MARGIN, apart

ROOT = Path("docs/eval/synthetic")
STEPS = 47927  # 49.1 M samples at batch 1,024
NEW = ROOT / "gpu16k-wr-hybrid"
WR = "tied-topk-im-3.0-wr"
HYBRID = "tied-topk-im-3.0"
WR_FILES = {"w0.json": (WR,), "w1.json": (WR,), "w2.json": (WR,)}
H0 = "h0.json"  # rule 3: the hybrid's seed 0 alone
# rule 1: the committed hybrid's untrained MCC of each seed (the plan's values, exact)
INIT = {0: 0.14807778596878052, 1: 0.14800229668617249, 2: 0.14777010679244995}
REPRO = 0.005  # rule 3: "comparable" within this of the committed seed 0
BESIDE = ("tied-topk", "matryoshka-k25-sl-all")  # rule 5
L0_WINDOW = (18.75, 31.25)  # eval.verdict.nearest_in_window's window around 25 (tol 0.25)


def mccs(rows: list[dict], name: str) -> list[float]:
    """The trained MCC of every row named `name`, one per seed."""
    return [r["trained"]["mcc"] for r in rows if r["variant"] == name]


def span(values: list[float]) -> str:
    """The seed range 'min-max' to 4 decimals, with the seed count."""
    n = len(values)
    return f"{n} seed{'s' * (n != 1)}, {min(values):.4f}-{max(values):.4f}"


def checked(rows: list[dict], lines: list[str]) -> list[dict]:
    """Rules 1-2 (`gpu16k_seeds_table.planned_rows`): the rows whose untrained MCC equals INIT of
    their seed and that ran STEPS steps; a failing row gets a line in `lines` (its first failing
    rule) and is left out."""

    def note(r: dict, failed: list[str]) -> None:
        if failed[0].startswith("rule 1"):
            lines.append(f"Rule 1: {r['variant']} seed {r['seed']} untrained MCC "
                         f"{r['untrained']['mcc']!r} against {INIT[r['seed']]!r}: FAILED "
                         "(reported, not compared).")  # fmt: skip
        else:
            lines.append(f"Rule 2: {r['variant']} seed {r['seed']} stopped at {r['steps_done']} "
                         f"steps ({r['samples']:,} samples): reported, not compared.")  # fmt: skip

    return planned_rows(NEW, {"": rows}, INIT, report=note)


def evaluate() -> dict:
    """The plan's rules on the committed files: {"steps", "summary" (`summarise` of the table's
    rows), "h0" (rule 3's row), "rules" (each rule's outcome), "lines" (the rules' text)}."""
    lines: list[str] = []
    raw = [r for f, names in WR_FILES.items() for r in read_rows(NEW / f, names)]
    raw_h0 = read_rows(NEW / H0, (HYBRID,))
    new = checked(raw, lines)
    h0 = checked(raw_h0, lines)
    lines.insert(0, f"Rules 1-2 (init exact, {STEPS} steps): {len(new)} of {len(raw)} "
                    f"{WR} rows and {len(h0)} of 1 hybrid re-run pass.")  # fmt: skip
    old = [r for r in load_rows() if r["variant"] in (HYBRID, *BESIDE)]
    rows = old + new
    by = {s["variant"]: s for s in summarise(rows)}
    rules: dict = {}

    # rule 3: the hybrid's seed 0 alone against the committed seed 0 (trained in lockstep)
    committed0 = [r["trained"]["mcc"] for r in old if r["variant"] == HYBRID and r["seed"] == 0]
    if h0 and committed0:
        diff = h0[0]["trained"]["mcc"] - committed0[0]
        comparable = abs(diff) <= REPRO
        rules["3_reproduction"] = {"alone": h0[0]["trained"]["mcc"], "committed": committed0[0],
                                   "difference": diff, "comparable": comparable}  # fmt: skip
        lines.append(f"Rule 3: the hybrid's seed 0 alone {h0[0]['trained']['mcc']:.4f} against the "
                     f"committed {committed0[0]:.4f} (lockstep): {diff:+.4f}, "
                     + ("comparable" if comparable else "NOT comparable") + f" (within {REPRO}).")  # fmt: skip
    else:
        rules["3_reproduction"] = None
        lines.append("Rule 3: not measured.")

    # rule 4: wr on the hybrid
    if WR not in by:
        raise SystemExit(f"no {WR} row passed rules 1-2; nothing to compare")
    wr = mccs(rows, WR)
    a = apart(wr, mccs(rows, HYBRID), MARGIN)
    rules["4_wr_on_hybrid"] = a
    lines.append(f"Rule 4: {WR} ({span(wr)}, mean {by[WR]['mcc']['mean']:.4f}) against {HYBRID} "
                 f"({span(mccs(rows, HYBRID))}, mean {by[HYBRID]['mcc']['mean']:.4f}): {a}.")  # fmt: skip
    if rules["3_reproduction"] and not rules["3_reproduction"]["comparable"]:
        b = apart(wr, [h0[0]["trained"]["mcc"]], MARGIN)
        rules["4_against_h0"] = b
        lines.append(f"Rule 4 against the hybrid alone (seed 0, one seed): {b}.")

    # rule 5: beside it
    s = by[WR]
    control = max(s["mcc_untrained"]["max"], s["mcc_random_at_l0"]["max"])
    rules["5_beside"] = {n: apart(wr, mccs(rows, n), MARGIN) for n in BESIDE}
    rules["5_beside"].update({
        "best_control": control, "above_controls": s["mcc"]["min"] > control + MARGIN,
        "l0": s["l0"]["mean"], "l0_inside": L0_WINDOW[0] <= s["l0"]["mean"] <= L0_WINDOW[1],
        "dead_latents_max": s["dead_latents"]["max"]})  # fmt: skip
    for n in BESIDE:
        lines.append(f"Rule 5: {WR} against {n} ({span(mccs(rows, n))}): {rules['5_beside'][n]}.")
    b5 = rules["5_beside"]
    lines.append(f"Rule 5: controls: worst seed {s['mcc']['min']:.4f} against the best control seed "
                 f"{control:.4f}: " + ("above" if b5["above_controls"] else "NOT above")
                 + f"; L0 {b5['l0']:.1f} " + ("inside" if b5["l0_inside"] else "OUTSIDE")
                 + f" {L0_WINDOW[0]}-{L0_WINDOW[1]}; dead latents at most "
                 f"{b5['dead_latents_max']:.0f}; F1 {s['f1']['mean']:.3f}; features covered "
                 f"{s['features_covered']['mean']:.0f}.")  # fmt: skip

    table = [by[n] for n in (WR, HYBRID, *BESIDE) if n in by]
    h0_row = ({**summarise(h0)[0], "variant": f"{HYBRID} (alone, seed 0)", "seeds": 1}
              if h0 else None)  # fmt: skip
    return {"steps": STEPS, "summary": table, "h0": h0_row, "rules": rules, "lines": lines}


def main() -> None:
    """Print the table and the rules' lines; write docs/eval/synthetic/gpu16k-wr-hybrid.json."""
    out = evaluate()
    cols = [*COLUMNS[:6], ("feature F1", "feature_f1", 3), *COLUMNS[6:]]
    print_report(out, cols, "gpu16k-wr-hybrid.json", out["summary"] + [out["h0"]] * bool(out["h0"]))


if __name__ == "__main__":
    main()
