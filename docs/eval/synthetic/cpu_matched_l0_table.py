"""F1 / precision / recall at a matched L0, CPU `small` recipe (issue 18): the table and the
rules of docs/eval/synthetic/cpu-matched-l0-PLAN.md (fixed before the run), from
docs/eval/synthetic/cpu-matched-l0/{A,B}/results.json (`SyntheticEvalOptions.readout_k = 8`).

Run from the repository root: python docs/eval/synthetic/cpu_matched_l0_table.py
"""

import json
from pathlib import Path

from implicit_em.eval.options import RECIPES
from implicit_em.eval.synthetic import MATCHED_COLUMNS, _fmt, summarise
from implicit_em.eval.verdict import MARGIN, apart

ROOT = Path("docs/eval/synthetic")
RUN = ROOT / "cpu-matched-l0"
DECODER_FREE = ("encoder", "encoder-wr")
REFERENCES = ("topk", "tied-topk-im-3.0")  # their own k is the read-out's k: identity
METRICS = ("precision", "recall", "f1")


def load_rows(run: Path = RUN) -> list[dict]:
    """The rows of run/A and run/B results.json (a `small` run, one latent per feature)."""
    rows = []
    for group in ("A", "B"):
        path = run / group / "results.json"
        if path.exists():
            res = json.loads(path.read_text())
            assert res["options"]["recipe"] == "small" and res["options"]["latents"] is None
            rows += res["rows"]
    return rows


def seed_values(rows: list[dict], name: str, get) -> list[float]:
    return [get(r) for r in sorted(rows, key=lambda r: r["seed"]) if r["variant"] == name]


def main() -> None:
    rows = load_rows()
    summary = summarise(rows)
    cols = [("MCC (as trained)", "mcc", 3), *MATCHED_COLUMNS]
    print("| variant | seeds | " + " | ".join(c[0] for c in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for s in summary:
        print(f"| {s['variant']} | {s['seeds']} | "
              + " | ".join(_fmt(s[key], nd) for _, key, nd in cols) + " |")  # fmt: skip

    def at_k(metric: str, part: str = "trained"):
        return lambda r: r["matched"][part][metric]

    # Rule 0: at their own k the read-out is the identity
    sanity = {name: all(r["matched"]["trained"][m] == r["trained"][m] for m in METRICS)
              for name in REFERENCES
              for r in [x for x in rows if x["variant"] == name]}  # fmt: skip
    sanity_ok = all(all(r["matched"]["trained"][m] == r["trained"][m] for m in METRICS)
                    for r in rows if r["variant"] in REFERENCES)  # fmt: skip
    rules: dict = {"0_sanity": {"identity_at_own_k": sanity_ok, "per_variant": sanity}}
    if sanity_ok:
        for metric, key in (("f1", "1_f1_at_k"), ("precision", "2_precision_at_k")):
            rules[key] = {
                f"{a} vs {b}": apart(seed_values(rows, a, at_k(metric)),
                                     seed_values(rows, b, at_k(metric)), MARGIN)
                for a in DECODER_FREE for b in REFERENCES
            }  # fmt: skip
        rules["3_controls"] = {
            f"{a} vs {part}": apart(seed_values(rows, a, at_k("f1")),
                                    seed_values(rows, a, at_k("f1", part)), MARGIN)
            for a in DECODER_FREE for part in ("untrained", "random")
        }  # fmt: skip
        native = apart(seed_values(rows, "encoder", lambda r: r["trained"]["f1"]),
                       seed_values(rows, "topk", lambda r: r["trained"]["f1"]), MARGIN)  # fmt: skip
        matched = rules["1_f1_at_k"]["encoder vs topk"]
        rules["4_native_ranking"] = {"native": native, "matched": matched,
                                     "survives": matched == "above"}  # fmt: skip
    print()
    print(f"- Rule 0 (identity at own k): {'passed' if sanity_ok else 'FAILED'} {sanity}")
    for key in ("1_f1_at_k", "2_precision_at_k", "3_controls"):
        if key in rules:
            print(f"- Rule {key}: " + "; ".join(f"{n}: {v}" for n, v in rules[key].items()))
    if "4_native_ranking" in rules:
        r4 = rules["4_native_ranking"]
        print(f"- Rule 4: encoder F1 against topk natively {r4['native']}, at k = 8 "
              f"{r4['matched']}: the native ranking {'survives' if r4['survives'] else 'does not survive'}")  # fmt: skip
    # Post hoc (added after seeing the results; no rule): sae-lens's F1 is a mean over all K
    # latents, a latent that never fires counting 0, so F1 * K / (K - dead) is exactly the
    # mean over the latents that fired at least once on the evaluation samples.
    k_lat = RECIPES["small"]["num_features"]  # K: latents=None, one per true feature

    def fired_f1(r: dict) -> float:
        m = r["matched"]["trained"]
        return m["f1"] * k_lat / (k_lat - m["dead_latents"])

    post_hoc = {name: seed_values(rows, name, fired_f1) for name in (*DECODER_FREE, *REFERENCES)}
    print("- Post hoc, F1@k over the latents that fired: "
          + "; ".join(f"{n}: " + ", ".join(f"{v:.3f}" for v in vs) for n, vs in post_hoc.items()))
    print(f"  encoder vs topk by apart: {apart(post_hoc['encoder'], post_hoc['topk'], MARGIN)}")
    out = {"summary": summary, "rules": rules,
           "post_hoc_f1_at_k_over_fired_latents": post_hoc}  # fmt: skip
    (ROOT / "cpu-matched-l0.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
