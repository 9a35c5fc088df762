"""Learning rate x batch size for the decoder-free encoder, CPU `mini` recipe (issue 18): the
tables and the rules of docs/eval/synthetic/cpu-lr-batch-PLAN.md (fixed before the run), from
docs/eval/synthetic/cpu-lr-batch/*/results.json and the committed encoder seed 0 of
cpu-variants-A (the reproduction check).

Run from the repository root: python docs/eval/synthetic/cpu_lr_batch_table.py
It prints two markdown tables and the rules, and writes docs/eval/synthetic/cpu-lr-batch.json.
"""

import json
from pathlib import Path

from implicit_em.eval.synthetic import _fmt, summarise
from implicit_em.eval.verdict import MARGIN, apart

ROOT = Path("docs/eval/synthetic")
GRID = ROOT / "cpu-lr-batch"
LRS, BATCHES = (3e-4, 1e-3, 3e-3), (256, 1024, 4096)
ORDER = ("encoder", "encoder-wr", "encoder-lse-b1024", "topk")
COLS = [("MCC", "mcc", 3), ("MCC untrained", "mcc_untrained", 3),
        ("MCC random@L0", "mcc_random_at_l0", 3), ("L0", "l0", 1), ("dead", "dead_latents", 0),
        ("F1", "f1", 3), ("covered", "features_covered", 0),
        ("cos>=0.9", "features_cos_0.9", 0)]  # fmt: skip
# The last history record (the mean over the last log window): the unweighted terms, the
# mean encoder row norm, and each term's share of the gradient.
TERMS = [("row norm", "w_row_norm", 2), ("lse / B", "lse_per_sample", 3), ("var", "var", 0),
         ("tc", "tc", 0), ("wr", "wr", 0), ("share lse", "gshare_lse", 3),
         ("share var", "gshare_var", 3), ("share tc", "gshare_tc", 3),
         ("share wr", "gshare_wr", 3)]  # fmt: skip


def cell_rows(lr: float, b: int) -> list[dict]:
    path = GRID / f"lr{lr:g}-b{b}" / "results.json"
    return json.loads(path.read_text())["rows"]


def stat(vals: list[float]) -> dict:
    if not vals:
        return {"mean": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals)}


def end_terms(rows: list[dict], b: int) -> dict:
    out = {}
    for _, key, _ in TERMS:
        vals = []
        for r in rows:
            last = r["history"][-1]
            if key == "lse_per_sample" and "lse" in last:
                vals.append(last["lse"] / b)
            elif key in last:
                vals.append(last[key])
        out[key] = stat(vals)
    return out


def mccs(rows: list[dict], name: str) -> list[float]:
    return [r["trained"]["mcc"] for r in sorted(rows, key=lambda r: r["seed"])
            if r["variant"] == name]  # fmt: skip


def controls(rows: list[dict], name: str) -> list[float]:
    return [max(r["untrained"]["mcc"], r["trained"]["random_at_l0"]["mcc"])
            for r in rows if r["variant"] == name]  # fmt: skip


def print_table(summary: list[dict], cols: list[tuple], steps: bool) -> None:
    """One markdown table: a row per (variant, lr, B), the columns cols (title, key, digits)."""
    head = "| variant | lr | B | " + ("steps | " if steps else "")
    print(head + " | ".join(c[0] for c in cols) + " |")
    print("|---|---|---|" + ("---|" if steps else "") + "---|" * len(cols))
    for s in summary:
        cells = f"| {s['variant']} | {s['lr']:g} | {s['batch_size']} | "
        cells += f"{s['steps']} | " if steps else ""
        print(cells + " | ".join(_fmt(s[k], nd) for _, k, nd in cols) + " |")
    print()


def main() -> None:
    cells = {(lr, b): cell_rows(lr, b) for lr in LRS for b in BATCHES}
    summary = []
    for (lr, b), rows in cells.items():
        for s in summarise(rows):
            mine = [r for r in rows if r["variant"] == s["variant"]]
            summary.append({**s, "lr": lr, "batch_size": b, "steps": 307_200 // b,
                            **end_terms(mine, b)})  # fmt: skip
    summary.sort(key=lambda s: (ORDER.index(s["variant"]), s["lr"], s["batch_size"]))

    print_table(summary, COLS, steps=True)
    print_table(summary, TERMS, steps=False)

    def m(name, lr, b):
        return mccs(cells[(lr, b)], name)

    check = json.loads((GRID / "check-b512" / "results.json").read_text())["rows"][0]
    ref0 = next(r for r in json.loads((ROOT / "cpu-variants-A" / "results.json").read_text())
                ["rows"] if r["variant"] == "encoder" and r["seed"] == 0)  # fmt: skip
    d = check["trained"]["mcc"] - ref0["trained"]["mcc"]
    rules: dict = {"0_reproduction": {"this_run": check["trained"]["mcc"],
                                      "committed": ref0["trained"]["mcc"], "diff": d,
                                      "passed": abs(d) <= 0.002}}  # fmt: skip
    r1, r2 = {}, {}
    for v in ("encoder", "encoder-wr"):
        for b in BATCHES:
            for lr in (3e-4, 3e-3):
                r1[f"{v} B={b}: lr {lr:g} vs 1e-3"] = apart(m(v, lr, b), m(v, 1e-3, b), MARGIN)
        for lr in LRS:
            for b in (256, 4096):
                r2[f"{v} lr={lr:g}: B {b} vs 1024"] = apart(m(v, lr, b), m(v, lr, 1024), MARGIN)
    for b in (256, 4096):
        r2[f"topk lr=0.001: B {b} vs 1024"] = apart(m("topk", 1e-3, b), m("topk", 1e-3, 1024),
                                                   MARGIN)  # fmt: skip
    rules["1_lr"] = r1
    rules["1_lr_moves_mcc"] = any(v != "level" for v in r1.values())
    rules["2_batch"] = r2
    rules["2_batch_moves_mcc"] = any(v != "level" for k, v in r2.items() if "topk" not in k)
    enc_batch = {b: r2[f"encoder lr=0.001: B {b} vs 1024"] for b in (256, 4096)}
    r3 = {"applies": any(v != "level" for v in enc_batch.values())}
    for b in (256, 4096):
        r3[f"encoder-lse-b1024 B={b} vs encoder B=1024"] = apart(
            m("encoder-lse-b1024", 1e-3, b), m("encoder", 1e-3, 1024), MARGIN
        )
        r3[f"encoder-lse-b1024 B={b} vs encoder B={b}"] = apart(
            m("encoder-lse-b1024", 1e-3, b), m("encoder", 1e-3, b), MARGIN
        )
        r3[f"encoder B={b} vs encoder B=1024"] = enc_batch[b]
    rules["3_balance"] = r3
    r4 = {}
    for v in ("encoder", "encoder-wr"):
        best = max(((lr, b) for lr in LRS for b in BATCHES),
                   key=lambda c, v=v: sum(m(v, *c)) / len(m(v, *c)))  # fmt: skip
        r4[v] = {"best_cell": {"lr": best[0], "batch_size": best[1]},
                 "mean_mcc": sum(m(v, *best)) / 3,
                 "vs_encoder_default": apart(m(v, *best), m("encoder", 1e-3, 1024), MARGIN),
                 "vs_topk_same_B": apart(m(v, *best), m("topk", 1e-3, best[1]), MARGIN)}  # fmt: skip
    vs_ctrl = {}
    for (lr, b), rows in cells.items():
        for v in ORDER:
            if mccs(rows, v):
                vs_ctrl[f"{v} lr={lr:g} B={b}"] = apart(mccs(rows, v), controls(rows, v), MARGIN)
    r4["vs_controls"] = vs_ctrl
    rules["4_best"] = r4
    rules["5_gpu_item"] = r4["encoder"]["vs_encoder_default"] == "above"

    print(f"- Rule 0 (reproduction): {check['trained']['mcc']:.4f} against "
          f"{ref0['trained']['mcc']:.4f} ({d:+.4f}): "
          f"{'passed' if rules['0_reproduction']['passed'] else 'FAILED'}")  # fmt: skip
    for k in ("1_lr", "2_batch", "3_balance"):
        print(f"- Rule {k}:")
        for name, out in rules[k].items():
            print(f"  - {name}: {out}")
    for v in ("encoder", "encoder-wr"):
        print(f"- Rule 4, {v}: {r4[v]}")
    below = [k for k, v in vs_ctrl.items() if v != "above"]
    print(f"- Rule 4, cells not above their controls: {below or 'none'}")
    print(f"- Rule 5 (a GPU item): {'yes' if rules['5_gpu_item'] else 'no'}")
    (ROOT / "cpu-lr-batch.json").write_text(json.dumps({"summary": summary, "rules": rules},
                                                       indent=1) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
