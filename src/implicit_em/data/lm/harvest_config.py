"""What a harvest is asked for (`HarvestConfig`), apart from the code that harvests, so that
the CLI can build `implicit-em harvest --help` without importing torch or transformers.
`implicit_em.data.lm.activations` re-exports it."""

from __future__ import annotations

from dataclasses import dataclass

HOOK_POINTS = ("resid_pre", "resid_post")
"""Where the residual stream is read: a block's input (resid_pre) or its output (resid_post)."""


@dataclass(frozen=True)
class HarvestConfig:
    """What to harvest. Stored in the manifest; a resume must match it exactly."""

    model: str = "smollm2-135m"
    """Model: `smollm2-135m` (bundled 4-bit GGUF), a .gguf path, a folder, or a hub id."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) for hub ids; ignored for GGUF files."""
    corpus: str = "sotu"
    """Corpus: `sotu` (State of the Union via npm) or a folder of .txt files."""
    layer: int = 15
    """Decoder block whose residual stream is hooked (0-based)."""
    hook_point: str = "resid_pre"
    """`resid_pre` (block input = HF hidden_states[layer]) or `resid_post` (block output)."""
    ctx_len: int = 128
    """Tokens per context, BOS included."""
    drop_bos: bool = True
    """Do not store the BOS position's activation (an attention sink with outlier norm)."""
    n_tokens: int = 100_000
    """Activations to store over both splits; held-out gets `heldout_fraction` of them."""
    heldout_fraction: float = 0.1
    """Fraction of documents (and of the token budget) held out for evaluation."""
    seed: int = 0
    """Seed of the document split and of the context sampling."""
    batch_size: int = 8
    """Contexts per forward pass."""
    shard_contexts: int = 64
    """Contexts per shard (the unit of resumption)."""

    def __post_init__(self) -> None:
        if self.hook_point not in HOOK_POINTS:
            raise ValueError(f"unknown hook_point {self.hook_point!r}: use one of {HOOK_POINTS}")
        if self.ctx_len < 2:
            raise ValueError(f"ctx_len must be >= 2 (BOS + one token), got {self.ctx_len}")
        if self.n_tokens < 1 or self.batch_size < 1 or self.shard_contexts < 1:
            raise ValueError("n_tokens, batch_size and shard_contexts must be positive")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction}")

    @property
    def tokens_per_context(self) -> int:
        """Stored activations per context: T - 1 with drop_bos, else T."""
        return self.ctx_len - int(self.drop_bos)

    def split_tokens(self, split: str) -> int:
        """Token budget of one split."""
        held = max(1, round(self.n_tokens * self.heldout_fraction))
        return held if split == "heldout" else max(1, self.n_tokens - held)
