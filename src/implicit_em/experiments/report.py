"""The report: every experiment's table, figures and notes as report.md and report.html.

One module renders what the experiments return (`experiments.Result`); the HTML is a
self-contained copy of the markdown (tables, and PNGs embedded as base64).
"""

from __future__ import annotations

import base64
import html
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from implicit_em.atomic import atomic_write_bytes


def mean_std(values) -> tuple[float, float]:
    """Mean and sample std (ddof 1) of the finite values; the std is nan for one value (a
    spread of one seed is unknown, not zero); (nan, nan) if none."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")


UNDEFINED = "— (undefined)"
"""The cell of a metric with no finite value in any seed (REPORT_LEGEND says when)."""
REPORT_LEGEND = (
    "Cells read `mean ± std` over seeds (sample std); a cell from a single seed shows the value "
    f"alone, with no ±. `{UNDEFINED}` marks a metric with no finite value in any seed: for "
    "example the redundancy of a model whose units are all dead (correlations of constant "
    "codes do not exist), or a run that diverged. A `—` in a paper column: the paper reports none."
)


def fmt(mean: float, std: float, digits: int = 2, pct: bool = False) -> str:
    """"mean ± std" for a table cell; the mean alone when std is nan (one seed); UNDEFINED
    when the mean is not finite."""
    if not np.isfinite(mean):
        return UNDEFINED
    s = 100 if pct else 1
    unit = " %" if pct else ""
    if not np.isfinite(std):
        return f"{mean * s:.{digits}f}{unit}"
    return f"{mean * s:.{digits}f} ± {std * s:.{digits}f}{unit}"


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


def write_report(out: Path, sections, timings, total, quick, command, kw, base: dict) -> Path:
    """Write <out>/report.md and report.html; `base` is the run config (as a dict) that every
    experiment started from, `kw` how they ran (device, stacked, probe, jobs)."""
    head = [
        "# implicit-em: reproduction of 'Deriving Decoder-Free Sparse Autoencoders from First Principles'\n",
        f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} by `{command or 'implicit-em reproduce'}`.",
        f"Mode: {'QUICK (smoke-sized: 1 seed, few epochs, data subset — NOT comparable to the paper)' if quick else 'full paper protocol'}.",
        f"Training: {base['training']['epochs']} epochs, batch {base['training']['batch_size']}, "
        f"data subset {base['data'].get('train_subset') or 'all'} / {base['data'].get('test_subset') or 'all'}, "
        f"device {kw.get('device')}, stacked trainer {'on' if kw.get('stacked', True) else 'off'}, probe {kw.get('probe')}, "
        f"{kw.get('jobs', 1)} worker process(es) for independent stacks{' (CPU only)' if kw.get('jobs', 1) > 1 else ''}.",
        "Numbers are ours, measured by this command; the paper's are quoted beside them, never adjusted.\n",
        REPORT_LEGEND + "\n",
        "| step | wall time (s) | runs |\n|---|---|---|",
        *[f"| {k} | {v:.1f} | {runs} |" for k, (v, runs) in timings.items()],
        f"| **total** | **{total:.1f}** | |\n",
        "The runs column says what each step did with the trained runs it needs: trained them "
        "now (its time includes that training), or loaded them from "
        f"{out / 'runs'}, trained by an earlier step of this command or finished by an earlier "
        "command (its time is then loading and evaluation only); - : the step uses no stored runs.\n",
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
