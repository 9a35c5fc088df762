"""GPU run 4 (docs/eval/probing/gpu4.md): the plan's reproduction check against gpu.md and gpu3,
and the per-seed numbers behind rules C1-C3 and W1-W5 (dead fractions of each SAE, its
uncentred twin and both inits; probing and CE-loss recovered per seed beside the controls).

Run from the repository root after `implicit-em eval-suite probing-study compare4`:

    PYTHONPATH=$PWD/src python docs/eval/probing/gpu4/checks.py > docs/eval/probing/gpu4/checks.txt

Reproduction rule (gpu4_plan.md, fixed before the run; pass = every line): (1) the encoder's
held-out L0 per seed within 0.5 of gpu.md's; (2) centred TopK L0 per seed within 0.5 and
CE-loss recovered (seed mean) within 0.002 of gpu.md's; (3) the same for centred BatchTopK and
Matryoshka, dead per seed beside gpu.md's; (4) encoder-wr L0 per seed within 0.5 of gpu3's;
(5) the raw residual's probe accuracies equal gpu.md's. Probing = SAEBench probe, mean over
the 5 datasets and k in {1, 2, 5, 10, 20}, per seed (`report.summarize`, as compare3/4).
"""

import json
from pathlib import Path

from implicit_em.eval.probing_study.report import merge_results, summarize

P = Path("docs/eval/probing")
G1, G3, G4 = P / "gpu", P / "gpu3", P / "gpu4"
old = merge_results([json.loads((G1 / "results.json").read_text())])
g3 = merge_results([json.loads((G3 / f).read_text())
                    for f in ("results_r4.json", "results_r16a.json", "results_r16b.json")])  # fmt: skip
new = merge_results([json.loads((G4 / "results_r4.json").read_text())])
cmp4 = json.loads((G4 / "gpu4_compare.json").read_text())
so, s3, sn = summarize(old), summarize(g3), summarize(new)
KS = (4096, 16384)


def names(summ: dict, rid: str) -> list[str]:
    return summ["probing"][rid]["names"]


def per_seed(summ: dict, rid: str) -> list[float]:
    acc = summ["probing"][rid]["acc"]["saebench"]
    return [sum(acc[k][i] for k in summ["ks"]) / len(summ["ks"]) for i in range(len(acc["1"]))]


def ce(summ: dict, rid: str, readout: str) -> list[float]:
    return summ["downstream"][f"{rid} | {readout}"]["ce_loss_recovered"]


def fmt(xs, d=2) -> str:
    return " / ".join(f"{x:.{d}f}" for x in xs)


print("## Reproduction check (gpu4_plan.md)\n")
ok_all = True
for K in KS:
    for lab, ref, summ, res, src in (("encoder", "encoder", so, old, "gpu.md"),
                                     ("topk", "topk", so, old, "gpu.md"),
                                     ("batchtopk", "batchtopk", so, old, "gpu.md"),
                                     ("matryoshka", "matryoshka", so, old, "gpu.md"),
                                     ("encoder-wr", "encoder-wr", s3, g3, "gpu3")):  # fmt: skip
        rid = f"{lab}-K{K}"
        ln = [new["l0"][n] for n in names(sn, rid)]
        lo = [res["l0"][n] for n in names(summ, f"{ref}-K{K}")]
        worst = max(abs(a - b) for a, b in zip(ln, lo, strict=True))
        ok = worst <= 0.5
        line = (f"- K = {K} {lab} L0 per seed: gpu4 {fmt(ln)}, {src} {fmt(lo)}, largest "
                f"difference {worst:.4f} (rule: <= 0.5)")  # fmt: skip
        if lab in ("topk", "batchtopk", "matryoshka"):
            cn, co = ce(sn, rid, "own decoder"), ce(so, rid, "own decoder")
            d = abs(sum(cn) / 3 - sum(co) / 3)
            ok &= d <= 0.002
            dn = [round(new["dead_fraction"][n] * K) for n in names(sn, rid)]
            do = [round(old["dead_fraction"][n] * K) for n in names(so, rid)]
            line += (f"; CE-loss recovered seed mean {sum(cn) / 3:.5f} against {sum(co) / 3:.5f}, "
                     f"difference {d:.5f} (rule: <= 0.002); dead per seed {dn} against {do}")  # fmt: skip
        ok_all &= ok
        print(line + f": {'pass' if ok else 'FAIL'}")
raw = "raw residual (ceiling)"
same_raw = all(json.dumps(old["probing"][v][raw], sort_keys=True)
               == json.dumps(new["probing"][v][raw], sort_keys=True)
               for v in ("saebench", "standardized"))  # fmt: skip
ok_all &= same_raw
print(f"- raw residual probe accuracies (both probe variants, every task, k and full) equal to "
      f"gpu.md's: {'pass' if same_raw else 'FAIL'}")  # fmt: skip
print(f"- **reproduction rule: {'PASS' if ok_all else 'FAIL'}**")
for other, tag in ((old, "gpu.md"), (g3, "gpu3")):
    for sect in ("l0", "dead_fraction"):
        common = [n for n in other[sect] if n in new[sect]]
        same = sum(other[sect][n] == new[sect][n] for n in common)
        print(f"- bit-identical {sect} with {tag}: {same} of the {len(common)} shared entries")
    for v in ("saebench", "standardized"):
        common = [n for n in other["probing"][v] if n in new["probing"][v]]
        same = sum(json.dumps(other["probing"][v][n], sort_keys=True)
                   == json.dumps(new["probing"][v][n], sort_keys=True) for n in common)  # fmt: skip
        print(f"- bit-identical probing ({v}) with {tag}: {same} of the {len(common)} shared "
              "read-outs")  # fmt: skip
    ce_o = {(b, k): x for b, d in other["downstream"].items() for k, x in d.items()}
    ce_n = {(b, k): x for b, d in new["downstream"].items() for k, x in d.items()}
    common = [k for k in ce_o if k in ce_n]
    print(f"- bit-identical downstream entries with {tag} (CE, KL, CE-loss recovered): "
          f"{sum(ce_o[k] == ce_n[k] for k in common)} of {len(common)}")  # fmt: skip

print("\n## Dead fraction per seed (s0 / s1 / s2), trained and untrained (question 1)\n")
print("Dead = latents never active on the 32,512 held-out tokens (for a TopK read-out: never in "
      "a token's top k), as a fraction of K; counts in gpu4_compare.md.\n")  # fmt: skip
print("| K | row | trained: dead fraction | untrained init: dead fraction | L0 |")
print("|---|---|---|---|---|")
for K in KS:
    for lab in ("encoder", "topk", "topk-uncentred", "batchtopk", "batchtopk-uncentred",
                "matryoshka", "matryoshka-uncentred", "encoder-wr", "encoder-wr-topk",
                "encoder-topk"):  # fmt: skip
        ns = names(sn, f"{lab}-K{K}")
        tr = [new["dead_fraction"][n] for n in ns]
        un = [new["dead_fraction"].get(f"{n} (untrained)") for n in ns]
        uns = "-" if None in un else fmt(un, 4)
        print(f"| {K} | {lab} | {fmt(tr, 4)} | {uns} | {fmt([new['l0'][n] for n in ns], 1)} |")

print("\n## Per seed: probing mean over k and CE-loss recovered, beside the controls\n")
print("| K | row | L0 | probing s0 / s1 / s2 | untrained twin s0 / s1 / s2 | random @ L0 "
      "s0 / s1 / s2 | CE-loss rec. s0 / s1 / s2 | CE random @ L0 |")  # fmt: skip
print("|---|---|---|---|---|---|---|---|")
twin_of = {r.get("label") or r["family"]: r["twin_of"] for r in new["plan"]["rows"]
           if r.get("twin_of")}  # fmt: skip
for K in KS:
    for lab, row in cmp4[f"K{K}"]["rows"].items():
        rid = f"{lab}-K{K}"
        twin = f"{twin_of.get(lab, lab)}-K{K} (untrained)"
        rnd = f"random dirs @ L0 of {rid}"
        tw = fmt(per_seed(sn, twin), 3) if twin in sn["probing"] else "-"
        c = ce(sn, rid, row["readout"])
        cr = ce(sn, rnd, "post-hoc least squares")
        print(f"| {K} | {lab} | {row['l0']:.1f} | {fmt(per_seed(sn, rid), 3)} | {tw} | "
              f"{fmt(per_seed(sn, rnd), 3)} | {fmt(c, 4)} | {fmt(cr, 4)} |")

print("\n## Seed means: CE-loss recovered, KL and FVU, each row beside its controls\n")
print("Read-out: own decoder (SAEs), post-hoc least squares (encoder rows, random directions); "
      "KL in nats/token; FVU on the held-out tokens (all / typical, without the 6 outliers); "
      "the untrained twin at its own L0.\n")  # fmt: skip
print("| K | row | read-out | L0 | CE-loss rec. | KL | FVU | FVU typical | untrained twin: "
      "L0, CE-loss rec., FVU | random @ L0: CE-loss rec., KL, FVU |")  # fmt: skip
print("|---|---|---|---|---|---|---|---|---|---|")


def mean(xs) -> float:
    return sum(xs) / len(xs)


for K in KS:
    for lab, row in cmp4[f"K{K}"]["rows"].items():
        rid, ro = f"{lab}-K{K}", row["readout"]
        d = sn["downstream"][f"{rid} | {ro}"]
        tw = sn["downstream"].get(f"{twin_of.get(lab, lab)}-K{K} (untrained) | {ro}")
        rd = sn["downstream"][f"random dirs @ L0 of {rid} | post-hoc least squares"]
        tws = ("-" if tw is None else f"{mean(tw['l0']):.1f}, {mean(tw['ce_loss_recovered']):.4f}, "
               f"{mean(tw['fvu']):.3f}")  # fmt: skip
        print(f"| {K} | {lab} | {ro} | {row['l0']:.1f} | {mean(d['ce_loss_recovered']):.4f} | "
              f"{mean(d['kl']):.3f} | {mean(d['fvu']):.3f} | {mean(d['fvu_typical']):.3f} | {tws} | "
              f"{mean(rd['ce_loss_recovered']):.4f}, {mean(rd['kl']):.3f}, {mean(rd['fvu']):.3f} |")  # fmt: skip
