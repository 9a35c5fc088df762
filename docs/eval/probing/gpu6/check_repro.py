"""The reproduction check of GPU run 6 (docs/eval/probing/gpu6_plan.md, "Reproduction check"):
the rows run 6 shares with gpu3 (encoder, topk, encoder-wr, encoder-softplus,
encoder-unit-rows: the same data, plan entries, seeds and row positions) against gpu3's
results, entry by entry. Rules 1-2 read the reference rows (encoder, topk), rule 3 the raw
residual; the other shared rows are reported as "moved" lines. Prints one line per rule and a
last line "reproduction: bit-identical (every shared number equal) | comparable (rules 1-3
pass) | NOT comparable"; exit status 0 whatever the word (the word is read, not acted on).
Pure JSON, no torch: runs on the device after the run and here afterwards.

    python docs/eval/probing/gpu6/check_repro.py NEW/results.json \
        docs/eval/probing/gpu3/results_r4.json docs/eval/probing/gpu3/results_r16a.json \
        docs/eval/probing/gpu3/results_r16b.json
"""

from __future__ import annotations

import json
import sys

from implicit_em.eval.probing_study.report import merge_results
from implicit_em.eval.probing_study.repro import numbers, raw_probes_equal, repro_word
from implicit_em.eval.verdict import probing_row_label

REFERENCE = ("encoder", "topk")
"""The rows rules 1 and 2 read (gpu3_plan.md's and gpu5_plan.md's reproduction rows); the
other shared rows (encoder-wr, encoder-softplus, encoder-unit-rows) are reported ("moved")
without deciding the word: the rules of run 6 compare them within the run."""
L0_TOL = 0.5
"""Rule 1: held-out L0 per reference row within 0.5 of gpu3's (gpu3_plan.md's rule)."""
CE_TOL = 0.002
"""Rule 2: CE-loss recovered of every read-out of a reference row within 0.002 of gpu3's."""
PROBE_TOL = 0.0
"""Rule 3: the raw residual's probe accuracies equal gpu3's (the same activations, probes)."""
RANDOM = "random dirs @ L0 "
AGAINST = "gpu3"
"""The earlier run's name in the printed lines (gpu7/check_repro.py passes "gpu2")."""


def owner(key: str) -> str:
    """The trained row a results key belongs to: 'encoder-K4096-s0' for 'encoder-K4096-s0',
    'encoder-K4096-s0 (untrained)', 'random dirs @ L0 81 (encoder-K4096-s0)' and any of
    them followed by ' | <read-out>'; the raw residual's rows as their current name."""
    name = key.split(" | ")[0]
    if name.startswith(RANDOM) and name.endswith(")"):
        name = name[name.index("(") + 1 : -1]
    return probing_row_label(name.removesuffix(" (untrained)"))


def entries(res: dict, names: set[str]) -> dict[str, float]:
    """Every number of `res` that belongs to one of `names` (trained rows, with their twins and
    random directions) or to the raw residual: L0, dead fraction, CE / KL / CE-loss recovered
    of each splice, probe accuracies (both variants, every task and k, the full probe), the
    last training record.
    (`implicit_em.eval.probing_study.repro.numbers`, the same keys in every check)."""

    def mine(key: str) -> bool:
        return owner(key) in names or owner(key).startswith("raw residual")

    return numbers(res, mine)


def check(new: dict, old: dict, against: str = AGAINST) -> tuple[list[str], str]:
    """(lines, word): the rules of gpu6_plan.md's reproduction check on the trained rows that
    both runs hold (by name: label, K, k and seed), new against old; `against` names the old
    run in the lines."""
    trained = {k for k, v in new.get("kinds", {}).items() if v == "trained"}
    shared = {k for k in trained if old.get("kinds", {}).get(k) == "trained"}
    a, b = entries(new, shared), entries(old, shared)
    common = sorted(set(a) & set(b))
    missing = sorted(set(a) - set(b))
    same = [k for k in common if a[k] == b[k]]
    lines = [f"{len(shared)} trained rows in both runs ({len(trained) - len(shared)} new); "
             f"{len(common)} numbers of theirs in both, {len(same)} bit-identical"
             + (f"; {len(missing)} only in the new run (e.g. {missing[0]})" if missing else "")]  # fmt: skip
    by_label: dict[str, list[int]] = {}
    for k in common:
        parts = k.split(" :: ")
        lab = owner(parts[2] if parts[0] in ("ce", "probe") else parts[1]).split("-K")[0]
        by_label.setdefault(lab, [0, 0])[0] += a[k] == b[k]
        by_label[lab][1] += 1
    lines.append("bit-identical per row label: " + ", ".join(
        f"{lab} {n}/{t}" for lab, (n, t) in sorted(by_label.items())))  # fmt: skip
    ref = {n for n in shared if n.split("-K")[0] in REFERENCE}
    lost = sorted(n for n in trained - shared if n.split("-K")[0] in REFERENCE)
    if lost:  # a TopK row's name carries its k: the encoder's L0 moved across a rounding
        lines.append(f"rules 1-2: {len(lost)} reference row(s) not in {against}'s results under "
                     "their name (a TopK row's name carries its k, which moves with the "
                     f"encoder's L0), not checked: {', '.join(lost)}")  # fmt: skip
    ok = bool(ref)
    for name in sorted(ref):
        key = f"l0 :: {name}"
        d = abs(a[key] - b[key])
        good = d <= L0_TOL
        ok &= good
        lines.append(f"rule 1: {name}: L0 {a[key]:.2f} ({against} {b[key]:.2f}): "
                     f"{'within' if good else 'NOT within'} {L0_TOL}")  # fmt: skip
    for k in common:
        if not k.startswith("ce :: "):
            continue
        _, _, splice, metric = k.split(" :: ")
        row = splice.split(" | ")[0]
        if metric == "ce_loss_recovered" and row in ref:
            d = abs(a[k] - b[k])
            good = d <= CE_TOL
            ok &= good
            lines.append(f"rule 2: {splice}: CE-loss recovered {a[k]:.5f} ({against} "
                         f"{b[k]:.5f}): {'within' if good else 'NOT within'} {CE_TOL}")  # fmt: skip
        elif metric == "ce_loss_recovered" and row in shared:
            lines.append(f"moved: {splice}: CE-loss recovered {a[k]:.5f} ({against} {b[k]:.5f}, "
                         f"{a[k] - b[k]:+.5f})")  # fmt: skip
    for name in sorted(shared - ref):
        key = f"l0 :: {name}"
        lines.append(f"moved: {name}: L0 {a[key]:.2f} ({against} {b[key]:.2f}, "
                     f"{a[key] - b[key]:+.2f})")  # fmt: skip
    raw_same, n_raw = raw_probes_equal(a, b, common, PROBE_TOL)
    ok &= n_raw > 0 and raw_same == n_raw
    lines.append(f"rule 3: raw residual: {raw_same} of {n_raw} probe accuracies equal {against}'s")
    return lines, repro_word(ok, len(same), len(common))


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-3].strip())
        return 2
    new = json.loads(open(argv[0]).read())
    old = merge_results([json.loads(open(p).read()) for p in argv[1:]])
    lines, word = check(new, old)
    print("\n".join(lines))
    print(f"reproduction: {word}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
