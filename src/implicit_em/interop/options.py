"""The options of `implicit-em export` and `implicit-em import`, apart from the code that runs
them (`interop.commands`), so that their --help imports no torch. Each field's docstring is
its --help."""

from __future__ import annotations

from dataclasses import dataclass

FORMATS = ("saelens", "sparsify")


@dataclass(frozen=True)
class ExportOptions:
    """Write a run directory as an SAE another library loads: SAELens (`sae_lens.SAE.load_from_disk`;
    TopK as topk, BatchTopK, Matryoshka BatchTopK and JumpReLU as jumprelu, the rest as
    standard) or sparsify. docs/interop.md says what is written and why."""

    run: str
    """Run directory to export (config.json + model.safetensors; llm.json for LM runs)."""
    out: str
    """Output directory (SAELens: the SAE folder; sparsify: the parent of <hookpoint>/)."""
    format: str = "saelens"
    """`saelens` (cfg.json + sae_weights.safetensors) or `sparsify` (<hook>/cfg.json +
    sae.safetensors)."""
    fit_tokens: int = 20_000
    """Train tokens of the run's harvest to fit the post-hoc least-squares decoder of a
    decoder-free Encoder (0: export W's rows normalised instead; SAEs use their own)."""
    hookpoint: str | None = None
    """sparsify hook-point folder name (default: derived from the harvest's layer/hook)."""
    overwrite: bool = False
    """Replace files already in --out."""

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}: use one of {FORMATS}")
        if self.fit_tokens < 0:
            raise ValueError(f"fit_tokens must be >= 0, got {self.fit_tokens}")


@dataclass(frozen=True)
class ImportOptions:
    """What `implicit-em import` loads and how it judges it."""

    path: str
    """SAELens SAE folder (cfg.json + sae_weights.safetensors) or sparsify hook-point folder."""
    format: str = "saelens"
    """`saelens` (standard, topk, jumprelu) or `sparsify` (topk)."""
    acts: str | None = None
    """Harvest directory to evaluate on (FVU, L0, dead latents); must match the SAE's d_in."""
    budget: int = 4096
    """Held-out tokens to evaluate on."""
    fit_tokens: int = 20_000
    """Train tokens used to fit the post-hoc least-squares decoder baseline."""
    out: str | None = None
    """Write the metrics here as JSON."""

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}: use one of {FORMATS}")
