"""The rules of docs/eval/synthetic/cpu-why/im-small-why-PLAN.md (fixed before the runs) on
cpu-why/imwhy-long-lr{1e-3,3e-4}-{encoder-im0.01,encoder}/ and cpu-why/imwhy-k512-lr*/
(seed 0 each), against section 10's seed 0 (cpu-why/small-im/, small-im-encoder/).

Run from the repository root: python docs/eval/synthetic/cpu-why/im_small_why_table.py
Prints each rule's outcome, the trajectories and a markdown table; writes
cpu-why/im-small-why.json.
"""

import json

from why_rows import ROOT, mcc, print_table, rows

from implicit_em.eval.verdict import MARGIN, apart

IM, ENC = "encoder-im0.01", "encoder"
TAGS = {"1e-3": "lr1e-3", "3e-4": "lr3e-4"}
COLUMNS = ["MCC", "L0", "F1", "dead", "features covered", "untrained", "random at L0"]


def long_row(lr: str, v: str) -> dict:
    """Seed 0's row of the 4,500-step run of variant v at learning rate lr."""
    return rows(f"imwhy-long-{TAGS[lr]}-{v}", v, [0])[0]


def at(r: dict, step: int) -> float:
    """The row's MCC record at `step`."""
    return next(h["mcc"] for h in r["history"] if h["step"] == step)


def gap_words(a: str, d0: float, d1: float, what: str) -> str:
    """Rule 2's words for apart outcome a, with d0 = d(1,500) and d1 = d(4,500)."""
    change = d1 - d0
    trend = "grows" if change < -MARGIN else "shrinks" if change > MARGIN else "holds"
    if a == "above":
        return f"{what} reverses the order on small"
    if a == "level":
        return f"{what} closes the gap" if change > MARGIN else "no reversal"
    return f"{what} does not reverse it (to 3x the steps); the gap {trend}"


def controls(r: dict) -> str:
    """Rule 5: the final row against its untrained init and random directions at its L0."""
    c = [r["untrained"]["mcc"], r["trained"]["random_at_l0"]["mcc"]]
    m = r["trained"]["mcc"]
    return "above" if m > max(c) + MARGIN else "below" if m < min(c) - MARGIN else "level"


def main() -> None:
    out, lines, named = {}, [], []
    ref = {IM: rows("small-im", IM, [0, 1, 2])[0], ENC: rows("small-im-encoder", ENC, [0, 1, 2])[0]}
    a_long = {v: long_row("1e-3", v) for v in (IM, ENC)}
    for v in (IM, ENC):  # rule 1
        x, y = at(a_long[v], 1500), ref[v]["trained"]["mcc"]
        ok = abs(x - y) <= 0.002
        lines.append(f"rule 1, {v}: step 1,500 {x:.5f} against section 10's seed 0 {y:.5f}: "
                     + ("reproduced" if ok else "NOT reproduced"))  # fmt: skip
        out[f"rule 1 {v}"] = {"here": x, "section 10": y, "reproduced": ok}
    for lr in ("1e-3", "3e-4"):  # rules 2 and 3
        im, enc = long_row(lr, IM), long_row(lr, ENC)
        what = "length" if lr == "1e-3" else "the learning rate 3e-4"
        d = {h["step"]: h["mcc"] - at(enc, h["step"]) for h in im["history"]}
        for step in (1500, 4500):
            a = apart([at(im, step)], [at(enc, step)], MARGIN)
            word = gap_words(a, d[1500], d[step], what) if step == 4500 else a
            lines.append(f"rule {2 if lr == '1e-3' else 3}, lr {lr}, step {step}: im0.01 "
                         f"{at(im, step):.4f} against encoder {at(enc, step):.4f} "
                         f"(d {d[step]:+.4f}): {a}" + (f", {word}" if step == 4500 else ""))  # fmt: skip
            out[f"lr {lr} step {step}"] = {"im0.01": at(im, step), "encoder": at(enc, step),
                                           "apart": a, "reading": word}  # fmt: skip
        out[f"lr {lr} d"] = d
        named += [(f"lr {lr}, K 2,048, 4,500 steps, InfoMax x 0.01", [im]),
                  (f"lr {lr}, K 2,048, 4,500 steps, default weights", [enc])]  # fmt: skip
    for v in (IM, ENC):  # rule 3, beside: 3e-4 against 1e-3 at the same steps
        for step in (1500, 4500):
            lo, hi = at(long_row("3e-4", v), step), at(a_long[v], step)
            a = apart([lo], [hi], MARGIN)
            lines.append(f"rule 3 beside, {v}, step {step}: lr 3e-4 {lo:.4f} against 1e-3 "
                         f"{hi:.4f}: {a}")  # fmt: skip
    for lr, tag in TAGS.items():  # rule 4
        if not (ROOT / f"imwhy-k512-{tag}" / "results.json").exists():
            lines.append(f"rule 4, lr {lr}: not run")
            continue
        im, enc = (rows(f"imwhy-k512-{tag}", v, [0]) for v in (IM, ENC))
        a = apart(mcc(im), mcc(enc), MARGIN)
        word = {"above": f"the ratio reverses the order on small at lr {lr}",
                "level": "level", "below": "below"}[a]  # fmt: skip
        lines.append(f"rule 4, K 512, lr {lr}: im0.01 {mcc(im)[0]:.4f} against encoder "
                     f"{mcc(enc)[0]:.4f}: {a}, {word}")  # fmt: skip
        out[f"k512 lr {lr}"] = {"im0.01": mcc(im)[0], "encoder": mcc(enc)[0], "apart": a}
        named += [(f"lr {lr}, K 512, 1,500 steps, InfoMax x 0.01", im),
                  (f"lr {lr}, K 512, 1,500 steps, default weights", enc)]  # fmt: skip
    for name, rs in named:  # rule 5
        c = controls(rs[0])
        lines.append(f"rule 5, {name}: {c} its controls")
        out[f"controls {name}"] = c
    print("\n".join(f"- {x}" for x in lines))
    print("\nMCC of seed 0 every 250 steps (4,500-step runs):")
    for lr in ("1e-3", "3e-4"):
        for v in (IM, ENC):
            hs = long_row(lr, v)["history"]
            print(f"  lr {lr}, {v}: " + " ".join(f"{h['mcc']:.3f}" for h in hs))
    print_table("run (seed 0)", named, COLUMNS)
    out["lines"] = lines
    (ROOT / "im-small-why.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
