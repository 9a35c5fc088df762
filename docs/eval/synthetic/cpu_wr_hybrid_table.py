"""The weight-redundancy term on the hybrid, CPU `mini` recipe (issue 18): the table and the
rules of docs/eval/synthetic/cpu-wr-hybrid-PLAN.md (fixed before the run), from
docs/eval/synthetic/cpu-wr-hybrid-{A,B}/results.json and the committed rows of
cpu-variants-{A,C,D,E}/results.json (variants.md).

Run from the repository root: python docs/eval/synthetic/cpu_wr_hybrid_table.py
"""

import json
from pathlib import Path

from gpu16k_seeds_table import COLUMNS  # the script's folder is on sys.path

from implicit_em.eval.synthetic import _fmt, summarise
from implicit_em.eval.verdict import MARGIN, apart

ROOT = Path("docs/eval/synthetic")
OLD = ("encoder", "tied-topk-im-3.0", "tied-topk")


def rows_of(group: str) -> list[dict]:
    return json.loads((ROOT / group / "results.json").read_text())["rows"]


def main() -> None:
    new = rows_of("cpu-wr-hybrid-A") + rows_of("cpu-wr-hybrid-B")
    old = [r for g in ("cpu-variants-A", "cpu-variants-C", "cpu-variants-D", "cpu-variants-E")
           for r in rows_of(g) if r["variant"] in OLD]  # fmt: skip
    check = next(r for r in new if r["variant"] == "tied-topk-im-3.0")
    ref0 = next(r for r in old if r["variant"] == "tied-topk-im-3.0" and r["seed"] == 0)
    new = [r for r in new if r is not check]

    def mccs(rows, name):
        return [r["trained"]["mcc"] for r in sorted(rows, key=lambda r: r["seed"])
                if r["variant"] == name]  # fmt: skip

    summary = summarise(old) + summarise(new)
    summary.append({**summarise([check])[0], "variant": "tied-topk-im-3.0 (this run, seed 0)"})
    cols = COLUMNS
    print("| variant | seeds | " + " | ".join(c[0] for c in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for s in summary:
        print(f"| {s['variant']} | {s['seeds']} | "
              + " | ".join(_fmt(s[k], nd) for _, k, nd in cols) + " |")  # fmt: skip
    d = check["trained"]["mcc"] - ref0["trained"]["mcc"]
    rules = {
        "1_reproduction": {"diff": d, "passed": abs(d) <= 0.002},
        "2_transfer": apart(mccs(new, "encoder-wr"), mccs(old, "encoder"), MARGIN),
        "3_hybrid": apart(mccs(new, "tied-topk-im-3.0-wr"), mccs(old, "tied-topk-im-3.0"), MARGIN),
        "3_against_tied_topk": apart(mccs(new, "tied-topk-im-3.0-wr"), mccs(old, "tied-topk"),
                                     MARGIN),  # fmt: skip
    }
    rules["4_gpu_item"] = rules["2_transfer"] == "above" and rules["3_hybrid"] == "above"
    print()
    print(f"- Rule 1 (reproduction): tied-topk-im-3.0 seed 0 {check['trained']['mcc']:.4f} against "
          f"{ref0['trained']['mcc']:.4f} ({d:+.4f}): {'passed' if rules['1_reproduction']['passed'] else 'FAILED'}")  # fmt: skip
    print(f"- Rule 2 (transfer): encoder-wr against encoder: {rules['2_transfer']}")
    print(f"- Rule 3: tied-topk-im-3.0-wr against tied-topk-im-3.0: {rules['3_hybrid']}; "
          f"against tied-topk: {rules['3_against_tied_topk']}")  # fmt: skip
    print(f"- Rule 4 (a GPU item): {'yes' if rules['4_gpu_item'] else 'no'}")
    out = {"summary": summary, "rules": rules}
    (ROOT / "cpu-wr-hybrid.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
