"""Do the stacked (fast) and plain (one model at a time) paths give the same report tables?

Runs `reproduce` twice on the same settings, once stacked and once with the plain loop, and
prints each table number from both beside the spread over seeds. Example (a reduced budget, so
that the plain path finishes in minutes):

    python benchmarks/compare_paths.py --out /tmp/cmp --set training.epochs=5 \
        --set data.train_subset=20000 --device cuda
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from implicit_em.experiments.common import parse_overrides
from implicit_em.experiments.reproduce import reproduce


def _rows(out: Path) -> dict[str, tuple[float, float]]:
    rows = {}
    ab = json.loads((out / "ablation" / "ablation.json").read_text())
    for v, n in ab.items():
        for m, (mu, sd) in n["mean_std"].items():
            rows[f"ablation {v} {m}"] = (mu, sd)
    bm = json.loads((out / "benchmark" / "benchmark.json").read_text())
    for v in ("ours", "standard_sae", "topk_sae"):
        for m, (mu, sd) in bm[v]["mean_std"].items():
            rows[f"benchmark {v} {m}"] = (mu, sd)
    dy = json.loads((out / "dynamics" / "dynamics.json").read_text())
    for v, n in dy.items():
        for m in ("loss", "probe"):
            rows[f"dynamics {v} {m}"] = tuple(n["mean_std"][m])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    overrides = parse_overrides(args.overrides)
    times, tables = {}, {}
    for name, stacked in (("stacked", True), ("plain", False)):
        out = Path(args.out) / name
        tic = time.perf_counter()
        reproduce(
            out,
            device=args.device,
            stacked=stacked,
            progress=False,
            probe="torch",
            overrides=overrides,
        )
        times[name] = time.perf_counter() - tic
        tables[name] = _rows(out)
    print(f"wall time: stacked {times['stacked']:.1f} s, plain {times['plain']:.1f} s, "
          f"ratio {times['plain'] / times['stacked']:.1f}x")  # fmt: skip
    print(f"{'number':45s} {'stacked':>12s} {'plain':>12s} {'|diff|':>10s} {'seed std':>10s}")
    worst = 0.0
    for key, (mu_s, sd_s) in tables["stacked"].items():
        mu_p, sd_p = tables["plain"][key]
        if not (np.isfinite(mu_s) and np.isfinite(mu_p)):
            continue
        diff, sd = abs(mu_s - mu_p), max(sd_s, sd_p)
        ratio = diff / sd if sd > 0 else (0.0 if diff == 0 else float("inf"))
        worst = max(worst, ratio if np.isfinite(ratio) else 0.0)
        print(f"{key:45s} {mu_s:12.5g} {mu_p:12.5g} {diff:10.3g} {sd:10.3g}")
    print(f"largest |diff| / seed std: {worst:.3f}")


if __name__ == "__main__":
    main()
