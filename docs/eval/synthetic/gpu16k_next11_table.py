"""wr in combination and the third seeds on the 16k synthetic model (issue 18): the table and
the rules of docs/eval/synthetic/gpu16k-next11-PLAN.md (fixed before the runs), from the
files in docs/eval/synthetic/gpu16k-next11/ (eleventh session, nvidia-h200-x2):

- `n1-w0.json`, `n1-w1.json`: call 1, seeds 0 and 1 of `encoder-wr-softplus` and
  `encoder-wr-unit-rows` (two rows in lockstep per process, fast step).
- `n2-a2.json`, `n2-b2.json`: call 2, seed 2 of the two combinations, `encoder-softplus`,
  `encoder-unit-rows`, `topk-k214` and `tied-topk-k214`.
- `n3-c1.json`, `n3-d1.json`: call 3, seed 1 of `encoder-centred` and `encoder-wr-centred`
  (plain step, one row per GPU). Call 4 (their seed 2) did not fit the eleventh session's
  budget.
- `n4-c2.json`, `n4-d2.json` (thirteenth session, one H200: call 4 split into two one-GPU
  calls, the same command with `CUDA_VISIBLE_DEVICES=0`): seed 2 of `encoder-centred` and
  `encoder-wr-centred`.
- `n6-p1.json` (thirteenth session, one H200; the plan's "Not in this session's 30 minutes"
  item, its rule fixed there): seed 1 of `topk-pretrained` and `topk-half` in lockstep.
- `n7-h1.json`, `n7-h2.json` (fourteenth session, nvidia-h200-x2; the plan's "The harness
  seeds" command): seeds 1 and 2 of `batchtopk-k25-sl-all` to 200 M samples (195,313 steps),
  rules 8 and 9 (not in the table: another length).
- `n8-p2.json` (fourteenth session, GPU 1 of nvidia-h200-x2, the plan's p2 line): seed 2 of
  `topk-pretrained` and `topk-half`.
- `n5-r0.json`: call 5 (rule 11), `encoder-wr` seed 0 again, today's statistics layout, against
  gpu16k-variants `c2-f2.json` (the old layout). Not a new seed: it is left out of the table.

The committed rows the rules read (the plan's list): gpu16k-converged/ (encoder seeds 0-2),
gpu16k-variants/ (encoder-wr, softplus, unit rows, centred rows), gpu16k-matched-l0/ (the
k = 214 SAEs).

Run from the repository root: python docs/eval/synthetic/gpu16k_next11_table.py
Prints the markdown table and each rule's outcome; writes
docs/eval/synthetic/gpu16k-next11.json.
"""

import json
import statistics
from pathlib import Path

from gpu16k_seeds_table import COLUMNS  # the script's folder is on sys.path

from implicit_em.eval.synthetic import _fmt, summarise
from implicit_em.eval.verdict import MARGIN, apart

ROOT = Path("docs/eval/synthetic")
STEPS = 47927  # 49.1 M samples at batch 1,024
NEW = ROOT / "gpu16k-next11"
NEW_FILES = ("n1-w0.json", "n1-w1.json", "n2-a2.json", "n2-b2.json", "n3-c1.json", "n3-d1.json",
             "n4-c2.json", "n4-d2.json", "n6-p1.json", "n8-p2.json")  # fmt: skip
# the committed rows: file -> the variants read from it
OLD = {
    "gpu16k-converged/rows/results.json": ("encoder",),
    "gpu16k-converged/seeds/seed1.json": ("encoder",),
    "gpu16k-converged/seeds/seed2.json": ("encoder",),
    "gpu16k-variants/c2-f2.json": ("encoder-wr",),
    "gpu16k-variants/c3-s1.json": ("encoder-wr",),
    "gpu16k-variants/c4-s2.json": ("encoder-wr",),
    "gpu16k-variants/c1-f1.json": ("encoder-softplus", "encoder-unit-rows"),
    "gpu16k-variants/c7-s1.json": ("encoder-softplus",),
    "gpu16k-variants/c7-u1.json": ("encoder-unit-rows",),
    "gpu16k-variants/c5-p1.json": ("encoder-centred",),
    "gpu16k-variants/c5-p2.json": ("encoder-wr-centred",),
    "gpu16k-matched-l0/m.json": ("topk-k214", "tied-topk-k214"),
    "gpu16k-matched-l0/m1.json": ("topk-k214", "tied-topk-k214"),
    "gpu16k-matched-l0/p.json": ("topk-pretrained",),
    "gpu16k-matched-l0/h.json": ("topk-half",),
}
# rule 1: the untrained MCC of every row of a seed (the plan's values, exact)
INIT = {0: 0.14807778596878052, 1: 0.14800229668617249, 2: 0.14777010679244995}
COMBOS = {"encoder-wr-softplus": "encoder-softplus", "encoder-wr-unit-rows": "encoder-unit-rows"}
THIRD = ("encoder-softplus", "encoder-unit-rows")  # rule 5
CENTRED = {"encoder-centred": "encoder", "encoder-wr-centred": "encoder-wr"}  # rule 6
SAES = ("topk-k214", "tied-topk-k214")  # rule 7
L0_WINDOW = (160, 268)  # rule 7
PRETRAINED = ("topk-pretrained", "topk-half")  # the plan's rule for its seeds 1 and 2
# rules 8 and 9: the harness seeds at 200 M
HARNESS = {1: "n7-h1.json", 2: "n7-h2.json"}
HARNESS_SEED0 = "harness-gap/gpu200m/ref.json"  # seed 0 at 200 M (ninth session)
HARNESS_AT49 = "gpu16k-converged/seeds/seed{}.json"  # seeds 1 and 2 at 49.1 M (rule 9)
HARNESS_STEPS = 195313  # ceil(200e6 / 1,024)
HARNESS_INIT = {1: 0.1480361372232437, 2: 0.1479351669549942}  # rule 1, the harness row
PUBLISHED = (0.7574, 0.0003)  # SAELens docs synth_sae_bench.md: BatchTopK, width 4,096, L0 25


def load() -> tuple[list[dict], list[dict]]:
    """(this session's rows, the committed rows), each row tagged with its file. Exits with
    one line naming the file when a results file is missing or unreadable."""
    new = [{**r, "file": f} for f in NEW_FILES for r in _rows(NEW / f)]
    old = [{**r, "file": f} for f, names in OLD.items()
           for r in _rows(ROOT / f) if r["variant"] in names]  # fmt: skip
    for f, names in OLD.items():
        if not all(any(r["file"] == f and r["variant"] == n for r in old) for n in names):
            raise SystemExit(f"{ROOT / f}: a committed row the plan names is missing")
    return new, old


def _rows(path: Path) -> list[dict]:
    try:
        return json.loads(path.read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"{path}: not a readable results file ({e}); restore it from git") from None


def mccs(rows: list[dict], name: str) -> list[float]:
    """The trained MCC of every row named `name`, one per seed."""
    return [r["trained"]["mcc"] for r in rows if r["variant"] == name]


def main() -> None:
    """Apply the plan's rules, print the table and the rules' lines, write the JSON."""
    new, old = load()
    lines, rules = [], {"1_init": [], "2_short": []}
    ok = []
    for r in new:  # rules 1 and 2
        init = r["untrained"]["mcc"]
        passed = init == INIT[r["seed"]]
        rules["1_init"].append({"variant": r["variant"], "seed": r["seed"], "untrained": init,
                                "expected": INIT[r["seed"]], "passed": passed})  # fmt: skip
        if not passed:
            lines.append(
                f"Rule 1: {r['variant']} seed {r['seed']} untrained MCC {init!r} "
                f"against {INIT[r['seed']]!r}: FAILED (reported, not compared)."
            )
        if r["steps_done"] != STEPS:
            rules["2_short"].append({"variant": r["variant"], "seed": r["seed"],
                                     "steps": r["steps_done"]})  # fmt: skip
            lines.append(
                f"Rule 2: {r['variant']} seed {r['seed']} stopped at "
                f"{r['steps_done']} steps: reported, not compared."
            )
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
    summary = summarise(rows)
    by = {s["variant"]: s for s in summary}

    def seeds_word(n: str) -> str:
        k = len(seeds_of[n])
        return f"{k} seed" + ("s" if k != 1 else "")

    # rules 3 and 4: wr in combination
    rules["3_against_wr"], rules["4_against_base"] = {}, {}
    words3 = {"above": "lifts over wr alone", "below": "costs against wr alone",
              "level": "matches wr alone"}  # fmt: skip
    for c, base in COMBOS.items():
        a = apart(mccs(rows, c), mccs(rows, "encoder-wr"), MARGIN)
        rules["3_against_wr"][c] = {"apart": a, "seeds": seeds_of[c]}
        lines.append(f"Rule 3: {c} ({seeds_word(c)}, MCC {by[c]['mcc']['min']:.4f}-"
                     f"{by[c]['mcc']['max']:.4f}, L0 {by[c]['l0']['mean']:.1f}) against "
                     f"encoder-wr ({seeds_word('encoder-wr')}, {by['encoder-wr']['mcc']['min']:.4f}-"
                     f"{by['encoder-wr']['mcc']['max']:.4f}, L0 {by['encoder-wr']['l0']['mean']:.1f})"
                     f": {a}, {words3[a]}.")  # fmt: skip
        b = apart(mccs(rows, c), mccs(rows, base), MARGIN)
        s = by[c]
        control = max(s["mcc_untrained"]["max"], s["mcc_random_at_l0"]["max"])
        above_controls = s["mcc"]["min"] > control + MARGIN
        rules["4_against_base"][c] = {"base": base, "apart": b, "above_controls": above_controls,
                                      "best_control": control}  # fmt: skip
        lines.append(f"Rule 4: {c} against {base} ({seeds_word(base)}, "
                     f"{by[base]['mcc']['min']:.4f}-{by[base]['mcc']['max']:.4f}): {b}, "
                     + ("wr lifts this variant too" if b == "above"
                        else "wr's lift does not carry over to this variant")
                     + f"; {'above' if above_controls else 'not above'} its controls (best control "
                     f"seed {control:.4f}).")  # fmt: skip

    # rule 5: third seeds of softplus and unit rows against the encoder's three
    def range_check(name: str, new_seed: int) -> str | None:
        olds = [r["trained"]["mcc"] for r in old if r["variant"] == name]
        val = next((r["trained"]["mcc"] for r in ok if r["variant"] == name
                    and r["seed"] == new_seed), None)  # fmt: skip
        if val is None or not olds:
            return None
        inside = min(olds) - MARGIN <= val <= max(olds) + MARGIN
        return "inside" if inside else "outside its seed range"

    rules["5_third_seeds"] = {}
    for n in THIRD:
        a = apart(mccs(rows, n), mccs(rows, "encoder"), MARGIN)
        rng = range_check(n, 2)
        rules["5_third_seeds"][n] = {"apart": a, "seeds": seeds_of[n], "seed2_range": rng}
        lines.append(f"Rule 5: {n} ({seeds_word(n)}, {by[n]['mcc']['min']:.4f}-"
                     f"{by[n]['mcc']['max']:.4f}) against encoder ({seeds_word('encoder')}, "
                     f"{by['encoder']['mcc']['min']:.4f}-{by['encoder']['mcc']['max']:.4f}): {a}; "
                     f"the standing reading 'does not lift' "
                     f"{'changes' if a == 'above' else 'stays'}; seed 2 {rng}.")  # fmt: skip

    # rule 6: centred rows against their uncentred rows
    rules["6_centred"] = {}
    for n, twin in CENTRED.items():
        a = apart(mccs(rows, n), mccs(rows, twin), MARGIN)
        rng = range_check(n, 1)
        rng2 = range_check(n, 2)
        rules["6_centred"][n] = {"twin": twin, "apart": a, "seeds": seeds_of[n],
                                 "seed1_range": rng, "seed2_range": rng2}  # fmt: skip
        word = {"level": "level (the standing reading stays)", "above": "centring lifts",
                "below": "centring costs"}[a]  # fmt: skip
        lines.append(f"Rule 6: {n} ({seeds_word(n)}, {by[n]['mcc']['min']:.4f}-"
                     f"{by[n]['mcc']['max']:.4f}, L0 {by[n]['l0']['mean']:.1f}) against {twin} "
                     f"({seeds_word(twin)}, {by[twin]['mcc']['min']:.4f}-"
                     f"{by[twin]['mcc']['max']:.4f}): {word}; seed 1 {rng}"
                     + (f"; seed 2 {rng2}" if rng2 else "") + ".")  # fmt: skip

    # rule 7: third seed of the k = 214 SAEs against the encoder's three
    rules["7_k214"] = {}
    for n in SAES:
        l0s = [r["trained"]["l0"] for r in rows if r["variant"] == n]
        in_window = all(L0_WINDOW[0] <= v <= L0_WINDOW[1] for v in l0s)
        a = apart(mccs(rows, n), mccs(rows, "encoder"), MARGIN)
        rng = range_check(n, 2)
        rules["7_k214"][n] = {"apart": a, "seeds": seeds_of[n], "l0_in_window": in_window,
                              "dead_max": by[n]["dead_latents"]["max"], "seed2_range": rng}  # fmt: skip
        lines.append(f"Rule 7: {n} ({seeds_word(n)}, {by[n]['mcc']['min']:.4f}-"
                     f"{by[n]['mcc']['max']:.4f}, L0 {by[n]['l0']['mean']:.1f}"
                     f"{'' if in_window else ' OUTSIDE 160-268'}, dead at most "
                     f"{by[n]['dead_latents']['max']:.0f}) against encoder: {a}; the standing "
                     f"reading 'the SAE beats the encoder at its L0' "
                     f"{'stays' if a == 'above' else 'changes'}; seed 2 {rng}.")  # fmt: skip

    # the plan's rule for the pre-training seeds ("Not in this session's 30 minutes")
    pre, half = PRETRAINED
    a = apart(mccs(rows, pre), mccs(rows, half), MARGIN)
    rules["pretrained"] = {"apart": a, "seeds": seeds_of[pre], "seeds_control": seeds_of[half],
                           "seed1_range": range_check(pre, 1),
                           "seed2_range": range_check(pre, 2)}  # fmt: skip
    lines.append(f"Pre-training rule: {pre} ({seeds_word(pre)}, {by[pre]['mcc']['min']:.4f}-"
                 f"{by[pre]['mcc']['max']:.4f}, L0 {by[pre]['l0']['mean']:.1f}, dead at most "
                 f"{by[pre]['dead_latents']['max']:.0f}) against {half} ({seeds_word(half)}, "
                 f"{by[half]['mcc']['min']:.4f}-{by[half]['mcc']['max']:.4f}, L0 "
                 f"{by[half]['l0']['mean']:.1f}): {a}; the standing reading 'pre-training costs "
                 f"against the same TopK steps' {'stays' if a == 'below' else 'changes'}; seed 1 "
                 f"{rules['pretrained']['seed1_range']}; seed 2 "
                 f"{rules['pretrained']['seed2_range']}.")  # fmt: skip

    # rule 11: the same-seed re-run under the new statistics layout (call 5)
    again = json.loads((NEW / "n5-r0.json").read_text())["rows"][0]
    first = next(r for r in old if r["variant"] == "encoder-wr" and r["seed"] == 0)
    d_mcc = again["trained"]["mcc"] - first["trained"]["mcc"]
    d_l0 = again["trained"]["l0"] / first["trained"]["l0"] - 1
    init_ok = again["untrained"]["mcc"] == INIT[0] and again["steps_done"] == STEPS
    within = init_ok and abs(d_mcc) <= 0.002 and abs(d_l0) <= 0.02
    rules["11_layout"] = {"init_and_length": init_ok, "mcc": again["trained"]["mcc"],
                          "mcc_first": first["trained"]["mcc"], "mcc_diff": d_mcc,
                          "l0": again["trained"]["l0"], "l0_first": first["trained"]["l0"],
                          "l0_rel_diff": d_l0, "within_tolerance": within}  # fmt: skip
    lines.append(f"Rule 11: encoder-wr seed 0 re-run under the 512-row shifted layout: MCC "
                 f"{again['trained']['mcc']:.4f} L0 {again['trained']['l0']:.1f} against "
                 f"{first['trained']['mcc']:.4f} L0 {first['trained']['l0']:.1f} (MCC {d_mcc:+.4f}, "
                 f"L0 {100 * d_l0:+.2f} %; init {'passed' if init_ok else 'FAILED'}): "
                 + ("the layout change moves a full-length row by less than the reproduction "
                    "tolerance" if within else "the layout moves a full-length row beyond the "
                    "reproduction tolerance") + ".")  # fmt: skip

    harness_rules(rules, lines)

    order = ["encoder", "encoder-wr", *COMBOS, *THIRD, *CENTRED, *SAES, *PRETRAINED]
    summary = [by[n] for n in order]
    print("| variant | seeds | " + " | ".join(c[0] for c in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for s in summary:
        cells = [_fmt(s[key], nd) for _, key, nd in COLUMNS]
        print(f"| {s['variant']} | {s['seeds']} | " + " | ".join(cells) + " |")
    print()
    print("\n".join(f"- {x}" for x in lines))
    out = {"steps": STEPS, "seeds": seeds_of, "summary": summary, "rules": rules, "lines": lines}
    (ROOT / "gpu16k-next11.json").write_text(json.dumps(out, indent=1) + "\n")


def harness_rules(rules: dict, lines: list[str]) -> None:
    """Rules 8 and 9 of the plan: the 3-seed mean of `batchtopk-k25-sl-all` at 200 M against
    the published 0.7574 +- 0.0003, and the same seeds at 49.1 M beside it. Adds
    rules["8_harness"] and its lines (rule 1's and rule 2's checks of the two new rows too)."""
    row = "batchtopk-k25-sl-all"
    ref = json.loads((ROOT / HARNESS_SEED0).read_text())
    mcc = {0: ref["trained"]["mcc"]}
    f1 = {0: ref["trained"]["f1"]}
    checks = []
    for seed, f in HARNESS.items():
        r = next(x for x in _rows(NEW / f) if x["variant"] == row)
        ok = r["untrained"]["mcc"] == HARNESS_INIT[seed] and r["steps_done"] == HARNESS_STEPS
        checks.append({"seed": seed, "untrained": r["untrained"]["mcc"],
                       "expected": HARNESS_INIT[seed], "steps": r["steps_done"], "passed": ok})  # fmt: skip
        lines.append(f"Rules 1-2, harness seed {seed}: untrained MCC {r['untrained']['mcc']!r} "
                     f"against {HARNESS_INIT[seed]!r}, {r['steps_done']} steps: "
                     + ("passed" if ok else "FAILED (reported, not compared)") + ".")  # fmt: skip
        if ok:
            mcc[seed], f1[seed] = r["trained"]["mcc"], r["trained"]["f1"]
    vals = list(mcc.values())
    mean = statistics.mean(vals)
    sd = statistics.stdev(vals) if len(vals) > 1 else None
    gap = abs(mean - PUBLISHED[0])
    word = ("within the published spread" if gap <= PUBLISHED[1]
            else "within our tolerance" if gap <= MARGIN else "not reproduced")  # fmt: skip
    at49 = {}
    for seed in HARNESS:
        r = next(x for x in _rows(ROOT / HARNESS_AT49.format(seed)) if x["variant"] == row)
        at49[seed] = r["trained"]["mcc"]
    rules["8_harness"] = {"checks": checks, "mcc_200m": mcc, "f1_200m": f1, "mean": mean,
                          "sd": sd, "published": PUBLISHED, "gap": gap, "reading": word,
                          "mcc_49m": at49}  # fmt: skip
    sd_text = "n/a" if sd is None else f"{sd:.4f}"
    lines.append(f"Rule 8: {row} at 200 M, seeds {sorted(mcc)}: MCC "
                 + ", ".join(f"{mcc[k]:.4f}" for k in sorted(mcc))
                 + f"; mean {mean:.4f}, standard deviation {sd_text} (published {PUBLISHED[0]} +- "
                 f"{PUBLISHED[1]}); |mean - published| {gap:.4f}: {word}. F1 "
                 + ", ".join(f"{f1[k]:.4f}" for k in sorted(f1))
                 + " (seed 0 scored on 200,000 samples, seeds 1-2 on 50,000).")  # fmt: skip
    lines.append("Rule 9: the same seeds at 49.1 M: "
                 + ", ".join(f"seed {k} {v:.4f}" for k, v in at49.items()) + ".")  # fmt: skip


if __name__ == "__main__":
    main()
