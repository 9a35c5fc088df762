"""What a dashboard is asked for (`DashboardOptions`, the `implicit-em dashboard` flags) and what
the streaming pass keeps (`StatsConfig`), apart from the code that builds it (`dashboard.run`,
`dashboard.stats`), so that `implicit-em dashboard --help` imports no torch. Their old homes
re-export them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StatsConfig:
    """What the streaming pass keeps per latent."""

    top_k: int = 20
    """Top-activating examples per latent."""
    n_samples: int = 64
    """Reservoir size: uniformly sampled firing events per latent (the quantile sketch)."""
    context: int = 8
    """Tokens of context kept on each side of an example's token."""
    responsibilities: bool = False
    """Also accumulate r = softmax(-a) (usage E[r_j] and r beside each activation)."""
    seed: int = 0
    """Seed of the reservoir's random keys."""

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.n_samples < 0 or self.context < 0:
            raise ValueError(
                f"need top_k >= 1, n_samples >= 0, context >= 0; got {self.top_k}, "
                f"{self.n_samples}, {self.context}"
            )

    @property
    def window(self) -> int:
        return 2 * self.context + 1


@dataclass(frozen=True)
class DashboardOptions:
    """What to build. Field docstrings double as command-line help."""

    run_dir: str
    """Run directory of the model (config.json + model.safetensors, see implicit_em.runs)."""
    out: str
    """Folder to write the site into (must be empty or absent unless overwrite)."""
    acts: str | None = None
    """Harvest directory; default: the one named in the run's llm.json."""
    split: str = "train"
    """Harvest split to read: train or heldout."""
    max_tokens: int | None = None
    """Read at most this many tokens (whole contexts, in shard order); default all."""
    device: str = "auto"
    """cpu, cuda, cuda:N or auto (cuda when available)."""
    latents: str = "all"
    """Latents to write pages for: `all`, `sample:N` (a seeded random sample of N), or a comma
    list of indices (`3,17,40`). Statistics, density and nearest latents always cover all K."""
    top_k: int = 20
    """Top-activating examples per latent."""
    n_samples: int = 64
    """Uniformly sampled firing events kept per latent (the quantile sketch)."""
    quantile_groups: int = 5
    """Quantile groups of the sampled events shown per latent."""
    per_group: int = 4
    """Examples shown per quantile group."""
    context: int = 8
    """Tokens of context on each side of an example's token."""
    responsibilities: str = "auto"
    """Show r = softmax(-a) and usage E[r_j]: auto (for models without a decoder, the
    decoder-free Encoder), on, or off."""
    tokenizer: str | None = None
    """Tokenizer folder or hub id; default: the harvested model's tokenizer."""
    unembed: str = "auto"
    """Unembedding for output-token effects: auto (the harvested LM's output matrix with the
    final norm's gain folded in, when the model has a decoder), none, or a .safetensors file
    holding W_U (V, D)."""
    decoder: str | None = None
    """A .safetensors file holding W_dec (D, K), e.g. an exported or post-hoc decoder of the
    decoder-free model; default: the model's own decoder, if it has one."""
    decoder_label: str = ""
    """How the page names that decoder (e.g. `post-hoc least-squares decoder`)."""
    max_norm_ratio: float | None = None
    """Leave out tokens whose activation norm exceeds this times the median (massive
    activations); default: the ratio the run was trained with (llm.json), else keep all."""
    n_nearest: int = 8
    """Nearest latents listed by encoder (and decoder) cosine."""
    n_logits: int = 10
    """Promoted and suppressed output tokens listed per latent."""
    block_size: int = 64
    """Latents per data file (the unit the browser loads)."""
    site_workers: int = 0
    """Processes writing the latent pages' data files in parallel (0: one per CPU)."""
    neuronpedia: bool = False
    """Also write the same data as Neuronpedia-style JSON batches (SAEDashboard's batch
    format, one file per block) under <out>/neuronpedia/."""
    seed: int = 0
    """Seed of the reservoir sample and of the latent sample."""
    chunk_entries: int | None = None
    """Bound on C * P * K code entries per streaming step (memory); default 2^24 on CPU,
    2^28 on CUDA (about 10 GB of temporaries)."""
    title: str | None = None
    """Title of the site; default: the run directory's name."""
    threads: int | None = None
    """torch CPU threads (default: torch's)."""
    progress: bool = True
    """Show a progress bar."""
    overwrite: bool = False
    """Replace an existing dashboard in `out`."""

    def __post_init__(self) -> None:
        if self.split not in ("train", "heldout"):
            raise ValueError(f"split must be train or heldout, got {self.split!r}")
        if self.responsibilities not in ("auto", "on", "off"):
            raise ValueError(
                f"responsibilities must be auto, on or off, got {self.responsibilities!r}"
            )
        for name in ("quantile_groups", "per_group", "block_size", "n_nearest", "n_logits"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        StatsConfig(self.top_k, self.n_samples, self.context)  # checks those fields
