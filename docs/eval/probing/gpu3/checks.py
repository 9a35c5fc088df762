"""GPU run 3 (docs/eval/probing/gpu3.md): the plan's reproduction check against gpu2, and each
row's per-seed probing beside its reference encoder and its random directions.

Run from the repository root after `probing_gpu.py compare3` (reads the results files of
gpu2 and gpu3 and gpu3/gpu3_compare.json):

    PYTHONPATH=$PWD/src python docs/eval/probing/gpu3/checks.py > docs/eval/probing/gpu3/checks.txt

Reproduction rule (gpu3_plan.md, fixed before the run): the encoder's held-out L0 per seed
within 0.5 of gpu2's, TopK's CE-loss recovered (seed mean) within 0.002 of gpu2's, the raw
residual's probe accuracies equal. Printed beside it: whether the shared rows are bit-identical.
Probing = SAEBench probe, mean over the 5 datasets and k in {1, 2, 5, 10, 20}, per seed
(`probing_gpu.summarize` / `row_stats`, as compare3).
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, "scripts")
from probing_gpu import _apart, merge_results, row_stats, summarize  # noqa: E402

from implicit_em.eval.verdict import MARGIN  # noqa: E402

G2, G3 = Path("docs/eval/probing/gpu2"), Path("docs/eval/probing/gpu3")
F2 = ["results_r4.json", "results_r16a.json", "results_r16b.json", "results_r4s2.json"]
F3 = ["results_r4.json", "results_r16a.json", "results_r16b.json"]
old = merge_results([json.loads((G2 / f).read_text()) for f in F2])
new = merge_results([json.loads((G3 / f).read_text()) for f in F3])
cmp3 = json.loads((G3 / "gpu3_compare.json").read_text())
so, sn = summarize(old), summarize(new)

print("## Reproduction check (gpu3_plan.md)\n")
ok_all = True
for K in (4096, 16384):
    ref = f"encoder-K{K}"
    l0o = {n: old["l0"][n] for n in so["probing"][ref]["names"]}
    l0n = {n: new["l0"][n] for n in sn["probing"][ref]["names"]}
    worst = max(abs(l0n[n] - l0o[n]) for n in l0n)
    ok = set(l0o) == set(l0n) and worst <= 0.5
    ok_all &= ok
    print(
        f"- K = {K} encoder L0 per seed: gpu3 {[round(l0n[n], 2) for n in sorted(l0n)]}, "
        f"gpu2 {[round(l0o[n], 2) for n in sorted(l0o)]}, largest difference {worst:.4f} "
        f"(rule: <= 0.5): {'pass' if ok else 'FAIL'}"
    )
    co = so["downstream"][f"topk-K{K} | own decoder"]["ce_loss_recovered"]
    cn = sn["downstream"][f"topk-K{K} | own decoder"]["ce_loss_recovered"]
    d = abs(sum(cn) / len(cn) - sum(co) / len(co))
    ok = d <= 0.002
    ok_all &= ok
    print(
        f"- K = {K} TopK CE-loss recovered, seed mean: gpu3 {sum(cn) / len(cn):.5f} "
        f"{[round(c, 5) for c in cn]}, gpu2 {sum(co) / len(co):.5f}, difference {d:.5f} "
        f"(rule: <= 0.002): {'pass' if ok else 'FAIL'}"
    )
raw = "raw residual (ceiling)"
same_raw = all(
    json.dumps(p["probing"][v][raw], sort_keys=True)
    == json.dumps(new["probing"][v][raw], sort_keys=True)
    for p in [json.loads((G2 / f).read_text()) for f in F2]
    for v in ("saebench", "standardized")
)
ok_all &= same_raw
print(
    f"- raw residual probe accuracies (both probe variants, every task, k and full) equal in "
    f"all four gpu2 files and gpu3: {'pass' if same_raw else 'FAIL'}"
)
print(f"- **reproduction rule: {'PASS' if ok_all else 'FAIL'}**")
for sect in ("l0", "dead_fraction"):
    common = [n for n in old[sect] if n in new[sect]]
    same = sum(old[sect][n] == new[sect][n] for n in common)
    print(f"- bit-identical {sect}: {same} of the {len(common)} entries in both runs")
for v in ("saebench", "standardized"):
    common = [n for n in old["probing"][v] if n in new["probing"][v]]
    same = sum(json.dumps(old["probing"][v][n], sort_keys=True)
               == json.dumps(new["probing"][v][n], sort_keys=True) for n in common)  # fmt: skip
    print(f"- bit-identical probing ({v}): {same} of the {len(common)} read-outs in both runs")
ce_o = {(b, k): x for b, d in old["downstream"].items() for k, x in d.items()}
ce_n = {(b, k): x for b, d in new["downstream"].items() for k, x in d.items()}
common = [k for k in ce_o if k in ce_n]
print(
    f"- bit-identical downstream entries (CE, KL, CE-loss recovered): "
    f"{sum(ce_o[k] == ce_n[k] for k in common)} of {len(common)}"
)

print("\n## Per seed: probing mean over k, beside the reference encoder and random directions\n")
print(
    f"Seeds s0 / s1 / s2; spread = max - min over seeds; 'vs random' by compare3's rule "
    f"(ranges apart by more than {MARGIN}); CE = CE-loss recovered through the row's read-out "
    f"(compare3's), random directions through post-hoc least squares at the row's L0.\n"
)
print(
    "| K | row | L0 | probing s0 / s1 / s2 | spread | minus encoder (mean) | random @ L0 "
    "[range] | vs random | CE | CE random @ L0 |"
)
print("|---|---|---|---|---|---|---|---|---|---|")
for K in (4096, 16384):
    ref = row_stats(sn, new, f"encoder-K{K}", None)
    for lab in cmp3[f"K{K}"]["rows"]:
        rid = f"{lab}-K{K}"
        acc = sn["probing"][rid]["acc"]["saebench"]
        per = [sum(acc[k][i] for k in sn["ks"]) / len(sn["ks"]) for i in range(3)]
        names = sn["probing"][rid]["names"]
        assert [n.rsplit("-s", 1)[1] for n in names] == ["0", "1", "2"], names
        rnd = row_stats(sn, new, f"random dirs @ L0 of {rid}", "post-hoc least squares")
        row = cmp3[f"K{K}"]["rows"][lab]
        vs = _apart(per, rnd["mean_k_range"], MARGIN)
        print(
            f"| {K} | {lab} | {row['l0']:.1f} | {' / '.join(f'{p:.3f}' for p in per)} | "
            f"{max(per) - min(per):.3f} | {sum(per) / 3 - ref['mean_k']:+.3f} | "
            f"{rnd['mean_k']:.3f} [{rnd['mean_k_range'][0]:.3f}, {rnd['mean_k_range'][1]:.3f}]"
            f" | {vs} ({sum(per) / 3 - rnd['mean_k']:+.3f}) | {row['ce']:.3f} | "
            f"{rnd['ce']:.3f} |"
        )
