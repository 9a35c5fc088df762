"""The paper's experiments under one contract, and the options of the commands that run them.

Contract: an experiment is a function `run(settings: Settings) -> Result` (Settings from
`experiments.common`) that trains through the shared run store, writes its figures and JSON
under `settings.out`, and returns a `Result`; `experiments.report` renders the results.
`EXPERIMENTS` lists them, in report order; a new experiment is one module and one line there.
This module imports nothing heavy: the CLI reads the options from it before a command runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal, TypedDict

from implicit_em.options import flag


class Result(TypedDict):
    """What an experiment returns."""

    name: str
    table: str  # a markdown table ("" for none)
    figures: list  # paths of PNGs under settings.out
    numbers: dict  # the measured numbers behind the table (JSON-able)
    notes: list  # caveats and differences from the paper, one sentence each


@dataclass(frozen=True)
class Experiment:
    name: str
    """Command and report key."""
    config: str
    """Shipped YAML (implicit_em/configs/<config>.yaml) holding its variants and seeds."""
    title: str
    """Section heading in the report."""
    target: str
    """"module:function" of its run(settings) -> Result."""
    in_reproduce: bool = True
    """Part of a plain `implicit-em reproduce` (features is a subset of benchmark)."""

    def run(self, settings) -> Result:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)(settings)


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("theorem", "default", "Experiment 1: the gradient-responsibility identity", "implicit_em.experiments.theorem:run"),
    Experiment("ablation", "ablation", "Experiment 2: ablation (Table 5)", "implicit_em.experiments.ablation:run"),
    Experiment("benchmark", "benchmark", "Experiment 3: benchmark vs SAEs (Table 7) and Experiment 4: features (Figure 2)", "implicit_em.experiments.benchmark:run"),
    Experiment("features", "benchmark", "Experiment 4: feature visualization (Figure 2)", "implicit_em.experiments.features:run", in_reproduce=False),
    Experiment("dynamics", "dynamics", "Experiment 5: optimizer dynamics (Table 8, Figure 3)", "implicit_em.experiments.dynamics:run"),
)  # fmt: skip
BY_NAME = {e.name: e for e in EXPERIMENTS}

ExperimentName = Literal["theorem", "ablation", "benchmark", "features", "dynamics"]


@dataclass(frozen=True)
class ExperimentOptions:
    """How to run experiments: where, on what device, and with which config overrides."""

    out: str = "results"
    """results directory; with --quick and the default, results-quick"""
    quick: bool = False
    """smoke-sized run: 1 seed, few epochs, data subset"""
    device: str = "auto"
    """cpu, cuda, cuda:N or auto (cuda when available)"""
    no_stack: bool = False
    """train runs one by one (plain loop) instead of stacked"""
    probe: Literal["torch", "sklearn"] = "torch"
    """linear-probe backend"""
    set: list[str] = flag(factory=list, metavar="SECTION.FIELD=VALUE", append=True, config_flags=True)
    """override a config field for every run, e.g. --set training.epochs=10 (repeatable)"""
    data_dir: str | None = None
    """directory with the MNIST IDX files"""
    threads: int | None = None
    """torch CPU threads (default: torch's)"""
    jobs: int | None = None
    """CPU worker processes for independent stacks, threads split among them (default: 2 on
    CPU with >= 2 threads, else 1)"""
    checkpoint_every: int = 5
    """save each stack's training state every N epochs, so that the same command run again
    after an interrupt continues there (0: never)"""
    quiet: bool = False
    """no progress bars"""
    overwrite: bool = False
    """replace a report in --out that covers other experiments (finished runs are reused)"""

    def __post_init__(self) -> None:
        if self.jobs is not None and self.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {self.jobs}: pass a positive count")
        if self.checkpoint_every < 0:
            raise ValueError(f"--checkpoint-every must be >= 0, got {self.checkpoint_every}: pass "
                             "a number of epochs, or 0 for no checkpoints")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}: pass a positive count or leave it out")


@dataclass(frozen=True)
class ReproduceOptions(ExperimentOptions):
    """How to run the reproduction: where, on what device, which experiments, which overrides."""

    only: list[ExperimentName] | None = None
    """run only these experiments (default: theorem ablation benchmark dynamics)"""


__all__ = ["BY_NAME", "EXPERIMENTS", "Experiment", "ExperimentOptions", "ReproduceOptions", "Result"]
