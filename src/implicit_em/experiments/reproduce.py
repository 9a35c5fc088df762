"""`implicit-em reproduce`: every experiment of the paper, then report.md and report.html.

All runs the experiments need are planned first and trained together in as few stacks as
possible (implicit_em.stacked); finished runs are skipped, so an interrupted reproduction
continues where it stopped.
"""

from __future__ import annotations

import base64
import html
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from implicit_em.experiments import ablation, benchmark, dynamics, features, theorem
from implicit_em.experiments.common import Settings, ensure_runs, load_data, load_settings
from implicit_em.runs import atomic_write_bytes

EXPERIMENTS = {
    "theorem": ("default", theorem.run, "Experiment 1: the gradient-responsibility identity"),
    "ablation": ("ablation", ablation.run, "Experiment 2: ablation (Table 5)"),
    "benchmark": (
        "benchmark",
        benchmark.run,
        "Experiment 3: benchmark vs SAEs (Table 7) and Experiment 4: features (Figure 2)",
    ),
    "features": ("benchmark", features.run, "Experiment 4: feature visualization (Figure 2)"),
    "dynamics": ("dynamics", dynamics.run, "Experiment 5: optimizer dynamics (Table 8, Figure 3)"),
}


def _settings(name: str, **kw) -> Settings:
    return load_settings(EXPERIMENTS[name][0], **kw)


def pretrain_all(kw: dict) -> None:
    """Train every run the ablation, benchmark (phase 1) and dynamics need, in shared stacks."""
    cfgs = []
    s = _settings("ablation", **kw)
    cfgs += [
        s.config(u, {"training": {"seed": sd}})
        for u in s.extra["variants"].values()
        for sd in s.seeds()
    ]
    s = _settings("benchmark", **kw)
    cfgs += [s.config(s.extra["variants"][v], {"training": {"seed": sd}})
             for v in ("ours", "standard_sae") for sd in s.seeds()]  # fmt: skip
    s = _settings("dynamics", **kw)
    cfgs += [s.config({"training": {"optimizer": o, "lr": lr, "seed": sd}})
             for o in s.extra["optimizers"] for lr in s.extra["learning_rates"] for sd in s.seeds()]  # fmt: skip
    ensure_runs(s, cfgs, load_data(cfgs[0], s.device))


def versions() -> dict:
    import numpy
    import sklearn
    import torch

    return {
        "python": sys.version.split()[0], "torch": torch.__version__, "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__, "platform": platform.platform(),
        "cpu threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }  # fmt: skip


def reproduce(
    out: Path, quick: bool = False, only: list[str] | None = None, command: str = "", **kw
) -> Path:
    """Run the experiments (all by default) and write <out>/report.md and report.html."""
    out = Path(out)
    kw = dict(out=out, quick=quick, **kw)
    t0 = time.perf_counter()
    names = only or ["theorem", "ablation", "benchmark", "dynamics"]
    timings = {}
    if any(n in names for n in ("ablation", "benchmark", "dynamics")):
        tic = time.perf_counter()
        pretrain_all(kw)
        timings["training (all stacked runs)"] = time.perf_counter() - tic
    sections = []
    for name in names:
        tic = time.perf_counter()
        res = EXPERIMENTS[name][1](_settings(name, **kw))
        timings[name] = time.perf_counter() - tic
        sections.append((EXPERIMENTS[name][2], res))
    total = time.perf_counter() - t0
    return write_report(out, sections, timings, total, quick, command, kw)


def _md_section(title: str, res: dict, out: Path) -> str:
    parts = [f"## {title}\n"]
    if res["table"]:
        parts.append(res["table"])
    for f in res["figures"]:
        parts.append(f"![{Path(f).stem}]({Path(f).relative_to(out)})\n")
    if res["notes"]:
        parts.append("**Where we differ from the paper, or caveats:**\n")
        parts += [f"- {n}" for n in res["notes"]]
        parts.append("")
    return "\n".join(parts) + "\n"


def write_report(out: Path, sections, timings, total, quick, command, kw) -> Path:
    s = load_settings("default", out=out, quick=quick, overrides=kw.get("overrides"))
    head = [
        "# implicit-em: reproduction of 'Deriving Decoder-Free Sparse Autoencoders from First Principles'\n",
        f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} by `{command or 'implicit-em reproduce'}`.",
        f"Mode: {'QUICK (smoke-sized: 1 seed, few epochs, data subset — NOT comparable to the paper)' if quick else 'full paper protocol'}.",
        f"Training: {s.base['training']['epochs']} epochs, batch {s.base['training']['batch_size']}, "
        f"data subset {s.base['data'].get('train_subset') or 'all'} / {s.base['data'].get('test_subset') or 'all'}, "
        f"device {kw.get('device')}, stacked trainer {'on' if kw.get('stacked', True) else 'off'}, probe {kw.get('probe')}, "
        f"{kw.get('jobs', 1)} worker process(es) for independent stacks{' (CPU only)' if kw.get('jobs', 1) > 1 else ''}.",
        "Numbers are ours, measured by this command; the paper's are quoted beside them, never adjusted.\n",
        "| step | wall time (s) |\n|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in timings.items()],
        f"| **total** | **{total:.1f}** |\n",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()) + "\n",
    ]
    md = "\n".join(head) + "\n" + "".join(_md_section(t, r, out) for t, r in sections)
    ood = out / "ood" / "results.json"
    if ood.is_file():  # `implicit-em ood --out <out>/ood` ran: its section, beyond the paper
        from implicit_em.experiments.ood import write_report_section

        md += "\n" + write_report_section(json.loads(ood.read_text()))
    report = out / "report.md"
    atomic_write_bytes(report, md.encode())
    atomic_write_bytes(out / "report.html", _html(md, out).encode())
    return report


def _html(md: str, out: Path) -> str:
    """A self-contained HTML rendering (tables and embedded PNGs) of the markdown report."""
    body, table = [], []

    def flush_table():
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= set("-: ")]
            cells = [
                [html.escape(c.strip()) for c in r.strip().strip("|").split("|")] for r in rows
            ]
            body.append("<table>" + "".join(
                "<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{c}</{'th' if i == 0 else 'td'}>" for c in row) + "</tr>"
                for i, row in enumerate(cells)) + "</table>")  # fmt: skip
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("!["):
            path = out / line[line.index("(") + 1 : line.rindex(")")]
            if path.is_file():
                b64 = base64.b64encode(path.read_bytes()).decode()
                body.append(
                    f'<p><img style="max-width:100%" src="data:image/png;base64,{b64}"></p>'
                )
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush_table()
    style = "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 6px}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>implicit-em report</title><style>{style}</style></head><body>{''.join(body)}</body></html>"
