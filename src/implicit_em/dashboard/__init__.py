"""Feature dashboards for latents of any model family on harvested LM activations.

`run(DashboardOptions(run_dir=..., out=...))` writes a static site (open its index.html from
disk, no server): per latent the top-activating contexts, samples across activation
quantiles, firing frequency and a histogram of non-zero activations, output tokens through
the unembedding (models with a decoder), nearest latents by encoder and decoder cosine, and
for the decoder-free model responsibilities r = softmax(-a) and usage E[r_j].

The names below load lazily (PEP 562), so that reading the options
(`implicit-em dashboard --help`, `dashboard.options`) does not import torch.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

from implicit_em._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("DashboardOptions", "StatsConfig"), "implicit_em.dashboard.options"),
    "run": "implicit_em.dashboard.run",
    "write_site": "implicit_em.dashboard.site",
    **dict.fromkeys(("LatentStats", "collect_stats"), "implicit_em.dashboard.stats"),
}

__all__ = ["DashboardOptions", "LatentStats", "StatsConfig", "collect_stats", "run", "write_site"]

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)


class _Package(types.ModuleType):
    """The package's `run` is the function, as when this file imported it eagerly: loading the
    submodule `dashboard.run` would otherwise set the package's `run` to that module."""

    def __setattr__(self, name: str, value: object) -> None:
        if not (name == "run" and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # static analysers see the names
    from implicit_em.dashboard.options import DashboardOptions, StatsConfig  # noqa: F401
    from implicit_em.dashboard.run import run  # noqa: F401
    from implicit_em.dashboard.site import write_site  # noqa: F401
    from implicit_em.dashboard.stats import LatentStats, collect_stats  # noqa: F401
