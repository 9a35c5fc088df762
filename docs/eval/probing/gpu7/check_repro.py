"""The reproduction check of GPU run 7 (docs/eval/probing/gpu7_plan.md, "Reproduction check"):
run 7's first four rows (encoder, topk, tied-topk, tied-topk-im-3.0: gpu2's plan entries, seeds
and row positions, on gpu2's data) against gpu2's results, entry by entry.

- The reference part is gpu6's check (`gpu6/check_repro.py`, rules 1-3, with "gpu2" in its
  lines) on every shared row except the hybrid: encoder and topk (L0 within 0.5, CE-loss
  recovered within 0.002), tied-topk ("moved" lines only) and the raw residual (108 probe
  accuracies equal). Its word: "bit-identical" / "comparable" / "NOT comparable".
- The hybrid part reads tied-topk-im-3.0, which gpu2 trained through the fused Triton kernels
  and run 7 trains through the plain formulas (IMPLICIT_EM_FUSED=off; the plan says why), so
  it is not expected bit for bit. Rules H1-H3, per K: H1 its held-out L0 within 0.5 of gpu2's
  (every seed); H2 its CE-loss recovered through its own decoder within 0.002 of gpu2's
  (every seed); H3 its probing (SAEBench probe, mean over the datasets and k) seed mean within
  0.01 (`eval.verdict.MARGIN`) of gpu2's. Its word: "bit-identical" (every number of its rows
  equal), "comparable" (H1-H3 pass at every K it has) or "NOT comparable".

Prints one line per rule and the last line "reproduction: reference rows WORD; hybrid WORD";
exit status 0 whatever the words (they are read, not acted on). Pure JSON, no torch: runs on
the device after the run and here afterwards.

    python docs/eval/probing/gpu7/check_repro.py NEW/results.json \
        docs/eval/probing/gpu2/results_r4.json docs/eval/probing/gpu2/results_r16a.json \
        docs/eval/probing/gpu2/results_r16b.json docs/eval/probing/gpu2/results_r4s2.json
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from implicit_em.eval.probing_study.report import dataset_mean, merge_results
from implicit_em.eval.probing_study.repro import numbers, repro_word
from implicit_em.eval.verdict import MARGIN

AGAINST = "gpu2"
HYBRID = "tied-topk-im-3.0"
"""The row trained by gpu2 through the fused kernels and here through the plain formulas."""
L0_TOL = 0.5
"""H1: the hybrid's held-out L0 within 0.5 of gpu2's (gpu3_plan.md's rule 1)."""
CE_TOL = 0.002
"""H2: the hybrid's CE-loss recovered (own decoder) within 0.002 of gpu2's (rule 2's)."""
PROBE_TOL = MARGIN
"""H3: the hybrid's seed-mean probing within 0.01 of gpu2's (the verdict's margin)."""
READOUT = "own decoder"


def _gpu6():
    """gpu6/check_repro.py, loaded from its file (the reference part's rules)."""
    path = Path(__file__).resolve().parents[1] / "gpu6" / "check_repro.py"
    spec = importlib.util.spec_from_file_location("check_repro6", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def label(name: str) -> str:
    """'tied-topk-im-3.0-K4096-k82-s0' -> 'tied-topk-im-3.0'."""
    return name.split("-K")[0]


def probing(res: dict, name: str) -> float | None:
    """One row's SAEBench-probe accuracy: mean over the datasets (`report.dataset_mean`), then
    over the plan's k; None when the row was not probed."""
    tasks = res.get("probing", {}).get("saebench", {}).get(name)
    if not tasks:
        return None
    return float(np.mean([dataset_mean(tasks, str(k)) for k in res["plan"]["ks"]]))


def hybrid_check(new: dict, old: dict) -> tuple[list[str], str]:
    """(lines, word): rules H1-H3 on the hybrid rows both runs hold (by name: K, k, seed)."""
    trained = {n for n, v in new.get("kinds", {}).items() if v == "trained" and label(n) == HYBRID}
    shared = sorted(n for n in trained if old.get("kinds", {}).get(n) == "trained")
    lines = [f"hybrid: {len(shared)} {HYBRID} rows in both runs"
             + (f"; not in {AGAINST}'s results under their name: "
                f"{', '.join(sorted(trained - set(shared)))}" if trained - set(shared) else "")]  # fmt: skip
    if not shared:
        return lines + ["hybrid: no shared row, H1-H3 not measured"], "NOT comparable"

    def mine(names):
        def accept(key: str) -> bool:
            row = key.split(" | ")[0]
            if row.startswith("random dirs @ L0 ") and row.endswith(")"):
                row = row[row.index("(") + 1 : -1]
            return row in names

        return accept

    a, b = numbers(new, mine(set(shared))), numbers(old, mine(set(shared)))
    common = sorted(set(a) & set(b))
    same = sum(a[k] == b[k] for k in common)
    lines.append(f"hybrid: {len(common)} numbers of its rows and their random directions in "
                 f"both, {same} bit-identical")  # fmt: skip
    ok = True
    by_K: dict[str, list[tuple[float, float]]] = {}
    for name in shared:
        K = name.split("-K")[1].split("-")[0]
        d = abs(new["l0"][name] - old["l0"][name])
        ok &= d <= L0_TOL
        lines.append(f"H1: {name}: L0 {new['l0'][name]:.2f} ({AGAINST} {old['l0'][name]:.2f}): "
                     f"{'within' if d <= L0_TOL else 'NOT within'} {L0_TOL}")  # fmt: skip
        block = f"K{K}-s{name.rsplit('-s', 1)[1]}"
        key = f"{name} | {READOUT}"
        ce_new = new.get("downstream", {}).get(block, {}).get(key)
        ce_old = old.get("downstream", {}).get(block, {}).get(key)
        if ce_new is None or ce_old is None:
            ok = False
            lines.append(f"H2: {key}: not in both runs")
        else:
            x, y = ce_new["ce_loss_recovered"], ce_old["ce_loss_recovered"]
            ok &= abs(x - y) <= CE_TOL
            lines.append(f"H2: {key}: CE-loss recovered {x:.5f} ({AGAINST} {y:.5f}, {x - y:+.5f}): "
                         f"{'within' if abs(x - y) <= CE_TOL else 'NOT within'} {CE_TOL}")  # fmt: skip
        pn, po = probing(new, name), probing(old, name)
        if pn is None or po is None:
            ok = False
            lines.append(f"H3: {name}: probing not in both runs")
            continue
        by_K.setdefault(K, []).append((pn, po))
        dead = new.get("dead_fraction", {}).get(name), old.get("dead_fraction", {}).get(name)
        lines.append(f"seed: {name}: probing {pn:.4f} ({AGAINST} {po:.4f}, {pn - po:+.4f}); dead "
                     f"fraction {dead[0]} ({AGAINST} {dead[1]})")  # fmt: skip
    for K, pairs in sorted(by_K.items(), key=lambda kv: int(kv[0])):
        mn, mo = float(np.mean([p[0] for p in pairs])), float(np.mean([p[1] for p in pairs]))
        good = abs(mn - mo) <= PROBE_TOL
        ok &= good
        lines.append(f"H3: {HYBRID}-K{K}: probing seed mean {mn:.4f} over {len(pairs)} seeds "
                     f"({AGAINST} {mo:.4f}, {mn - mo:+.4f}): "
                     f"{'within' if good else 'NOT within'} {PROBE_TOL}")  # fmt: skip
    return lines, repro_word(ok, same, len(common))


def check(new: dict, old: dict) -> tuple[list[str], str, str]:
    """(lines, reference word, hybrid word): gpu6's rules on the shared rows other than the
    hybrid, then H1-H3 on the hybrid."""
    ref_new = {**new, "kinds": {n: v for n, v in new.get("kinds", {}).items()
                                if v != "trained" or label(n) != HYBRID}}  # fmt: skip
    lines, ref_word = _gpu6().check(ref_new, old, against=AGAINST)
    lines = ["reference rows (gpu6/check_repro.py's rules; every shared row but the hybrid):",
             *lines, f"reference rows: {ref_word}"]  # fmt: skip
    hl, h_word = hybrid_check(new, old)
    return lines + hl + [f"hybrid: {h_word}"], ref_word, h_word


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-3].strip())
        return 2
    new = json.loads(open(argv[0]).read())
    old = merge_results([json.loads(open(p).read()) for p in argv[1:]])
    lines, ref_word, h_word = check(new, old)
    print("\n".join(lines))
    print(f"reproduction: reference rows {ref_word}; hybrid {h_word}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
