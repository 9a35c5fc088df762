"""The verdicts of runs 2, 3 and 4 of the GPU probing study (issue 18).

`compare` reads run 2's rows (tied TopK models, a JumpReLU / L1 sweep, the encoder's
responsibilities) beside run 1's (docs/eval/probing/gpu.md) by the rules fixed in
docs/eval/probing/gpu2_plan.md; `compare3` reads run 3's variant rows against the reference
encoder, their controls and the SAE baselines by the rules of gpu3_plan.md, with
`eval.verdict`'s margin, L0 match and model kinds; `compare4` reads run 4's centred / uncentred
SAE pairs and the TopK read-out rows by the rules of gpu4_plan.md, on top of compare3's
per-row statistics. Each returns (markdown, numbers). compare and compare3 moved from
scripts/probing_gpu.py, unchanged.

The per-run scripts docs/eval/probing/gpu6/compare6.py, gpu7/compare7.py and gpu8/compare8.py
share the pieces at the end of this module: `row_stats_ce` (a row's statistics with its per-seed
CE-loss recovered), `pair_words` (one row against another), `controls` (a row against its
untrained twin and random directions), `entry` (a row's entry in their rule tables) and the
cells of those tables (`entry_cells`, `controls_cells`, `ce_cell`, `pair_cell`, `rule_row`,
`unmeasured_row`).
"""

from __future__ import annotations

import json
import math

import numpy as np

from implicit_em.eval.probing_study.plan import label_of
from implicit_em.eval.probing_study.report import ceiling_values, input_dim, summarize
from implicit_em.eval.verdict import RAW_ROW, apart, ceiling_label, matched_l0
from implicit_em.families.registry import family_by_label

OLD_ROWS = {"batchtopk": "batchtopk", "matryoshka": "matryoshka", "jumprelu": "jumprelu(l0_coef=0.001)",
            "l1": "l1(l1_c=0.5)"}  # fmt: skip
"""gpu.md's rows read beside run 2's (its JumpReLU and L1 settings named as run 2's sweep)."""


def row_stats(summ: dict, res: dict, rid: str, readout: str | None) -> dict | None:
    """L0, dead latents (per seed), SAEBench-probe accuracy per k and averaged over k (per
    seed, then mean / min / max), CE-loss recovered and KL through `readout`: seed means."""
    r = summ["probing"].get(rid)
    if r is None:
        return None
    ks = summ["ks"]
    acc = r["acc"]["saebench"]
    per_seed = [float(np.mean([acc[k][i] for k in ks])) for i in range(len(acc[ks[0]]))]
    K = int(rid.split("-K")[1].split()[0].split("-")[0]) if "-K" in rid else None
    out = {"seeds": r["seeds"], "l0": float(np.mean(r["l0"])) if r["l0"] else None,
           "dead": [round(res["dead_fraction"][n] * K) for n in r["names"]
                    if n in res.get("dead_fraction", {})],
           "acc": {k: float(np.mean(acc[k])) for k in ks},
           "mean_k": float(np.mean(per_seed)), "mean_k_range": [min(per_seed), max(per_seed)]}  # fmt: skip
    c = summ["downstream"].get(f"{rid} | {readout}") if readout else None
    if c:
        out.update(readout=readout, ce=float(np.mean(c["ce_loss_recovered"])),
                   ce_range=[min(c["ce_loss_recovered"]), max(c["ce_loss_recovered"])],
                   kl=float(np.mean(c["kl"])))  # fmt: skip
    return out


TIED_FAMILIES = {
    "tied-topk": family_by_label("tied-topk"),
    "tied-topk-im-3.0": family_by_label("tied-topk-im"),
}
"""The registry family of each tied row of gpu2's plan (for its kind in the verdict)."""


def compare(new: dict, old: dict) -> tuple[str, dict]:
    """Run 2's rows beside gpu.md's, and the moonshot verdict by the rules fixed in
    docs/eval/probing/gpu2_plan.md. Returns (markdown, numbers). Each K's table starts with
    the ceiling (`eval.verdict.ceiling_label`: the raw residual's probe on all D dimensions,
    also numbers[K]["ceiling"]), then the raw residual read k-sparse (`RAW_ROW`, a baseline)."""
    from types import SimpleNamespace

    from implicit_em.eval.verdict import DECODER_FREE, HYBRID, variant_kind

    sn, so = summarize(new), summarize(old)
    own, lsq = "own decoder", "post-hoc least squares"
    full = ceiling_values(sn)
    ceiling = (ceiling_label(input_dim(new)), float(np.mean(full))) if full else None
    numbers: dict = {}
    lines: list[str] = []
    ks = sn["ks"]
    for K in new["plan"]["Ks"]:
        rows: list[tuple[str, str, dict]] = []  # (label, source, stats)

        def add(rid, readout, source="run 2", label=None, summ=sn, res=new, rows=rows):
            st = row_stats(summ, res, rid, readout)
            if st is not None:
                rows.append((label or rid, source, st))
            return st

        add(RAW_ROW, None)  # the raw residual read k-sparse: a baseline
        enc = add(f"encoder-K{K}", lsq)
        add(f"encoder-K{K} (untrained)", lsq, "gpu.md", summ=so, res=old)
        add(f"random dirs @ L0 of encoder-K{K}", lsq)
        add(f"encoder[r]-K{K}", None)
        add(f"encoder[r]-K{K} (untrained)", None)
        topk = add(f"topk-K{K}", own)
        add(f"random dirs @ L0 of topk-K{K}", lsq)
        base = {f"topk-K{K}": topk}
        for short in ("batchtopk", "matryoshka"):
            base[f"{short}-K{K} (gpu.md)"] = add(f"{short}-K{K}", own, "gpu.md",
                                                 f"{short}-K{K} (gpu.md)", so, old)  # fmt: skip
        sweep: dict[str, list] = {"jumprelu": [], "l1": []}
        for fam in sweep:
            st = add(f"{fam}-K{K}", own, "gpu.md", f"{OLD_ROWS[fam]}-K{K} (gpu.md)", so, old)
            if st:
                sweep[fam].append((f"{OLD_ROWS[fam]}-K{K} (gpu.md)", st))
            for rid in sorted(sn["probing"], key=str):
                if rid.startswith(f"{fam}(") and rid.endswith(f"-K{K}"):
                    st = add(rid, own)
                    add(f"random dirs @ L0 of {rid}", lsq)
                    sweep[fam].append((rid, st))
        matched = {}
        for fam, pts in sweep.items():
            if enc and pts:
                name, st = min(pts, key=lambda p: abs(math.log(p[1]["l0"] / enc["l0"])))
                ratio = st["l0"] / enc["l0"]
                matched[fam] = {"row": name, "l0_ratio": ratio, "within_1.25": 0.8 <= ratio <= 1.25}
                if matched[fam]["within_1.25"]:
                    base[name] = st
        models = {}
        for m in ("tied-topk", "tied-topk-im-3.0"):
            st = add(f"{m}-K{K}", own)
            unt = add(f"tied-topk-K{K} (untrained)", own) if m == "tied-topk" else None
            rnd = add(f"random dirs @ L0 of {m}-K{K}", lsq)
            models[m] = (st, rnd)
            if unt is not None:
                models["untrained"] = unt
        base = {n: st for n, st in base.items() if st}
        best_name = max(base, key=lambda n: base[n]["mean_k"]) if base else None
        best = base[best_name] if best_name else None
        verdict = {"encoder_l0": enc["l0"] if enc else None, "matched_sweep": matched,
                   "best_baseline": best_name, "best_mean_k": best["mean_k"] if best else None,
                   "topk_ce": topk.get("ce") if topk else None, "models": {}}  # fmt: skip
        unt = models.get("untrained")
        for m in ("tied-topk", "tied-topk-im-3.0"):
            st, rnd = models[m]
            if not st or not best or not topk:
                continue
            v = {"mean_k": st["mean_k"], "probe_gap": st["mean_k"] - best["mean_k"],
                 "ce": st.get("ce"), "ce_gap": st.get("ce", float("nan")) - topk["ce"],
                 "dead": st["dead"], "probe_met": st["mean_k"] >= best["mean_k"] - 0.005,
                 "ce_met": st.get("ce", -1) >= topk["ce"] - 0.01,
                 "dead_met": bool(st["dead"]) and max(st["dead"]) == 0,
                 "above_random": rnd is not None and st["mean_k_range"][0] > rnd["mean_k_range"][1],
                 "above_untrained": unt is not None
                 and st["mean_k_range"][0] > unt["mean_k_range"][1]}  # fmt: skip
            # gpu2_plan's three fixed criteria, then the target: those, clearly above
            # both controls, and a decoder-free or hybrid model (eval.verdict's kinds)
            v["criteria_met"] = v["probe_met"] and v["ce_met"] and v["dead_met"]
            v["kind"] = variant_kind(SimpleNamespace(family=TIED_FAMILIES[m]))
            v["target_met"] = (v["criteria_met"] and v["above_random"] and v["above_untrained"]
                               and v["kind"] in (DECODER_FREE, HYBRID))  # fmt: skip
            verdict["models"][m] = v
        numbers[f"K{K}"] = {"verdict": verdict, "rows": {lab: st for lab, _, st in rows}}
        lines += ["", f"### K = {K}", "",
                  "| row | source | L0 | dead (per seed) | "
                  + " | ".join(f"k={k}" for k in ks)
                  + " | mean over k [seed range] | CE-loss recovered [range] | KL | read-out |",
                  "|---|---|---|---|" + "---|" * len(ks) + "---|---|---|---|"]  # fmt: skip
        if ceiling is not None:  # the same probe on all D dimensions: one number, every k
            numbers[f"K{K}"]["ceiling"] = {"row": ceiling[0], "full": ceiling[1]}
            lines.append(f"| {ceiling[0]} | run 2 | - | - | " + f"{ceiling[1]:.3f} | " * len(ks)
                         + f"{ceiling[1]:.3f} | - | - | - |")  # fmt: skip
        for lab, src, st in rows:
            ce = (
                f"{st['ce']:.3f} [{st['ce_range'][0]:.3f}, {st['ce_range'][1]:.3f}]"
                if "ce" in st
                else "-"
            )
            kl = f"{st['kl']:.3f}" if "kl" in st else "-"
            l0 = f"{st['l0']:.1f}" if st["l0"] is not None else "-"
            dead = "/".join(str(d) for d in st["dead"]) or "-"
            lines.append(f"| {lab} | {src} | {l0} | {dead} | "
                         + " | ".join(f"{st['acc'][k]:.3f}" for k in ks)
                         + f" | {st['mean_k']:.3f} [{st['mean_k_range'][0]:.3f}, "
                         f"{st['mean_k_range'][1]:.3f}] | {ce} | {kl} | {st.get('readout', '-')} |")  # fmt: skip
        lines += ["", f"Matched sweep points: {json.dumps(matched)}",
                  f"Best SAE baseline at the encoder's L0: {best_name} "
                  f"({verdict['best_mean_k']:.3f} mean over k)" if best else "no baseline",
                  ""]  # fmt: skip
        for m, v in verdict["models"].items():
            lines.append(
                f"- **{m}**: probing {v['mean_k']:.3f} ({v['probe_gap']:+.3f} vs best), "
                f"CE-loss recovered {v['ce']:.3f} ({v['ce_gap']:+.3f} vs TopK {topk['ce']:.3f}), "
                f"dead {v['dead']}; above random dirs: {v['above_random']}, above untrained: "
                f"{v['above_untrained']}; the three criteria met: {v['criteria_met']} (probe "
                f"{v['probe_met']}, CE {v['ce_met']}, dead {v['dead_met']}); {v['kind']}; "
                f"target met (criteria, above both controls, decoder-free or hybrid): "
                f"{v['target_met']}"
            )
    return "\n".join(lines) + "\n", numbers


def target(v: dict, ref_l0: float, best: float | None, topk_ce: float) -> dict:
    """The issue's target criteria for one row's statistics v (l0, mean_k, ce, dead per seed,
    beats_controls), as runs 3 and 4 judge them: L0 matched to the reference encoder's
    (`eval.verdict.matched_l0`), probing >= the best SAE baseline's - 0.005 (None: no baseline,
    not met), CE-loss recovered >= TopK's - 0.01, 0 dead latents on every seed, above its
    controls."""
    return {"matched_l0": matched_l0(v["l0"], ref_l0),
            "probe_met": best is not None and v["mean_k"] >= best - 0.005,
            "ce_met": v["ce"] >= topk_ce - 0.01,
            "dead_met": bool(v["dead"]) and max(v["dead"]) == 0,
            "beats_controls": v["beats_controls"]}  # fmt: skip


def compare3(new: dict, baseline: dict) -> tuple[str, dict]:
    """Run 3's variant rows against the reference encoder, their controls and the SAE
    baselines, by the rules fixed in docs/eval/probing/gpu3_plan.md. baseline: gpu2's
    gpu2_compare.json (its best SAE baseline per K at the encoder's L0). Returns (markdown,
    numbers)."""
    from types import SimpleNamespace

    from implicit_em.eval.verdict import DECODER_FREE, HYBRID, MARGIN, variant_kind
    from implicit_em.families import FAMILIES

    def kind(r: dict) -> str:  # eval.verdict's kind of a plan row (pre-training: a hybrid)
        pre = r.get("pretrain")
        return variant_kind(SimpleNamespace(
            family=r["family"], pretrain_fraction=r.get("pretrain_fraction", 0.5) if pre else 0.0,
            pretrain=pre["family"] if isinstance(pre, dict) else "none"))  # fmt: skip

    sn = summarize(new)
    own, lsq = "own decoder", "post-hoc least squares"
    ref_label = next(label_of(r) for r in new["plan"]["rows"]
                     if r["family"] == new["plan"]["l0_reference"])  # fmt: skip
    labels = [(label_of(r), r) for r in new["plan"]["rows"]]
    numbers: dict = {}
    lines: list[str] = [
        f"Rules (gpu3_plan.md, fixed before the run): probing = SAEBench probe, mean over the "
        f"5 datasets and k in {sn['ks']}, per seed; A *above* / *below* B when A's worst seed "
        f"is more than {MARGIN} above B's best seed (or the other way round), else *level* "
        f"(`eval.verdict.MARGIN`); CE-loss recovered compared the same way with margin 0 "
        f"(seed ranges disjoint); L0s matched within `eval.verdict.matched_l0` (25 %)."
    ]
    for K in new["plan"]["Ks"]:

        def stats(label: str, tag: str = "", K=K) -> dict | None:
            rid = f"{label}-K{K}{tag}"
            ro = own if f"{rid} | {own}" in sn["downstream"] else lsq
            st = row_stats(sn, new, rid, ro)
            if st is not None:
                per = [
                    float(c)
                    for c in sn["downstream"].get(f"{rid} | {ro}", {}).get("ce_loss_recovered", [])
                ]
                st["ce_seeds"] = per
            return st

        ref = stats(ref_label)
        topk = next((stats(lab) for lab, r in labels if FAMILIES[r["family"]].uses_k
                     and "pretrain" not in r and not FAMILIES[r["family"]].tied), None)  # fmt: skip
        b = baseline.get(f"K{K}", {}).get("verdict", {})
        best_name, best = b.get("best_baseline"), b.get("best_mean_k")
        if topk is not None and (best is None or topk["mean_k"] > best):
            best_name, best = "topk (this run)", topk["mean_k"]
        per_row: dict = {}
        table = ["", f"### K = {K}", "",
                 "| row | L0 | dead (per seed) | probing mean over k [seeds] | untrained twin | "
                 "random @ L0 | beats controls | vs reference | CE-loss rec. [seeds] (read-out) "
                 "| CE vs reference |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for lab, r in labels:
            st = stats(lab)
            if st is None:
                continue
            twin = stats(r.get("twin_of", lab), " (untrained)")
            rnd = row_stats(sn, new, f"random dirs @ L0 of {lab}-K{K}", None)
            ctrl = [c for c in (twin, rnd) if c is not None]
            beats = bool(ctrl) and all(apart(list(st["mean_k_range"]), list(c["mean_k_range"]),
                                             MARGIN) == "above" for c in ctrl)  # fmt: skip
            v = {"kind": kind(r), "l0": st["l0"], "dead": st["dead"], "mean_k": st["mean_k"],
                 "mean_k_range": st["mean_k_range"], "ce": st.get("ce"),
                 "readout": st.get("readout"), "beats_controls": beats,
                 "twin_mean_k": twin["mean_k"] if twin else None,
                 "random_mean_k": rnd["mean_k"] if rnd else None}  # fmt: skip
            if ref is not None and lab != ref_label:
                v["probe_vs_reference"] = apart(list(st["mean_k_range"]),
                                                list(ref["mean_k_range"]), MARGIN)  # fmt: skip
                v["probe_delta"] = st["mean_k"] - ref["mean_k"]
                if st.get("ce_seeds") and ref.get("ce_seeds"):
                    v["ce_vs_reference"] = apart(st["ce_seeds"], ref["ce_seeds"], 0.0)
                    v["ce_delta"] = st["ce"] - ref["ce"]
            if (v["kind"] in (DECODER_FREE, HYBRID) and best is not None and topk is not None
                    and ref is not None and "ce" in st):  # fmt: skip
                v["target"] = target(v, ref["l0"], best, topk["ce"])
                v["target_met"] = all(v["target"].values())
            per_row[lab] = v
            rng = f"{st['mean_k']:.3f} [{st['mean_k_range'][0]:.3f}, {st['mean_k_range'][1]:.3f}]"
            ce = (f"{st['ce']:.3f} [{min(st['ce_seeds']):.3f}, {max(st['ce_seeds']):.3f}] "
                  f"({st['readout']})" if st.get("ce_seeds") else "-")  # fmt: skip
            table.append(
                f"| {lab} | {st['l0']:.1f} | {'/'.join(map(str, st['dead'])) or '-'} | {rng} | "
                f"{v['twin_mean_k'] if twin is None else format(twin['mean_k'], '.3f')} | "
                f"{'-' if rnd is None else format(rnd['mean_k'], '.3f')} | {beats} | "
                f"{v.get('probe_vs_reference', '-')} "
                f"({v.get('probe_delta', 0.0):+.3f}) | {ce} | {v.get('ce_vs_reference', '-')} |"
            )
        pre = {lab: r["pretrain"] for lab, r in labels if "pretrain" in r}
        pretrain = {}
        for lab, p in pre.items():
            if p == "none":
                continue
            ctl = next((c for c, q in pre.items() if q == "none"), None)
            if ctl in per_row and lab in per_row:
                a, c = stats(lab), stats(ctl)
                pretrain[lab] = {"control": ctl,
                                 "probe": apart(list(a["mean_k_range"]), list(c["mean_k_range"]),
                                                MARGIN),
                                 "probe_delta": a["mean_k"] - c["mean_k"],
                                 "ce": apart(a["ce_seeds"], c["ce_seeds"], 0.0),
                                 "ce_delta": a["ce"] - c["ce"],
                                 "dead": a["dead"], "dead_control": c["dead"]}  # fmt: skip
        dfree = [lab for lab, r in labels if not FAMILIES[r["family"]].uses_k and lab in per_row
                 and not FAMILIES[r["family"]].tied]  # fmt: skip
        best_var = max(dfree, key=lambda lab: per_row[lab]["mean_k"], default=None)
        numbers[f"K{K}"] = {"rows": per_row, "pretrain": pretrain, "best_baseline": best_name,
                            "best_baseline_mean_k": best, "topk_ce": topk["ce"] if topk else None,
                            "best_decoder_free": best_var}  # fmt: skip
        lines += table + [""]
        lines.append(f"- Best SAE baseline at the encoder's L0: {best_name} "
                     + ("(none)" if best is None else f"({best:.3f} mean over k)"))  # fmt: skip
        if best_var is not None:
            bv = per_row[best_var]
            lines.append(f"- Best decoder-free row: **{best_var}** (probing {bv['mean_k']:.3f}, "
                         f"beats its controls: {bv['beats_controls']}, vs reference: "
                         f"{bv.get('probe_vs_reference', 'is the reference')})")  # fmt: skip
        for lab, v in per_row.items():
            if "target_met" in v:
                miss = [k for k, ok in v["target"].items() if not ok]
                lines.append(f"- {lab}: target met: **{v['target_met']}**"
                             + (f" (misses: {', '.join(miss)})" if miss else ""))  # fmt: skip
        for lab, pv in pretrain.items():
            lines.append(f"- {lab} against {pv['control']} (same second half, random init): "
                         f"probing {pv['probe']} ({pv['probe_delta']:+.3f}), CE-loss recovered "
                         f"{pv['ce']} ({pv['ce_delta']:+.4f}), dead {pv['dead']} against "
                         f"{pv['dead_control']}")  # fmt: skip
    return "\n".join(lines) + "\n", numbers


W3_WORDS = {"survives": "survives the L0 match", "readout": "the read-out, not wr",
            "l0": "it was the L0", "unmatched": "L0 not matched"}  # fmt: skip
"""gpu4_plan.md rule W3's words (and W1's "L0 not matched", which replaces them)."""


def w3_word(vs_encoder: str, vs_readout: str, l0_matched: bool = True) -> str:
    """Rule W3 of docs/eval/probing/gpu4_plan.md: the word for `encoder-wr-topk` from its probing
    against `encoder` and against `encoder-topk` (each "above", "level" or "below",
    `eval.verdict.apart` with margin 0.01); "L0 not matched" when rule W1 fails."""
    if not l0_matched:
        return W3_WORDS["unmatched"]
    if vs_encoder != "above":
        return W3_WORDS["l0"]
    return W3_WORDS["survives"] if vs_readout == "above" else W3_WORDS["readout"]


def compare4(new: dict, baseline: dict) -> tuple[str, dict]:
    """Run 4's rules (docs/eval/probing/gpu4_plan.md, fixed before the run): each SAE family
    centred against uncentred (C1 dead latents, C2 the encoder's zero-dead win against each,
    C3 probing / CE-loss recovered and controls) and the weight-redundancy encoder read out
    through TopK at the reference encoder's L0 (W1 L0 matched, W2 beats its controls, W3 the
    word against `encoder` and `encoder-topk`, W4 the target with the best SAE baseline at an
    L0 matched to this run's encoder, W5 encoder-wr against its controls).

    new: run 4's merged results (a plan with `Plan.rows` whose uncentred rows carry
    `"model": {"centre": false}` and whose read-out rows carry `"readout": "topk"`); baseline:
    gpu2's gpu2_compare.json (its best SAE baseline per K, with that row's L0). Per-row
    statistics are `compare3`'s (probing = SAEBench probe, mean over datasets and k, per seed;
    dead = latents never active on the held-out tokens, counts per seed). Returns (markdown,
    numbers): numbers per K are compare3's with `best_baseline` / `best_baseline_mean_k` and
    each decoder-free row's `target` replaced by rule W4's, plus "baseline_candidates",
    "centring" (C1-C3 per family) and "wr" (W1-W5), so `eval.summary` reads it like
    gpu3_compare.json.
    """
    from implicit_em.eval.verdict import MARGIN, SAE

    _, n3 = compare3(new, baseline)
    sn = summarize(new)
    rows = new["plan"]["rows"]
    ref = next(label_of(r) for r in rows if r["family"] == new["plan"]["l0_reference"])
    pairs = [(next(label_of(c) for c in rows if c["family"] == r["family"]
                   and (c.get("model") or {}).get("centre", True) is not False), label_of(r))
             for r in rows if (r.get("model") or {}).get("centre", True) is False]  # fmt: skip
    readout = [r for r in rows if r.get("readout") == "topk"]
    wr_ro = next((label_of(r) for r in readout if (r.get("loss") or {}).get("lambda_wr")), None)
    plain_ro = next((label_of(r) for r in readout if not (r.get("loss") or {}).get("lambda_wr")),
                    None)  # fmt: skip
    wr = next((label_of(r) for r in rows if (r.get("loss") or {}).get("lambda_wr")
               and r.get("readout") is None), None)  # fmt: skip
    twin_of = {label_of(r): r["twin_of"] for r in rows if r.get("twin_of")}
    numbers: dict = {}
    lines = [
        "Rules C1-C3 and W1-W5 of docs/eval/probing/gpu4_plan.md (fixed before the run). "
        f"Probing = SAEBench probe, mean over the 5 datasets and k in {sn['ks']}, per seed; "
        f"*above* / *below* = `eval.verdict.apart` (worst seed more than the margin beyond the "
        f"other's best seed), else *level*; margin {MARGIN} for probing, 0 for CE-loss "
        "recovered and dead-latent counts; L0 matched = `eval.verdict.matched_l0` (25 %). "
        "Dead = latents never active on the 32,512 held-out tokens (for a TopK read-out: never "
        "in a token's top k), per seed."
    ]
    for K in new["plan"]["Ks"]:
        e = n3[f"K{K}"]
        per = e["rows"]

        def seeds(label: str, K=K, per=per) -> list[float]:
            c = sn["downstream"].get(f"{label}-K{K} | {per[label]['readout']}", {})
            return [float(x) for x in c.get("ce_loss_recovered", [])]

        def rng(label: str, per=per) -> list[float]:
            return list(per[label]["mean_k_range"])

        def twin_dead(label: str, K=K) -> list[int]:
            names = sn["probing"][f"{twin_of.get(label, label)}-K{K}"]["names"]
            return [round(new["dead_fraction"][f"{n} (untrained)"] * K) for n in names
                    if f"{n} (untrained)" in new["dead_fraction"]]  # fmt: skip

        ref_row = per[ref]
        ref_l0 = ref_row["l0"]
        cands = []
        b = baseline.get(f"K{K}", {}).get("verdict", {})
        if b.get("best_baseline"):  # its L0 from its row (no row: no L0, never matched)
            bl0 = baseline[f"K{K}"].get("rows", {}).get(b["best_baseline"], {}).get("l0")
            cands.append({"name": f"{b['best_baseline']} (gpu2's best baseline)", "l0": bl0,
                          "mean_k": b["best_mean_k"],
                          "matched": bl0 is not None and matched_l0(bl0, ref_l0)})  # fmt: skip
        for lab, v in per.items():
            if v["kind"] == SAE:
                cands.append({"name": f"{lab} (this run)", "l0": v["l0"], "mean_k": v["mean_k"],
                              "matched": matched_l0(v["l0"], ref_l0)})  # fmt: skip
        inside = [c for c in cands if c["matched"]]
        best = max(inside, key=lambda c: c["mean_k"], default=None)
        topk_ce = e["topk_ce"]
        for v in per.values():
            if "target" in v:
                v["target"] = target(v, ref_l0, None if best is None else best["mean_k"], topk_ce)
                v["target_met"] = all(v["target"].values())
        e["best_baseline"] = None if best is None else best["name"]
        e["best_baseline_mean_k"] = None if best is None else best["mean_k"]
        e["baseline_candidates"] = cands
        ref_dead = ref_row["dead"]
        centring = {}
        for c, u in pairs:
            dc, du = per[c]["dead"], per[u]["dead"]
            c1 = apart(dc, du, 0.0)
            enc0 = bool(ref_dead) and max(ref_dead) == 0
            centring[c] = {
                "uncentred": u, "dead": dc, "dead_uncentred": du,
                "dead_untrained": twin_dead(c), "dead_uncentred_untrained": twin_dead(u),
                "c1": {"below": "centring removes dead latents", "above": "centring adds dead latents",
                       "level": "level"}[c1],
                "c2_vs_uncentred": enc0 and min(du) > 0, "c2_vs_centred": enc0 and min(dc) > 0,
                "probe": apart(rng(c), rng(u), MARGIN), "probe_delta": per[c]["mean_k"] - per[u]["mean_k"],
                "ce": apart(seeds(c), seeds(u), 0.0), "ce_delta": per[c]["ce"] - per[u]["ce"],
                "l0": per[c]["l0"], "l0_uncentred": per[u]["l0"],
                "beats_controls": per[c]["beats_controls"],
                "beats_controls_uncentred": per[u]["beats_controls"],
            }  # fmt: skip
        w: dict = {}
        if wr_ro in per and plain_ro in per:
            v = per[wr_ro]
            l0_ok = matched_l0(v["l0"], ref_l0)
            vs_enc = apart(rng(wr_ro), rng(ref), MARGIN)
            vs_ro = apart(rng(wr_ro), rng(plain_ro), MARGIN)
            w = {"row": wr_ro, "readout_control": plain_ro, "w1_matched_l0": l0_ok,
                 "l0": v["l0"], "reference_l0": ref_l0,
                 "w2_beats_controls": v["beats_controls"] if l0_ok else None,
                 "w3_probe_vs_encoder": vs_enc, "w3_probe_vs_readout": vs_ro,
                 "w3_probe_delta_encoder": v["mean_k"] - ref_row["mean_k"],
                 "w3_probe_delta_readout": v["mean_k"] - per[plain_ro]["mean_k"],
                 "w3_ce_vs_encoder": apart(seeds(wr_ro), seeds(ref), 0.0),
                 "w3_ce_vs_readout": apart(seeds(wr_ro), seeds(plain_ro), 0.0),
                 "w3": w3_word(vs_enc, vs_ro, l0_ok),
                 "w4": {lab: {"target": per[lab]["target"], "met": per[lab]["target_met"]}
                        for lab in (wr_ro, plain_ro) if "target" in per[lab]},
                 "w5": None if wr not in per else {
                     "row": wr, "l0": per[wr]["l0"], "mean_k": per[wr]["mean_k"],
                     "beats_controls": per[wr]["beats_controls"],
                     "probe_vs_reference": per[wr].get("probe_vs_reference")}}  # fmt: skip
        e["centring"], e["wr"] = centring, w
        numbers[f"K{K}"] = e
        lines += ["", f"### K = {K}", "",
                  "| row | L0 | dead (per seed) | dead of the untrained twin | probing mean over k "
                  "[seeds] | untrained twin | random @ L0 | beats controls | CE-loss rec. [seeds] "
                  "(read-out) |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for lab, v in per.items():
            td = "/".join(map(str, twin_dead(lab))) or "-"
            cs = seeds(lab)
            ce = f"{v['ce']:.3f} [{min(cs):.3f}, {max(cs):.3f}] ({v['readout']})" if cs else "-"
            tw = "-" if v["twin_mean_k"] is None else f"{v['twin_mean_k']:.3f}"
            rd = "-" if v["random_mean_k"] is None else f"{v['random_mean_k']:.3f}"
            lines.append(f"| {lab} | {v['l0']:.1f} | {'/'.join(map(str, v['dead']))} | {td} | "
                         f"{v['mean_k']:.3f} [{v['mean_k_range'][0]:.3f}, {v['mean_k_range'][1]:.3f}]"
                         f" | {tw} | {rd} | {v['beats_controls']} | {ce} |")  # fmt: skip
        lines += ["", "Question 1, centred against uncentred (C1-C3):", "",
                  "| family | dead centred | dead uncentred | C1 | C2: encoder's 0 dead a win vs "
                  "uncentred / vs centred | probing centred - uncentred | CE centred - uncentred "
                  "| beats controls (centred / uncentred) |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for c, x in centring.items():
            lines.append(f"| {c} | {'/'.join(map(str, x['dead']))} | "
                         f"{'/'.join(map(str, x['dead_uncentred']))} | {x['c1']} | "
                         f"{'win' if x['c2_vs_uncentred'] else 'no win'} / "
                         f"{'win' if x['c2_vs_centred'] else 'no win (not against the centred ' + c + ')'} | "
                         f"{x['probe']} ({x['probe_delta']:+.3f}) | {x['ce']} ({x['ce_delta']:+.4f}) | "
                         f"{x['beats_controls']} / {x['beats_controls_uncentred']} |")  # fmt: skip
        lines += ["", "Best SAE baseline (W4 b): the highest seed-mean probing among these "
                  f"candidates at an L0 matched to this run's {ref} ({ref_l0:.1f}):", ""]  # fmt: skip
        lines += [f"- {c['name']}: L0 {'-' if c['l0'] is None else format(c['l0'], '.1f')}, "
                  f"probing {c['mean_k']:.4f}, "
                  f"{'matched' if c['matched'] else 'not matched (reported beside only)'}"
                  for c in cands]  # fmt: skip
        lines.append(f"- **best: {e['best_baseline']}** "
                     + ("" if best is None else f"({best['mean_k']:.4f})"))  # fmt: skip
        if w:
            lines += ["", "Question 2, the weight-redundancy encoder at the reference L0 (W1-W5):", "",
                      f"- W1: {wr_ro} L0 {w['l0']:.1f} against {ref} {ref_l0:.1f}: "
                      f"{'matched' if w['w1_matched_l0'] else 'NOT matched'}",
                      f"- W2: beats its controls (untrained init read out at k, random directions "
                      f"at its L0): {w['w2_beats_controls']}",
                      f"- W3: probing against {ref} {w['w3_probe_vs_encoder']} "
                      f"({w['w3_probe_delta_encoder']:+.3f}), against {plain_ro} "
                      f"{w['w3_probe_vs_readout']} ({w['w3_probe_delta_readout']:+.3f}); CE-loss "
                      f"recovered against {ref} {w['w3_ce_vs_encoder']}, against {plain_ro} "
                      f"{w['w3_ce_vs_readout']}: **{w['w3']}**"]  # fmt: skip
            for lab, t in w["w4"].items():
                miss = [k for k, ok in t["target"].items() if not ok]
                lines.append(f"- W4: {lab}: target met: **{t['met']}**"
                             + (f" (misses: {', '.join(miss)})" if miss else ""))  # fmt: skip
            if w["w5"]:
                x = w["w5"]
                lines.append(f"- W5: {x['row']} L0 {x['l0']:.1f}, probing {x['mean_k']:.3f}, "
                             f"beats its controls: {x['beats_controls']}, against {ref}: "
                             f"{x['probe_vs_reference']}")  # fmt: skip
    return "\n".join(lines) + "\n", numbers


def row_stats_ce(summ: dict, res: dict, rid: str, readout: str) -> dict | None:
    """`row_stats` through `readout`, with the per-seed CE-loss recovered ("ce_seeds", floats;
    [] when the row has no CE-loss recovered through that read-out)."""
    st = row_stats(summ, res, rid, readout)
    if st is not None:
        st["ce_seeds"] = [
            float(c) for c in summ["downstream"].get(f"{rid} | {readout}", {}).get(
                "ce_loss_recovered", [])
        ]  # fmt: skip
    return st


def pair_words(a: dict, b: dict) -> dict:
    """Row statistics a (`row_stats_ce`) against b: the probing word (`eval.verdict.apart`,
    margin `MARGIN`) and delta, both L0s, and the CE-loss recovered word (margin 0, per seed)
    and delta, or "not measured" when either has no per-seed CE-loss recovered."""
    from implicit_em.eval.verdict import MARGIN

    out = {"probing": apart(a["mean_k_range"], b["mean_k_range"], MARGIN),
           "probing_delta": a["mean_k"] - b["mean_k"], "l0": [a["l0"], b["l0"]]}  # fmt: skip
    if a.get("ce_seeds") and b.get("ce_seeds"):
        out["ce"] = apart(a["ce_seeds"], b["ce_seeds"], 0.0)
        out["ce_delta"] = a["ce"] - b["ce"]
    else:
        out["ce"] = "not measured"
    return out


def controls(st: dict, twin: dict | None, rnd: dict | None) -> dict:
    """A row's statistics st against its untrained twin and random directions at its own L0
    (None: not measured), each by `eval.verdict.apart` (margin `MARGIN`): "vs_twin" /
    "vs_random" with the control's probing and seed range; beats its controls = above both;
    the margin of its worst seed over the best control seed."""
    from implicit_em.eval.verdict import MARGIN

    v: dict = {}
    best = None
    for name, c in (("twin", twin), ("random", rnd)):
        if c is None:
            v[f"vs_{name}"] = "not measured"
            continue
        v[f"{name}_probing"], v[f"{name}_range"] = c["mean_k"], c["mean_k_range"]
        v[f"vs_{name}"] = apart(st["mean_k_range"], c["mean_k_range"], MARGIN)
        best = c["mean_k_range"][1] if best is None else max(best, c["mean_k_range"][1])
    v["beats_controls"] = v.get("vs_twin") == "above" and v.get("vs_random") == "above"
    if best is not None:
        v["margin_over_controls"] = st["mean_k_range"][0] - best
    return v


def entry(st: dict) -> dict:
    """A measured row's entry in a rule table, from its statistics (`row_stats_ce`): seeds,
    L0, dead per seed, probing (mean over k, seed range) and CE-loss recovered (mean, seeds)."""
    return {"measured": True, "seeds": st["seeds"], "l0": st["l0"], "dead": st["dead"],
            "probing": st["mean_k"], "probing_range": st["mean_k_range"],
            "ce": st.get("ce"), "ce_seeds": st.get("ce_seeds")}  # fmt: skip


def entry_cells(row: str, v: dict) -> str:
    """The first cells of an entry's (`entry`) table line: row | seeds | L0 | dead | probing
    [seed range] |, with a trailing space."""
    return (f"| {row} | {v['seeds']} | {v['l0']:.1f} | {'/'.join(map(str, v['dead']))} | "
            f"{v['probing']:.3f} [{v['probing_range'][0]:.3f}, {v['probing_range'][1]:.3f}] | ")  # fmt: skip


def controls_cells(v: dict) -> str:
    """An entry's control cells (`controls`): vs twin | vs random | margin over the best
    control (+0.000 when not measured), without the outer bars."""
    return f"{v['vs_twin']} | {v['vs_random']} | {v.get('margin_over_controls', 0.0):+.3f}"


def ce_cell(v: dict) -> str:
    """An entry's CE-loss recovered: mean [lowest seed, highest seed], or "-" without seeds."""
    cs = v["ce_seeds"] or []
    return f"{v['ce']:.4f} [{min(cs):.4f}, {max(cs):.4f}]" if cs else "-"


def pair_cell(p: dict | None, key: str = "probing") -> str:
    """One word of a `pair_words` result (`key`: "probing" or "ce") with its delta, "-" when
    there is no pair."""
    if not p:
        return "-"
    delta = p.get(f"{key}_delta")
    return p[key] + (f" ({delta:+.3f})" if delta is not None else "")


def rule_row(row: str, v: dict, pairs: list[dict | None]) -> str:
    """An entry's table line in gpu7/gpu8's rule tables: `entry_cells`, each pair's probing
    word (`pair_cell`), `controls_cells`, `ce_cell`, the pairs' CE words joined by " / ", and
    the entry's words ("(rule c only)" without any)."""
    return (entry_cells(row, v) + "".join(f"{pair_cell(p)} | " for p in pairs)
            + f"{controls_cells(v)} | {ce_cell(v)} | "
            + " / ".join(pair_cell(p, "ce") for p in pairs)
            + f" | {'; '.join(v.get('words', [])) or '(rule c only)'} |")  # fmt: skip


def unmeasured_row(row: str, columns: int) -> str:
    """The table line of a row that was not measured, in a table of `columns` columns."""
    return f"| {row} | 0 | not measured |" + " |" * (columns - 3)
