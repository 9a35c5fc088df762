"""Experiment 4 (Figure 2): learned weights as 28 x 28 images, ours vs the standard SAE."""

from __future__ import annotations

from implicit_em.experiments.benchmark import feature_figures
from implicit_em.experiments.common import Settings, ensure_runs, load_data


def run(settings: Settings) -> dict:
    variants, seed = settings.extra["variants"], settings.seeds()[0]
    cfgs = {
        v: settings.config(variants[v], {"training": {"seed": seed}})
        for v in ("ours", "standard_sae")
    }
    data = load_data(cfgs["ours"], settings.device)
    results = {v: ensure_runs(settings, [c], data, f"features {v}") for v, c in cfgs.items()}
    figs = feature_figures(results, settings.out / "features")
    notes = [
        "Diverging colormap: blue positive, red negative, white zero; each panel scaled to its "
        "own max |w|. Inspect the figures: the claim is qualitative (digit prototypes vs noise)."
    ]
    return {"name": "features", "table": "", "figures": figs, "numbers": {}, "notes": notes}
