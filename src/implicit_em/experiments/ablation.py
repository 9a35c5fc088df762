"""Experiment 2: ablation of the objective's terms (Table 5, Figure 2-style matrices)."""

from __future__ import annotations

import numpy as np
import torch

from implicit_em import metrics
from implicit_em.experiments import paper
from implicit_em.experiments.common import (
    Settings,
    ensure_runs,
    features,
    fmt,
    load_data,
    mean_std,
    save_json,
    savefig,
)  # fmt: skip

LABELS = {
    "lse_only": "LSE only",
    "lse_var": "LSE + var",
    "lse_var_tc": "LSE + var + tc",
    "var_tc_only": "var + tc only",
}


def plan(settings: Settings) -> dict[tuple[str, int], object]:
    variants = settings.extra["variants"]
    return {(v, s): settings.config(upd, {"training": {"seed": s}})
            for v, upd in variants.items() for s in settings.seeds()}  # fmt: skip


def run(settings: Settings) -> dict:
    import matplotlib.pyplot as plt

    out = settings.out / "ablation"
    cfgs = plan(settings)
    data = load_data(next(iter(cfgs.values())), settings.device)
    results = dict(zip(cfgs, ensure_runs(settings, list(cfgs.values()), data, "ablation"), strict=True))
    k = next(iter(cfgs.values())).model.hidden_dim
    rows, numbers, corr_mats, usage = [], {}, {}, {}
    for v in settings.extra["variants"]:
        per_seed = []
        for s in settings.seeds():
            r = results[(v, s)]
            a = features(r.model, data.x_test)  # (N_test, K)
            resp = torch.softmax(-a, dim=1)
            dead = metrics.dead_units(a)
            per_seed.append({
                "dead_units": dead,
                "redundancy": metrics.redundancy_score(a) if dead < k else float("nan"),
                "resp_entropy": metrics.responsibility_entropy(resp),
                "usage_max": float(metrics.usage_distribution(resp).max()),
                "diverged": r.diverged,
            })  # fmt: skip
            if s == settings.seeds()[0]:
                with np.errstate(invalid="ignore", divide="ignore"):  # dead units: zero variance
                    corr_mats[v] = np.nan_to_num(np.corrcoef(a.double().cpu().numpy().T))
                usage[v] = np.sort(metrics.usage_distribution(resp))[::-1]
        agg = {
            m: mean_std([p[m] for p in per_seed])
            for m in ("dead_units", "redundancy", "resp_entropy", "usage_max")
        }
        numbers[v] = {"per_seed": per_seed, "mean_std": agg}
        pp = paper.ABLATION.get(v, {})
        red_paper = pp.get("redundancy")
        flags = []
        for m in ("dead_units", "redundancy", "resp_entropy"):
            pv = pp.get(m)
            if pv is not None and np.isfinite(agg[m][0]) and paper.differs(*agg[m], pv, None):
                flags.append(m)
        rows.append(
            f"| {LABELS.get(v, v)} | {agg['dead_units'][0]:.1f}/{k} (paper {pp.get('dead_units', '—')}/{k}) "
            f"| {fmt(*agg['redundancy'], 1)} (paper {red_paper if red_paper is not None else '—'}) "
            f"| {fmt(*agg['resp_entropy'], 2)} (paper {pp.get('resp_entropy', '—')}) "
            f"| {fmt(*agg['usage_max'], 3)} | {', '.join(flags) or 'none'} |"
        )
    table = (
        f"Seeds {settings.seeds()}; metrics on the test set; mean ± std over seeds (the value alone for one seed).\n\n"
        "| configuration | dead units | redundancy | resp. entropy (nats) | max usage E[r_j] | differs from paper (>2σ) |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    fig, axes = plt.subplots(1, len(corr_mats), figsize=(4 * len(corr_mats), 3.8))
    for ax, (v, c) in zip(np.atleast_1d(axes), corr_mats.items(), strict=True):
        im = ax.imshow(c, cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_title(LABELS.get(v, v))
        ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8, label="Corr(a_i, a_j)")
    fig.suptitle("Ablation: activation correlation matrices (test set, first seed)")
    f1 = savefig(fig, out / "fig_ablation_correlation.png")
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    names = [LABELS.get(v, v) for v in numbers]
    for ax, (m, title) in zip(axes[:3], (("dead_units", "dead units"), ("redundancy", "redundancy"),
                                         ("resp_entropy", "responsibility entropy")), strict=True):  # fmt: skip
        means = [numbers[v]["mean_std"][m][0] for v in numbers]
        stds = [numbers[v]["mean_std"][m][1] for v in numbers]
        ax.bar(range(len(names)), np.nan_to_num(means), yerr=np.nan_to_num(stds), color="C0")
        ax.set_xticks(range(len(names)), names, rotation=25, ha="right")
        ax.set_title(title)
    for v, u in usage.items():
        axes[3].plot(u, label=LABELS.get(v, v))
    axes[3].set(title="usage E[r_j], sorted", xlabel="component rank", yscale="log")
    axes[3].legend(fontsize=7)
    f2 = savefig(fig, out / "fig_ablation_bars.png")
    save_json(out / "ablation.json", numbers)
    notes = []
    for v, n in numbers.items():
        for m in ("dead_units", "redundancy", "resp_entropy"):
            pv = paper.ABLATION.get(v, {}).get(m)
            mu, sd = n["mean_std"][m]
            if pv is not None and np.isfinite(mu) and paper.differs(mu, sd, pv, None):
                notes.append(f"{LABELS.get(v, v)}: {m} {fmt(mu, sd, 3)} vs paper {pv}.")
    blank = [LABELS.get(v, v) for v, n in numbers.items() if not np.isfinite(n["mean_std"]["redundancy"][0])]
    if blank:
        notes.append(f"Correlation figure: the panel of {', '.join(blank)} is blank (all zero) because "
                     "every unit is dead there: constant codes have no correlation.")
    return {
        "name": "ablation",
        "table": table,
        "figures": [f1, f2],
        "numbers": numbers,
        "notes": notes,
    }
