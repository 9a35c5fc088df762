"""Feature dashboards for latents of any model family on harvested LM activations.

`run(DashboardOptions(run_dir=..., out=...))` writes a static site (open its index.html from
disk, no server): per latent the top-activating contexts, samples across activation
quantiles, firing frequency and a histogram of non-zero activations, output tokens through
the unembedding (models with a decoder), nearest latents by encoder and decoder cosine, and
for the decoder-free model responsibilities r = softmax(-a) and usage E[r_j].
"""

from implicit_em.dashboard.run import DashboardOptions, run
from implicit_em.dashboard.site import write_site
from implicit_em.dashboard.stats import LatentStats, StatsConfig, collect_stats

__all__ = ["DashboardOptions", "LatentStats", "StatsConfig", "collect_stats", "run", "write_site"]
