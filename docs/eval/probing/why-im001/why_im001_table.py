"""Tables and rules of the CPU study why-im001 (docs/eval/probing/why-im001-PLAN.md) from the
arms' files in this folder (<arm>/results.json, diag.json, arm.json; why_run.py writes them).

    PYTHONPATH=src python docs/eval/probing/why-im001/why_im001_table.py   # -> why-im001.json

Prints the markdown tables and the rules' readings; writes every number to why-im001.json.
P = SAEBench-probe accuracy, mean over the 5 datasets and k in {1, 2, 5, 10, 20} (gpu8's
"probing"); G = P - max(P of the untrained twin, P of random directions at the row's L0).
"""

from __future__ import annotations

import json
from pathlib import Path

from implicit_em.eval.probing_study.compare import row_stats
from implicit_em.eval.probing_study.report import row_id, summarize

HERE = Path(__file__).resolve().parent
ARMS = ("x1", "x4-im0.01", "b1024", "tokennorm", "x4-encoder", "x4-im0.04", "x1-s1", "b1024-x4")
MARGIN = 0.02
LSQ = "post-hoc least squares"


def p_std(summ: dict, rid: str) -> float:
    """P of the standardised-feature probe variant (one seed): mean over datasets and k."""
    acc = summ["probing"][rid]["acc"]["standardized"]
    return sum(acc[k][0] for k in summ["ks"]) / len(summ["ks"])


def arm_rows(arm: str) -> list[dict] | None:
    """Every trained row of one arm beside its controls, or None when the arm has not run."""
    d = HERE / arm
    if not (d / "arm.json").is_file():
        return None
    res = json.loads((d / "results.json").read_text())
    diag = json.loads((d / "diag.json").read_text())
    info = json.loads((d / "arm.json").read_text())
    summ = summarize(res)
    out = []
    for name, row in res["rows"].items():
        if res["kinds"].get(name) != "trained":
            continue
        rid = row_id(name)
        twin_of = row["row"].get("twin_of")
        twin_name = name.replace(row_id(name).split("-K")[0], twin_of, 1) if twin_of else name
        twin = row_id(twin_name) + " (untrained)"
        rand = f"random dirs @ L0 of {rid}"
        st = row_stats(summ, res, rid, LSQ)
        tw = row_stats(summ, res, twin, None)
        ra = row_stats(summ, res, rand, LSQ)
        fv = summ["downstream"].get(f"{rid} | {LSQ}", {}).get("fvu_typical", [None])
        last = res["train"][name]["last"] or {}
        out.append({
            "arm": arm, "row": rid.split("-K")[0], "name": name, "seed": info["seed"],
            "batch": info["batch"], "steps": res["train"][name]["steps"],
            "train_seconds": res["train"][name]["seconds"], "l0": st["l0"],
            "dead": st["dead"][0], "P": st["mean_k"], "acc_by_k": st["acc"],
            "P_standardized": p_std(summ, rid), "P_twin_standardized": p_std(summ, twin),
            "P_random_standardized": p_std(summ, rand),
            "P_twin": tw["mean_k"], "twin": twin, "l0_twin": tw["l0"],
            "P_random": ra["mean_k"], "l0_random": ra["l0"],
            "G": st["mean_k"] - max(tw["mean_k"], ra["mean_k"]),
            "ce_lsq": st.get("ce"), "ce_random_lsq": ra.get("ce"), "fvu_typical_lsq": fv[0],
            "last": {k: last.get(k) for k in ("lse", "var", "tc", "total") if k in last},
            "diag": diag[name], "diag_twin": diag.get(twin_name + " (untrained)")
            or diag.get(f"encoder-K{res['plan']['Ks'][0]}-s{info['seed']} (untrained)"),
            "tokennorm": info["tokennorm"],
        })  # fmt: skip
    return out


def word(d: float, yes: str, no: str) -> str:
    return yes if d > MARGIN else no


def close(d: float) -> bool:
    """Within 0.01 of the margin: the plan's trigger for a second seed."""
    return 0.01 <= abs(d) <= 0.03


def rules(rows: dict) -> dict:
    """The plan's rules 0-4 on the rows that ran (missing arms: "not run")."""

    def get(arm: str, row: str) -> dict | None:
        return next((r for r in rows.get(arm) or [] if r["row"] == row), None)

    out: dict = {}
    enc, im, im4 = get("x1", "encoder"), get("x1", "encoder-im0.01"), get("x1", "encoder-im0.04")
    if enc and im:
        low = im["l0"] < 0.25 * enc["l0"]
        below = im["G"] < -MARGIN
        out["0"] = {"l0_ratio": im["l0"] / enc["l0"], "G": im["G"], "l0_low": low,
                    "below_controls": below,
                    "word": "the CPU proxy reproduces gpu8's pattern" if low and below
                    else "not reproduced"}  # fmt: skip
    long = get("x4-im0.01", "encoder-im0.01")
    if im and long:
        d = long["P"] - im["P"]
        w = ("length rescues" if d > MARGIN and long["G"] >= -MARGIN else
             word(d, "length helps", "not length"))  # fmt: skip
        out["1"] = {"dP": d, "G_4x": long["G"], "word": w, "close": close(d)}
        e4 = get("x4-encoder", "encoder")
        if e4:
            out["1"]["encoder_4x_minus_im_4x"] = e4["P"] - long["P"]
    for key, other in (("2", im4), ("2-b1024", get("b1024", "encoder-im0.01"))):
        if im and other:
            d = other["P"] - im["P"]
            w = ("the batch-matched weight rescues it" if d > MARGIN and other["G"] >= -MARGIN
                 else word(d, "the batch factor matters", "not the batch factor"))  # fmt: skip
            out[key] = {"dP": d, "G": other["G"], "word": w, "close": close(d)}
    tn = get("tokennorm", "encoder-im0.01")
    if im and tn:
        d = tn["G"] - im["G"]
        out["3"] = {
            "dG": d,
            "word": word(d, "the norms matter", "not the norms"),
            "close": close(d),
        }
    if im:
        p = im["P_random"]
        out["4"] = {"P_random_at_l0": p, "l0": im["l0"],
                    "word": ("a code of that L0 can carry the tasks: low L0 alone does not explain it"
                             if p > 0.60 else "cause 4 cannot be excluded at this size"
                             if p < 0.55 else "undecided")}  # fmt: skip
    follow = {}  # the PLAN's follow-up rule: does the batch-matched balance reach its controls?
    for arm, row, base in (("x4-im0.04", "encoder-im0.04", im4),
                           ("b1024-x4", "encoder-im0.01", get("b1024", "encoder-im0.01"))):  # fmt: skip
        r = get(arm, row)
        if r is None:
            continue
        follow[arm] = {"G": r["G"], "reaches": r["G"] >= -MARGIN,
                       "word": "the batch-matched balance reaches its controls"
                       if r["G"] >= -MARGIN else "it does not",
                       "close": -0.03 <= r["G"] <= -0.01}  # fmt: skip
        if base:
            d = r["P"] - base["P"]
            follow[arm] |= {"dP_vs_1x": d, "length_word": word(d, "length helps", "not length")}
    if follow:
        reach = [a for a, f in follow.items() if f["reaches"]]
        out["follow-up"] = {"arms": follow, "reaches": reach,
                            "word": "reaches its controls" if reach else "it does not"}  # fmt: skip
        e4, i4 = get("x4-encoder", "encoder"), get("x4-im0.04", "encoder-im0.04")
        if e4 and i4:
            out["follow-up"]["encoder_4x_minus_im0.04_4x"] = e4["P"] - i4["P"]
    return out


def f3(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def main() -> None:
    rows = {arm: arm_rows(arm) for arm in ARMS}
    print(
        "| arm | row | B | steps | L0 | dead | P | P twin | P random@L0 (its L0) | G | "
        "FVU lsq (typical) | CE lsq (8 ctx) | CE random@L0 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for arm, rs in rows.items():
        if rs is None:
            print(f"| {arm} | not run | | | | | | | | | | | |")
            continue
        for r in rs:
            print(f"| {arm} | {r['row']} | {r['batch']} | {r['steps']} | {r['l0']:.1f} | "
                  f"{r['dead']} | {f3(r['P'])} | {f3(r['P_twin'])} | {f3(r['P_random'])} "
                  f"({r['l0_random']:.0f}) | {r['G']:+.3f} | {f3(r['fvu_typical_lsq'])} | "
                  f"{f3(r['ce_lsq'])} | {f3(r['ce_random_lsq'])} |")  # fmt: skip
    print()
    print("| arm | row | P standardised | twin | random@L0 |")
    print("|---|---|---|---|---|")
    for arm, rs in rows.items():
        for r in rs or []:
            print(f"| {arm} | {r['row']} | {f3(r['P_standardized'])} | "
                  f"{f3(r['P_twin_standardized'])} | {f3(r['P_random_standardized'])} |")  # fmt: skip
    print()
    keys = ("zero_code_tokens", "spearman_l0_norm", "spearman_mass_norm",
            "mass_share_top1pct_norm", "mass_share_first_token_held",
            "mass_share_first_token_passages", "effective_latents", "latents_on_any_passage",
            "latents_on_1pct_passages", "zero_pooled_passages", "pooled_cosine_1000_pairs")  # fmt: skip
    print("| arm | row | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for arm, rs in rows.items():
        for r in rs or []:
            for tag, dg in (("", r["diag"]), (" (twin)", r["diag_twin"])):
                if tag and r["row"] != "encoder" and arm != "x4-im0.01":
                    continue
                print(f"| {arm} | {r['row']}{tag} | " + " | ".join(
                    f"{dg[k]:.3f}" if isinstance(dg[k], float) else str(dg[k]) for k in keys) + " |")  # fmt: skip
    print()
    print("| arm | row | last lse | last var | last tc |")
    print("|---|---|---|---|---|")
    for arm, rs in rows.items():
        for r in rs or []:
            la = r["last"]
            print(f"| {arm} | {r['row']} | " + " | ".join(
                f"{la[k]:.4g}" if la.get(k) is not None else "-" for k in ("lse", "var", "tc")) + " |")  # fmt: skip
    ru = rules(rows)
    print()
    for key, r in ru.items():
        print(f"rule {key}: " + json.dumps(r))
    (HERE / "why-im001.json").write_text(json.dumps({"rows": rows, "rules": ru,
                                                     "margin": MARGIN}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
