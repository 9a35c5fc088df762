"""The reproduction check of GPU run 5 (docs/eval/probing/gpu5_plan.md, "Reproduction check"):
the repro run (gpu4's data, one pass, seed 0, rows encoder and topk at K = 4096 and 16384)
against gpu4's results_r4.json, entry by entry. Prints one line per rule and a last line
"reproduction: bit-identical | comparable | NOT comparable"; exit status 0 whatever the word
(the word is read, not acted on). Pure JSON, no torch: runs on the device after the repro run
and here afterwards.

    python docs/eval/probing/gpu5/check_repro.py NEW/results.json docs/eval/probing/gpu4/results_r4.json
"""

from __future__ import annotations

import json
import sys

from implicit_em.eval.probing_study.repro import numbers, raw_probes_equal, repro_word

L0_TOL = 0.5
"""Rule 1-2: held-out L0 per row within 0.5 of gpu4's (gpu4_plan.md's rule)."""
CE_TOL = 0.002
"""Rule 3: CE-loss recovered within 0.002 of gpu4's (gpu4_plan.md's rule)."""
PROBE_TOL = 0.0
"""Rule 4: the raw residual's probe accuracies equal gpu4's (the same activations, probes)."""


def entries(res: dict, names: set[str]) -> dict[str, float]:
    """Every number of `res` that belongs to one of `names` (rows, their twins, their random
    directions) or to the raw residual: L0, dead fraction, CE / KL / CE-loss recovered of each
    splice, probe accuracies (both variants, every task and k), the last training record. The
    raw residual's row is keyed by its current name (`eval.verdict.probing_row_label`), so a
    run that names it `RAW_ROW` reads against gpu4's file, which names it `OLD_RAW_ROW`.
    (`implicit_em.eval.probing_study.repro.numbers`, the same keys in every check)."""

    def mine(key: str) -> bool:
        return any(n in key for n in names) or key.startswith("raw residual")

    return numbers(res, mine)


def check(new: dict, old: dict) -> tuple[list[str], str]:
    """(lines, word): the rules of gpu5_plan.md's reproduction check, new against old."""
    trained = {k for k, v in new.get("kinds", {}).items() if v == "trained"}
    a, b = entries(new, trained), entries(old, trained)
    common = sorted(set(a) & set(b))
    missing = sorted(set(a) - set(b))
    same = [k for k in common if a[k] == b[k]]
    lines = [f"{len(common)} numbers in both runs, {len(same)} bit-identical"
             + (f"; {len(missing)} only in the new run (e.g. {missing[0]})" if missing else "")]  # fmt: skip
    ok = bool(trained) and not missing
    for name in sorted(trained):
        key = f"l0 :: {name}"
        if key not in b:
            lines.append(f"rule 1: {name}: not in gpu4's results")
            ok = False
            continue
        d = abs(a[key] - b[key])
        good = d <= L0_TOL
        ok &= good
        lines.append(f"rule 1: {name}: L0 {a[key]:.2f} (gpu4 {b[key]:.2f}): "
                     f"{'within' if good else 'NOT within'} {L0_TOL}")  # fmt: skip
    for k in common:
        if not k.startswith("ce :: "):
            continue
        _, _, splice, metric = k.split(" :: ")
        if metric == "ce_loss_recovered" and splice.split(" | ")[0] in trained:
            d = abs(a[k] - b[k])
            good = d <= CE_TOL
            ok &= good
            lines.append(f"rule 2: {splice}: CE-loss recovered {a[k]:.5f} (gpu4 "
                         f"{b[k]:.5f}): {'within' if good else 'NOT within'} {CE_TOL}")  # fmt: skip
    raw_same, n_raw = raw_probes_equal(a, b, common, PROBE_TOL)
    ok &= n_raw > 0 and raw_same == n_raw
    lines.append(f"rule 3: raw residual: {raw_same} of {n_raw} probe accuracies equal gpu4's")
    return lines, repro_word(ok, len(same), len(common))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip())
        return 2
    new, old = (json.loads(open(p).read()) for p in argv)
    lines, word = check(new, old)
    print("\n".join(lines))
    print(f"reproduction: {word}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
