"""Per-feature best-latent F1 at a matched L0, CPU `small` recipe (issue 18): the table and the
rules of docs/eval/synthetic/cpu-feature-f1-PLAN.md (fixed before the run), from
docs/eval/synthetic/cpu-feature-f1/{A,B}/results.json, with the per-latent F1 of
docs/eval/synthetic/cpu-matched-l0/{A,B}/results.json for rule 0 (a).

Run from the repository root: python docs/eval/synthetic/cpu_feature_f1_table.py
"""

import json
from pathlib import Path

from cpu_matched_l0_table import load_rows, seed_values  # the same folder (sys.path[0])

from implicit_em.eval.synthetic import _fmt, summarise
from implicit_em.eval.verdict import MARGIN, apart

ROOT = Path("docs/eval/synthetic")
RUN, OLD = ROOT / "cpu-feature-f1", ROOT / "cpu-matched-l0"
DECODER_FREE = ("encoder", "encoder-wr")
REFERENCES = ("topk", "tied-topk-im-3.0")  # their own k is the read-out's k: identity
COLUMNS = (  # (header, summarise key, decimals)
    ("L0", "l0", 1), ("F1 (per latent)", "f1", 3), ("feature F1", "feature_f1", 3),
    ("feature F1 untrained", "feature_f1_untrained", 3),
    ("feature F1 random@L0", "feature_f1_random_at_l0", 3),
    ("dead@k", "dead_latents_at_k", 0), ("F1@k (per latent)", "f1_at_k", 3),
    ("feature F1@k", "feature_f1_at_k", 3),
    ("feature F1 untrained@k", "feature_f1_untrained_at_k", 3),
    ("feature F1 random@k", "feature_f1_random_at_k", 3),
    ("features F1>=0.5", "features_f1_0.5_native", 0),
    ("features F1>=0.5 @k", "features_f1_0.5_at_k", 0),
)  # fmt: skip


def at_k(metric: str, part: str = "trained"):
    return lambda r: r["matched"][part][metric]


def main() -> None:
    rows = load_rows(RUN)
    summary = summarise(rows)
    for s in summary:  # native count of detected features (summarise has only the @k one)
        vals = seed_values(rows, s["variant"], lambda r: r["trained"]["features_f1_0.5"])
        s["features_f1_0.5_native"] = {"mean": sum(vals) / len(vals), "min": min(vals),
                                       "max": max(vals)}  # fmt: skip
    print("| variant | seeds | " + " | ".join(c[0] for c in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for s in summary:
        print(f"| {s['variant']} | {s['seeds']} | "
              + " | ".join(_fmt(s[key], nd) for _, key, nd in COLUMNS) + " |")  # fmt: skip

    # Rule 0 (a): the same seeds train the same models as cpu-matched-l0 (per-latent F1)
    old = {(r["variant"], r["seed"]): r for r in load_rows(OLD)}
    diffs = {}
    for r in rows:
        o = old.get((r["variant"], r["seed"]))
        if o is not None:
            diffs[f"{r['variant']} s{r['seed']}"] = max(
                abs(r["trained"]["f1"] - o["trained"]["f1"]),
                abs(r["matched"]["trained"]["f1"] - o["matched"]["trained"]["f1"]))
    same_models = bool(diffs) and max(diffs.values()) <= 1e-6
    # Rule 0 (b): at their own k the read-out is the identity
    identity = all(r["matched"]["trained"]["feature_f1"] == r["trained"]["feature_f1"]
                   for r in rows if r["variant"] in REFERENCES)  # fmt: skip
    rules: dict = {"0_sanity": {"a_same_models_as_cpu_matched_l0": same_models,
                                "a_max_abs_f1_difference": max(diffs.values(), default=None),
                                "b_identity_at_own_k": identity}}  # fmt: skip
    present = {r["variant"] for r in rows}
    if identity and {"encoder", "topk"} <= present:
        rules["1_feature_f1_at_k"] = {
            f"{a} vs {b}": apart(seed_values(rows, a, at_k("feature_f1")),
                                 seed_values(rows, b, at_k("feature_f1")), MARGIN)
            for a in DECODER_FREE for b in REFERENCES if a in present and b in present
        }  # fmt: skip
        per_latent = apart(seed_values(rows, "encoder", at_k("f1")),
                           seed_values(rows, "topk", at_k("f1")), MARGIN)  # fmt: skip
        feature = rules["1_feature_f1_at_k"].get("encoder vs topk")
        rules["2_per_latent_lead"] = {"per_latent_f1_at_k": per_latent,
                                      "feature_f1_at_k": feature,
                                      "survives": feature == "above"}  # fmt: skip
        rules["3_controls"] = {
            f"{a} vs {part}": apart(seed_values(rows, a, at_k("feature_f1")),
                                    seed_values(rows, a, at_k("feature_f1", part)), MARGIN)
            for a in (*DECODER_FREE, *REFERENCES) if a in present
            for part in ("untrained", "random")
        }  # fmt: skip
    print()
    print(f"- Rule 0: {rules['0_sanity']}")
    for key in ("1_feature_f1_at_k", "2_per_latent_lead", "3_controls"):
        if key in rules:
            print(f"- Rule {key}: " + "; ".join(f"{n}: {v}" for n, v in rules[key].items()))
    seeds = {name: {"feature_f1_at_k": seed_values(rows, name, at_k("feature_f1")),
                    "f1_at_k": seed_values(rows, name, at_k("f1")),
                    "feature_f1": seed_values(rows, name, lambda r: r["trained"]["feature_f1"])}
             for name in sorted(present)}  # fmt: skip
    for name, v in seeds.items():
        print(f"  {name}: " + "; ".join(f"{k} " + ", ".join(f"{x:.4f}" for x in xs)
                                        for k, xs in v.items()))  # fmt: skip
    out = {"summary": summary, "rules": rules, "seed_values": seeds}
    (ROOT / "cpu-feature-f1.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
