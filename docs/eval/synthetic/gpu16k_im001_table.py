"""The encoder with a hundredth of the InfoMax weights on the 16k synthetic model (issue 18): the
table and the rules of docs/eval/synthetic/gpu16k-im001-PLAN.md (fixed before the runs), from
the files in docs/eval/synthetic/gpu16k-im001/ (sixteenth session): `i0.json`, `i1.json`
(one call on nvidia-h200-x2, one process per GPU) and `i2.json` (a second call, GPU 0, after
rule 3 read "above" on seeds 0-1, as the plan asks).

The committed rows beside it, as gpu16k_seeds_table.py reads them (`load_rows`): the default
`encoder` (rule 3), `encoder-wr` (the best decoder-free row before this run), and the SAE rows
nearest its L0 (`jumprelu-0.003`, `jumprelu-0.01`, one seed each) and at the target L0 25
(`topk-k25`, `matryoshka-k25-sl-all`); all at width 4,096 and 47,927 steps (49.1 M samples).

Run from the repository root: python docs/eval/synthetic/gpu16k_im001_table.py
Prints the markdown table and each rule's outcome; writes docs/eval/synthetic/gpu16k-im001.json.
"""

# the script's folder is on sys.path
import gpu16k_seeds_table as T

from implicit_em.eval.synthetic import summarise
from implicit_em.eval.verdict import MARGIN, apart

IM = "encoder-im0.01"
BESIDE = ("encoder", "encoder-wr", "jumprelu-0.003", "jumprelu-0.01", "topk-k25",
          "matryoshka-k25-sl-all")  # fmt: skip
L0_WINDOW = (18.75, 31.25)  # eval.verdict.nearest_in_window's window around 25 (tol 0.25)


def evaluate() -> dict:
    """The plan's rules on the committed files: {"summary" (`summarise` of the table's rows),
    "detection" (the new rows' per-seed detection, `detection_rows`), "rules", "lines"}."""
    by_file = {f: T.read_rows(T.IM001 / f, names) for f, names in T.IM001_FILES.items()}
    new = T.planned_rows(T.IM001, by_file, T.K304_INIT)  # rules 1-2; a failing row is printed
    lines = [f"Rules 1-2 (init exact, 47,927 steps): {len(new)} of "
             f"{sum(len(v) for v in by_file.values())} rows pass."]  # fmt: skip
    if not new:
        raise SystemExit(f"no {IM} row passed rules 1-2; nothing to compare")
    rows = [r for r in T.load_rows() if r["variant"] in BESIDE] + new
    by = {s["variant"]: s for s in summarise(rows)}

    def mccs(name: str) -> list[float]:
        return [r["trained"]["mcc"] for r in rows if r["variant"] == name]

    def span(name: str) -> str:
        v = mccs(name)
        return f"{len(v)} seed{'s' * (len(v) != 1)}, {min(v):.4f}-{max(v):.4f}"

    s = by[IM]
    rules = {"3_against_encoder": apart(mccs(IM), mccs("encoder"), MARGIN)}
    lines.append(f"Rule 3: {IM} ({span(IM)}, mean {s['mcc']['mean']:.4f}) against encoder "
                 f"({span('encoder')}, mean {by['encoder']['mcc']['mean']:.4f}): "
                 f"{rules['3_against_encoder']}.")  # fmt: skip
    best_control = max(s["mcc_untrained"]["max"], s["mcc_random_at_l0"]["max"])
    worst_control = min(s["mcc_untrained"]["min"], s["mcc_random_at_l0"]["min"])
    if s["mcc"]["min"] > best_control + MARGIN:
        rules["4_controls"] = "above"
    elif s["mcc"]["max"] < worst_control - MARGIN:
        rules["4_controls"] = "below"
    else:
        rules["4_controls"] = "level"
    lines.append(f"Rule 4: worst seed {s['mcc']['min']:.4f} against the best control seed "
                 f"{best_control:.4f}: {rules['4_controls']} its controls.")  # fmt: skip
    l0 = s["l0"]["mean"]
    rules["5_beside"] = {"l0": l0, "l0_in_target_window": L0_WINDOW[0] <= l0 <= L0_WINDOW[1],
                         "dead_latents_max": s["dead_latents"]["max"],
                         "against_encoder_wr": apart(mccs(IM), mccs("encoder-wr"), MARGIN)}  # fmt: skip
    lines.append(f"Rule 5: L0 {l0:.1f} (encoder {by['encoder']['l0']['mean']:.1f}), "
                 + ("inside" if rules["5_beside"]["l0_in_target_window"] else "outside")
                 + f" the target window {L0_WINDOW[0]}-{L0_WINDOW[1]}; dead latents at most "
                 f"{s['dead_latents']['max']:.0f}; F1 {s['f1']['mean']:.3f}; features covered "
                 f"{s['features_covered']['mean']:.0f}; against encoder-wr ({span('encoder-wr')}): "
                 f"{rules['5_beside']['against_encoder_wr']}.")  # fmt: skip
    detection = T.detection_rows(new, (IM,))
    table = [by[n] for n in (IM, *BESIDE) if n in by]
    return {"summary": table, "detection": detection, "rules": rules, "lines": lines}


def main() -> None:
    """Print the tables and the rules' lines; write docs/eval/synthetic/gpu16k-im001.json."""
    out = evaluate()
    cols = [*T.COLUMNS[:6], ("feature F1", "feature_f1", 3), *T.COLUMNS[6:]]
    T.print_report(out, cols, "gpu16k-im001.json")


if __name__ == "__main__":
    main()
