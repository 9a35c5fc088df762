"""A hundredth of the InfoMax weights at width 16,384 on the 16k synthetic model (issue 18): the
table and the rules of docs/eval/synthetic/gpu16k-width16k-im001-PLAN.md (fixed before the
runs), from the files in docs/eval/synthetic/gpu16k-width16k/ (seventeenth session):
`c7-i0.json`, `c7-i1.json` (call 7, nvidia-h200-x2, one process per GPU: seeds 0 and 1 of
`encoder-im0.01`) and `c8-i2.json` (call 8, GPU 0: seed 2).

The rows are gpu16k_seeds_table.py's width-16,384 rows (`WIDE_FILES`, checked by `wide_rows`:
26,818 steps, the untrained MCC exactly `WIDE_INIT` of the seed or, for seed 2, the same in
every seed-2 row), so this script and the seeds table's "width16k" entry read the same rows.
Beside them: `encoder`, `encoder-wr`, the hybrid `tied-topk-im-3.0` and `tied-topk` at the same
width (3 seeds each), and `encoder-im0.01` at width 4,096 (`load_rows`).

Run from the repository root: python docs/eval/synthetic/gpu16k_width16k_im001_table.py
Prints the markdown tables and each rule's outcome; writes
docs/eval/synthetic/gpu16k-width16k-im001.json.
"""

# the script's folder is on sys.path
import gpu16k_seeds_table as T

from implicit_em.eval.synthetic import summarise
from implicit_em.eval.verdict import MARGIN, apart

IM = "encoder-im0.01"
PER_SEED = ("encoder", "encoder-wr")  # rule 3: against these rows of the same seed
OVER_SEEDS = ("encoder", "encoder-wr", "tied-topk-im-3.0", "tied-topk")  # rule 4


def side(value: float, lo: float, hi: float) -> str:
    """One seed against a range: "above" when value > hi + MARGIN, "below" when value < lo -
    MARGIN, else "level" (the plan's rule 3, margin 0.01)."""
    return "above" if value > hi + MARGIN else "below" if value < lo - MARGIN else "level"


def evaluate() -> dict:
    """The plan's rules on the committed files: {"summary" (`summarise` of the width-16,384
    rows and the width-4,096 row), "per_seed" (rule 3), "rules", "lines"}."""
    raw = {f: T.read_rows(T.WIDE / f, names, T.WIDE_LATENTS) for f, names in T.WIDE_FILES.items()}
    wide = T.wide_rows(raw)  # rules 1-2 for every width-16,384 row; a failing row is printed
    n_raw = sum(r["variant"] == IM for rows in raw.values() for r in rows)
    new = [r for r in wide if r["variant"] == IM]
    lines = [f"Rules 1-2 (init exact, {T.WIDE_STEPS:,} steps): {len(new)} of {n_raw} {IM} rows "
             "pass; untrained MCC by seed "
             + ", ".join(f"{r['seed']}: {r['untrained']['mcc']!r}" for r in new) + "."]  # fmt: skip
    if not new:
        raise SystemExit(f"no {IM} row passed rules 1-2; nothing to compare")
    by = {s["variant"]: s for s in summarise(wide)}

    def mccs(name: str) -> list[float]:
        return [r["trained"]["mcc"] for r in wide if r["variant"] == name]

    # rule 3: per seed, against its controls and the encoder rows of the same seed
    per_seed = []
    for r in sorted(new, key=lambda r: r["seed"]):
        m, c = r["trained"]["mcc"], (r["untrained"]["mcc"], r["trained"]["random_at_l0"]["mcc"])
        same = {n: next(x["trained"]["mcc"] for x in wide
                        if x["variant"] == n and x["seed"] == r["seed"]) for n in PER_SEED}  # fmt: skip
        per_seed.append({"seed": r["seed"], "mcc": m, "controls": side(m, min(c), max(c)),
                         "untrained": c[0], "random_at_l0": c[1],
                         **{n: {"mcc": v, "reading": side(m, v, v), "difference": m - v}
                            for n, v in same.items()}})  # fmt: skip
        lines.append(f"Rule 3: seed {r['seed']} {m:.4f}: {per_seed[-1]['controls']} its controls "
                     f"(untrained {c[0]:.4f}, random@L0 {c[1]:.4f}); "
                     + "; ".join(f"{n} {v:.4f}: {side(m, v, v)} ({m - v:+.4f})"
                                 for n, v in same.items()) + ".")  # fmt: skip

    # rule 4: over the seeds
    rules = {"3_per_seed": per_seed,
             "4_over_seeds": {n: apart(mccs(IM), mccs(n), MARGIN) for n in OVER_SEEDS},
             "4_above_controls_every_seed": all(p["controls"] == "above" for p in per_seed)}  # fmt: skip
    carries = rules["4_over_seeds"]["encoder"] == "above"
    rules["4_reading"] = ("the weaker volume control carries to width 16,384" if carries else
                          "the weaker volume control does not carry to width 16,384")  # fmt: skip
    lines.append(f"Rule 4: {IM} ({len(mccs(IM))} seeds, {min(mccs(IM)):.4f}-{max(mccs(IM)):.4f}) "
                 "against " + "; ".join(
                     f"{n} ({min(mccs(n)):.4f}-{max(mccs(n)):.4f}): {a}"
                     for n, a in rules["4_over_seeds"].items())
                 + f": {rules['4_reading']}; "
                 + ("above" if rules["4_above_controls_every_seed"] else "NOT above")
                 + " its controls on every seed.")  # fmt: skip

    # rule 5: beside it, and the row at width 4,096
    narrow = next(s for s in summarise([r for r in T.load_rows() if r["variant"] == IM]))
    s = by[IM]
    rules["5_beside"] = {k: s[k]["mean"] for k in ("l0", "dead_latents", "f1", "feature_f1",
                                                   "features_covered")}  # fmt: skip
    rules["5_beside"]["width_4096"] = {k: narrow[k]["mean"] for k in ("mcc", "l0")}
    lines.append(f"Rule 5: L0 {s['l0']['mean']:.1f} (width 4,096: {narrow['l0']['mean']:.1f}); "
                 f"dead at most {s['dead_latents']['max']:.0f}; F1 {s['f1']['mean']:.3f}; feature "
                 f"F1 {s['feature_f1']['mean']:.3f}; features covered "
                 f"{s['features_covered']['mean']:.0f}; MCC at width 4,096 "
                 f"{narrow['mcc']['mean']:.4f}.")  # fmt: skip

    table = [by[n] for n in (IM, *OVER_SEEDS)] + [{**narrow, "variant": f"{IM} (width 4,096)"}]
    return {"latents": T.WIDE_LATENTS, "steps": T.WIDE_STEPS, "summary": table,
            "detection": T.detection_rows(new, (IM,)), "rules": rules, "lines": lines}  # fmt: skip


def main() -> None:
    """Print the tables and the rules' lines; write
    docs/eval/synthetic/gpu16k-width16k-im001.json."""
    out = evaluate()
    cols = [*T.COLUMNS[:6], ("feature F1", "feature_f1", 3), *T.COLUMNS[6:]]
    T.print_report(out, cols, "gpu16k-width16k-im001.json")


if __name__ == "__main__":
    main()
