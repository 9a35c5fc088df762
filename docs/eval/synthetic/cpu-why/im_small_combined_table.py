"""The rules of docs/eval/synthetic/cpu-why/im-small-combined-PLAN.md (fixed before the runs) on
cpu-why/imwhy-combined-lr{1e-3,3e-4}/ (seed 0, K = 512, 6,000 steps), against section 11's
A-k512 rows (cpu-why/imwhy-k512-lr1e-3/).

Run from the repository root: python docs/eval/synthetic/cpu-why/im_small_combined_table.py
Prints each rule's outcome, the trajectories and a markdown table; writes
cpu-why/im-small-combined.json.
"""

import json

from im_small_why_table import COLUMNS, ENC, IM, TAGS, at, controls
from why_rows import ROOT, print_table, rows

from implicit_em.eval.verdict import MARGIN, apart

END = 6000


def combined(lr: str) -> dict[str, dict] | None:
    """Seed 0's row of each variant at learning rate lr, or None for a row not run."""
    group = f"imwhy-combined-{TAGS[lr]}"
    if not (ROOT / group / "results.json").exists():
        return None
    got = {v: rows(group, v) for v in (IM, ENC)}
    return {v: r[0] for v, r in got.items() if r}


def order_words(a: str, d0: float, d1: float, lr: str) -> str:
    """Rule 2's words for apart outcome a at step 6,000, with d0 = d(1,500), d1 = d(6,000)."""
    change = d1 - d0
    trend = "grows" if change < -MARGIN else "shrinks" if change > MARGIN else "holds"
    if a == "above":
        return f"the combination reverses the order on small at lr {lr}"
    if a == "level":
        return f"the combination closes the gap at lr {lr}" if change > MARGIN else "no reversal"
    return f"the combination does not reverse it at lr {lr} (to 6,000 steps); the gap {trend}"


def main() -> None:
    out, lines, named = {}, [], []
    runs = {lr: combined(lr) for lr in TAGS}
    ref = {v: rows("imwhy-k512-lr1e-3", v, [0])[0] for v in (IM, ENC)}
    for v in (IM, ENC):  # rule 1
        r = (runs["1e-3"] or {}).get(v)
        if r is None:
            lines.append(f"rule 1, {v}: not run")
            continue
        x, y = at(r, 1500), at(ref[v], 1500)
        ok = abs(x - y) <= 0.002
        beside = ", ".join(f"{s}: {at(r, s):.5f} against {at(ref[v], s):.5f}" for s in (500, 1000))
        lines.append(f"rule 1, {v}: step 1,500 {x:.5f} against section 11's A-k512 {y:.5f}: "
                     + ("reproduced" if ok else "NOT reproduced") + f" (beside: {beside})")  # fmt: skip
        out[f"rule 1 {v}"] = {"here": x, "section 11": y, "reproduced": ok}
    for lr, run in runs.items():  # rules 2 and 3
        if run is None or len(run) < 2:
            lines.append(f"rules 2-3, lr {lr}: not run" + (f" (only {list(run)})" if run else ""))
            named += [(f"lr {lr}, K 512, 6,000 steps, {v}", [run[v]]) for v in (run or {})]
            continue
        im, enc = run[IM], run[ENC]
        d = {h["step"]: h["mcc"] - at(enc, h["step"]) for h in im["history"]}
        a = apart([at(im, END)], [at(enc, END)], MARGIN)
        word = order_words(a, d[1500], d[END], lr)
        lines.append(f"rule 2, lr {lr}, step 6,000: im0.01 {at(im, END):.4f} against encoder "
                     f"{at(enc, END):.4f} (d {d[END]:+.4f}; d(1,500) {d[1500]:+.4f}): {a}, {word}")  # fmt: skip
        first = next((s for s in sorted(d) if apart([at(im, s)], [at(enc, s)], MARGIN) == "above"),
                     None)  # fmt: skip
        tail = d[END] - d[4000]
        trend = "closing" if tail > MARGIN else "opening" if tail < -MARGIN else "flat"
        lines.append(f"rule 3, lr {lr}: d(t) " + " ".join(f"{d[s]:+.3f}" for s in sorted(d))
                     + f"; first 'above': {first or 'none'}; d(6,000) - d(4,000) {tail:+.4f}: "
                     f"{trend}")  # fmt: skip
        out[f"lr {lr}"] = {"im0.01": at(im, END), "encoder": at(enc, END), "apart": a,
                           "reading": word, "d": d, "first above": first,
                           "last 2,000 steps": tail, "trend": trend}  # fmt: skip
        named += [(f"lr {lr}, K 512, 6,000 steps, InfoMax x 0.01", [im]),
                  (f"lr {lr}, K 512, 6,000 steps, default weights", [enc])]  # fmt: skip
    for v in (IM, ENC):  # rule 4
        lo, hi = ((runs[lr] or {}).get(v) for lr in ("3e-4", "1e-3"))
        if lo is None or hi is None:
            continue
        a = apart([at(lo, END)], [at(hi, END)], MARGIN)
        lines.append(f"rule 4, {v}, step 6,000: lr 3e-4 {at(lo, END):.4f} against 1e-3 "
                     f"{at(hi, END):.4f}: {a}")  # fmt: skip
        out[f"rule 4 {v}"] = a
    for name, rs in named:  # rule 5
        c = controls(rs[0])
        lines.append(f"rule 5, {name}: {c} its controls")
        out[f"controls {name}"] = c
    print("\n".join(f"- {x}" for x in lines))
    print("\nMCC of seed 0 every 500 steps:")
    for lr, run in runs.items():
        for v, r in (run or {}).items():
            print(f"  lr {lr}, {v}: " + " ".join(f"{h['mcc']:.3f}" for h in r["history"]))
    print_table("run (seed 0)", named, COLUMNS)
    out["lines"] = lines
    (ROOT / "im-small-combined.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
