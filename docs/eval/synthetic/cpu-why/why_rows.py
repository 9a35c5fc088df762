"""Shared readers of the cpu-why table scripts (wr_from_filters_table.py,
lr_from_filters_table.py, flat_from_filters_table.py): rows of a group's results.json, their
MCCs, spans, trajectories and the best control. Imported by those scripts (run from the
repository root; Python puts this folder on the path)."""

import json
from pathlib import Path

ROOT = Path("docs/eval/synthetic/cpu-why")


def rows(group: str, name: str, seeds: list[int] | None = None) -> list[dict]:
    """The rows named `name` of cpu-why/<group>/results.json, sorted by seed; with `seeds`,
    exits with one line unless the rows' seeds are exactly those."""
    rs = [r for r in json.loads((ROOT / group / "results.json").read_text())["rows"]
          if r["variant"] == name]  # fmt: skip
    if seeds is not None and sorted(r["seed"] for r in rs) != seeds:
        raise SystemExit(f"{group}/{name}: seeds {sorted(r['seed'] for r in rs)}, not {seeds}")
    return sorted(rs, key=lambda r: r["seed"])


def mcc(rs: list[dict]) -> list[float]:
    """The trained MCC of each row."""
    return [r["trained"]["mcc"] for r in rs]


def span(xs: list[float], fmt: str = ".3f") -> str:
    """'mean [min, max]'."""
    return f"{sum(xs) / len(xs):{fmt}} [{min(xs):{fmt}}, {max(xs):{fmt}}]"


def print_trajectories(title: str, named: list[tuple[str, list[dict]]]) -> None:
    """Print `title` and, for each (name, rows), seed 0's MCC at every history record."""
    print(f"\n{title}")
    for name, rs in named:
        r0 = next(r for r in rs if r["seed"] == 0)
        print(f"  {name}: " + " ".join(f"{h['mcc']:.3f}" for h in r0["history"]))


def controls_max(rs: list[dict]) -> float:
    """The best control seed over rows `rs`: max of the untrained MCC and the MCC of random
    directions at the row's L0."""
    return max(max(r["untrained"]["mcc"], r["trained"]["random_at_l0"]["mcc"]) for r in rs)


COLUMNS = {
    "MCC": lambda rs, t: span(mcc(rs)),
    "lstsq read-out": lambda rs, t: span([x["mcc_lstsq"] for x in t]),
    "L0": lambda rs, t: span([x["l0"] for x in t], ".1f"),
    "F1": lambda rs, t: span([x["f1"] for x in t]),
    "dead": lambda rs, t: f"{min(x['dead_latents'] for x in t)}-{max(x['dead_latents'] for x in t)}",
    "features covered": lambda rs, t: (f"{min(x['features_covered'] for x in t)}-"
                                       f"{max(x['features_covered'] for x in t)}"),  # fmt: skip
    "untrained": lambda rs, t: span([r["untrained"]["mcc"] for r in rs]),
    "random at L0": lambda rs, t: span([x["random_at_l0"]["mcc"] for x in t]),
}
"""The table columns `print_table` can show: name -> f(rows, their "trained" records)."""


def print_table(first: str, named: list[tuple[str, list[dict]]], columns: list[str]) -> None:
    """Print a markdown table: one row per (name, rows) of `named` (3 seeds each), first
    column header `first`, then `seeds` and the `columns` (keys of COLUMNS)."""
    print(f"\n| {first} | seeds | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for name, rs in named:
        t = [r["trained"] for r in rs]
        print(f"| {name} | {len(rs)} | " + " | ".join(COLUMNS[c](rs, t) for c in columns) + " |")
