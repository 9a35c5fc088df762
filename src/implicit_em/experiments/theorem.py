"""Experiment 1: the gradient-responsibility identity on random energies (Figure 1)."""

from __future__ import annotations

import torch

from implicit_em.experiments import paper
from implicit_em.experiments.common import Settings, save_json, savefig
from implicit_em.theorem import verify_lse_identity


def run(settings: Settings) -> dict:
    import matplotlib.pyplot as plt

    out = settings.out / "theorem"
    res32 = verify_lse_identity(64, 128, torch.float32, seed=0)
    res64 = verify_lse_identity(64, 128, torch.float64, seed=0)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(res32["r"], res32["grad"], s=4, alpha=0.5)
    lim = [0, float(max(res32["r"].max(), res32["grad"].max())) * 1.05]
    ax.plot(lim, lim, "k--", lw=0.8, label="y = x")
    ax.set(xlabel="responsibility r = softmax(-a)", ylabel="gradient dL/da",
           title="Figure 1: gradient = responsibility (8,192 values)")  # fmt: skip
    ax.legend()
    fig_path = savefig(fig, out / "fig1_theorem.png")
    numbers = {
        dt: {k: r[k] for k in ("max_abs_error", "mean_abs_error", "correlation")}
        for dt, r in (("float32", res32), ("float64", res64))
    }
    save_json(out / "theorem.json", numbers)
    p = paper.THEOREM
    n = numbers["float32"]
    table = (
        "| quantity | ours (float32) | ours (float64) | paper |\n|---|---|---|---|\n"
        f"| correlation | {n['correlation']:.6f} | {numbers['float64']['correlation']:.6f} | {p['correlation']:.4f} |\n"
        f"| max abs error | {n['max_abs_error']:.3g} | {numbers['float64']['max_abs_error']:.3g} | {p['max_abs_error']:.3g} |\n"
        f"| mean abs error | {n['mean_abs_error']:.3g} | {numbers['float64']['mean_abs_error']:.3g} | {p['mean_abs_error']:.3g} |\n"
    )
    notes = [
        "Random a ~ N(0, 1) of shape (64, 128), seed 0, LSE summed over the batch. The paper's "
        "errors depend on its (unpublished) random draw; both are at float32 rounding level."
    ]
    return {
        "name": "theorem",
        "table": table,
        "figures": [fig_path],
        "numbers": numbers,
        "notes": notes,
    }
