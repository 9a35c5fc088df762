"""The theory variants on the 16k synthetic model at 49.1 M samples (issue 18): the table and
the plan's rules (docs/eval/synthetic/gpu16k-variants-PLAN.md, fixed before the runs), from the
files in docs/eval/synthetic/gpu16k-variants/:

- `c1-f1.json`: call 1, process F1 (fast step, seed 0): `encoder` (the reproduction check),
  `encoder-softplus`, `encoder-unit-rows`. Call 1's three other processes ran out of GPU memory
  at their first sample chunk (`c1-f2.log`, `c1-p1.log`, `c1-p2.log`).
- `c2-f2.json`, `c2-p1.json`, `c2-p2.json`: call 2, three processes on the one GPU, seed 0:
  `encoder-wr` (fast step), `encoder-centred` and `encoder-wr-centred` (`--plain-step`).
- `c3-s1.json`, `c4-s2.json`: calls 3 and 4, `encoder-wr` seeds 1 and 2, each alone on the GPU.
- `c5-p1.json`, `c5-p2.json`: the eighth session's call (gpu16k-centred-PLAN.md): `encoder-centred`
  and `encoder-wr-centred` to the full length, each alone on one GPU of an x2, seed 0.
- `c6-s1.json`, `c6-u1.json`: the plan's fourth entry, seed 1 of `encoder-softplus` and
  `encoder-unit-rows`; its `--budget 200` left room for about 22,000 steps only (short).
- `c7-s1.json`, `c7-u1.json`: the ninth session's call (gpu16k-width16k-PLAN.md rule 5): seed 1
  of `encoder-softplus` and `encoder-unit-rows` again, to the full length, each alone on one
  GPU of an x2 (`--budget 320`).

The committed reference encoder (3 seeds, gpu16k-converged.md section 4) comes from
docs/eval/synthetic/gpu16k-converged/ (`rows/results.json` for seed 0, `seeds/seed{1,2}.json`).

Run from the repository root: python docs/eval/synthetic/gpu16k_variants_table.py
Prints the markdown table and each rule's outcome; writes
docs/eval/synthetic/gpu16k-variants.json.
"""

import json
from pathlib import Path

from gpu16k_seeds_table import COLUMNS  # the script's folder is on sys.path

from implicit_em.eval.synthetic import _fmt, summarise
from implicit_em.eval.verdict import MARGIN, apart

ROOT = Path("docs/eval/synthetic")
RUN = ROOT / "gpu16k-variants"
REF = ROOT / "gpu16k-converged"
STEPS = 47927  # 49.1 M samples at batch 1,024: the length of the committed rows
FILES = ("c1-f1.json", "c2-f2.json", "c2-p1.json", "c2-p2.json", "c3-s1.json", "c4-s2.json",
         "c5-p1.json", "c5-p2.json", "c6-s1.json", "c6-u1.json", "c7-s1.json", "c7-u1.json")
TWINS = {"encoder-centred": "encoder", "encoder-wr-centred": "encoder-wr"}  # centred: uncentred
CHECK_MCC, CHECK_L0 = 0.002, 0.02  # rule 1: this call's encoder against section 4's seed 0


def load() -> tuple[list[dict], list[dict]]:
    """(this plan's rows, the committed encoder rows), every row with its steps_done."""
    new = [r for f in FILES for r in json.loads((RUN / f).read_text())["rows"]]
    ref_files = (REF / "rows" / "results.json", REF / "seeds" / "seed1.json",
                 REF / "seeds" / "seed2.json")  # fmt: skip
    ref = [r for f in ref_files for r in json.loads(f.read_text())["rows"]
           if r["variant"] == "encoder"]  # fmt: skip
    if sorted(r["seed"] for r in ref) != [0, 1, 2] or any(r["steps_done"] != STEPS for r in ref):
        raise SystemExit("the committed encoder rows are not seeds 0-2 at 47927 steps")
    return new, ref


def main() -> None:
    new, ref = load()
    lines, rules = [], {}
    # rule 1: the reproduction check
    mine = next(r for r in new if r["variant"] == "encoder" and r["seed"] == 0)
    old = next(r for r in ref if r["seed"] == 0)
    d_mcc = mine["trained"]["mcc"] - old["trained"]["mcc"]
    d_l0 = mine["trained"]["l0"] / old["trained"]["l0"] - 1
    ok = abs(d_mcc) <= CHECK_MCC and abs(d_l0) <= CHECK_L0
    rules["1_reproduction"] = {"passed": ok, "mcc_diff": d_mcc, "l0_rel_diff": d_l0}
    lines.append(f"Rule 1 (reproduction check): this call's encoder seed 0 MCC "
                 f"{mine['trained']['mcc']:.4f} L0 {mine['trained']['l0']:.1f} against section "
                 f"4's {old['trained']['mcc']:.4f} L0 {old['trained']['l0']:.1f} (MCC "
                 f"{d_mcc:+.4f}, L0 {100 * d_l0:+.2f} %): {'passed' if ok else 'FAILED'}.")  # fmt: skip
    # rule 2: rows short of the planned length (reported, never compared)
    short = [r for r in new if r["steps_done"] != STEPS]
    rules["2_short"] = [{"variant": r["variant"], "seed": r["seed"], "steps": r["steps_done"],
                         "samples": r["samples"]} for r in short]  # fmt: skip
    for r in short:
        lines.append(f"Rule 2: {r['variant']} seed {r['seed']} stopped at {r['steps_done']} steps "
                     f"({r['samples'] / 1e6:.1f} M samples): reported, not compared.")  # fmt: skip
    full = [r for r in new if r["steps_done"] == STEPS and r["variant"] != "encoder"]
    summary = summarise([{**r, "variant": "encoder (section 4)"} for r in ref])
    summary += summarise([{**r, "variant": "encoder (this call)"} for r in [mine]])
    summary += summarise(full)
    summary += summarise([{**r, "variant": f"{r['variant']} (short)"} for r in short])
    # rule 3: a lift over this call's encoder by more than MARGIN; seed ranges for >1 seed
    base = mine["trained"]["mcc"]
    rules["3_lift"] = {}
    for s in summarise(full):
        name = s["variant"]
        row0 = next(r for r in full if r["variant"] == name and r["seed"] == 0)
        seed0, l0_0 = row0["trained"]["mcc"], row0["trained"]["l0"]
        lift = seed0 - base > MARGIN
        vals = [r["trained"]["mcc"] for r in full if r["variant"] == name]
        ref_vals = [r["trained"]["mcc"] for r in ref]
        over_ref = apart(vals, ref_vals, MARGIN) if s["seeds"] > 1 else None
        rules["3_lift"][name] = {"seed0_mcc": seed0, "diff": seed0 - base, "lifts": lift,
                                 "seeds": s["seeds"], "seed0_l0": l0_0,
                                 "against_section4_seeds": over_ref}  # fmt: skip
        extra = f"; over section 4's three seeds: {over_ref}" if over_ref else ""
        lines.append(f"Rule 3: {name} seed 0 {seed0:.4f} ({seed0 - base:+.4f} against this call's "
                     f"encoder) at L0 {l0_0:.1f}: "
                     f"{'lifts' if lift else 'does not lift'}{extra}.")  # fmt: skip
    # gpu16k-centred-PLAN.md rule 2: each full-length centred row against its uncentred twin's
    # seed 0 (same stream and init); "changes" beyond MARGIN in either direction, else "level"
    rules["centred_twins"] = {}
    for name, twin in TWINS.items():
        row = next(r for r in full if r["variant"] == name and r["seed"] == 0)
        other = mine if twin == "encoder" else next(
            r for r in full if r["variant"] == twin and r["seed"] == 0)  # fmt: skip
        d = row["trained"]["mcc"] - other["trained"]["mcc"]
        rules["centred_twins"][name] = {"mcc": row["trained"]["mcc"], "twin": twin,
                                        "twin_mcc": other["trained"]["mcc"], "diff": d,
                                        "l0": row["trained"]["l0"], "twin_l0": other["trained"]["l0"],
                                        "changes": abs(d) > MARGIN}  # fmt: skip
        lines.append(f"Centred plan, rule 2: {name} seed 0 {row['trained']['mcc']:.4f} at L0 "
                     f"{row['trained']['l0']:.1f} against {twin} {other['trained']['mcc']:.4f} at L0 "
                     f"{other['trained']['l0']:.1f} ({d:+.4f}): "
                     f"{'changes' if abs(d) > MARGIN else 'level'}.")  # fmt: skip
    # gpu16k-width16k-PLAN.md rule 5: seed 1 of softplus / unit rows (c7) against seed 1 of the
    # committed encoder, by gpu16k-variants-PLAN.md's rule 3 (a lift is > MARGIN above)
    rules["width16k_rule5"] = {}
    base1 = next(r for r in ref if r["seed"] == 1)["trained"]["mcc"]
    for name in ("encoder-softplus", "encoder-unit-rows"):
        row = next(r for r in full if r["variant"] == name and r["seed"] == 1)
        d = row["trained"]["mcc"] - base1
        rules["width16k_rule5"][name] = {"seed1_mcc": row["trained"]["mcc"], "diff": d,
                                         "lifts": d > MARGIN}  # fmt: skip
        lines.append(f"Width-16k plan, rule 5: {name} seed 1 {row['trained']['mcc']:.4f} at L0 "
                     f"{row['trained']['l0']:.1f} against section 4's encoder seed 1 "
                     f"{base1:.4f} ({d:+.4f}): {'lifts' if d > MARGIN else 'does not lift'}.")
    cols = [("samples (M)", None, 1), *COLUMNS]
    samples = {r["variant"]: r["samples"] for r in full}
    samples.update({f"{r['variant']} (short)": r["samples"] for r in short})
    samples.update({"encoder (section 4)": STEPS * 1024, "encoder (this call)": mine["samples"]})
    print("| variant | seeds | " + " | ".join(c[0] for c in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for s in summary:
        cells = [f"{samples[s['variant']] / 1e6:.1f}"]
        cells += [_fmt(s[key], nd) for _, key, nd in cols[1:]]
        print(f"| {s['variant']} | {s['seeds']} | " + " | ".join(cells) + " |")
    print()
    print("\n".join(f"- {x}" for x in lines))
    out = {"steps": STEPS, "summary": summary, "samples": samples, "rules": rules,
           "lines": lines}  # fmt: skip
    (ROOT / "gpu16k-variants.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
