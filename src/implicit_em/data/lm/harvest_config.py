"""What a harvest is asked for (`HarvestConfig`; `HFHarvestOptions` of `implicit-em harvest-hf`),
apart from the code that harvests, so that the CLI can build `implicit-em harvest --help` and
`implicit-em harvest-hf --help` without importing torch or transformers.
`implicit_em.data.lm.activations` re-exports `HarvestConfig`, `implicit_em.data.hf_harvest`
`HFHarvestOptions`."""

from __future__ import annotations

from dataclasses import dataclass, field

HOOK_POINTS = ("resid_pre", "resid_post")
"""Where the residual stream is read: a block's input (resid_pre) or its output (resid_post)."""


@dataclass(frozen=True)
class _HarvestBase:
    """What both harvests ask for (`HarvestConfig`, `HFHarvestOptions`): the model, and how
    contexts are cut, split, stored and counted. Stored in the manifest."""

    model: str = "smollm2-135m"
    """Model: `smollm2-135m` (bundled 4-bit GGUF), a .gguf path, a folder, or a hub id."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) for hub ids; ignored for GGUF files."""
    ctx_len: int = 128
    """Tokens per context, BOS included."""
    drop_bos: bool = True
    """Do not store the BOS position's activation (an attention sink with outlier norm)."""
    n_tokens: int = 100_000
    """Activations to store over both splits (per hook, for harvest-hf); held-out gets
    `heldout_fraction` of them. Each split is rounded up to whole contexts of ctx_len - 1
    tokens (ctx_len with --no-drop-bos), or fewer if the text runs out; the command prints the
    count stored."""
    heldout_fraction: float = 0.1
    """Fraction of documents (and of the token budget) held out for evaluation."""
    seed: int = 0
    """Seed of the document split and of the context sampling."""
    batch_size: int = 8
    """Contexts per forward pass."""
    shard_contexts: int = 64
    """Contexts per shard (the unit of resumption)."""

    def _check_base(self) -> None:
        if self.ctx_len < 2:
            raise ValueError(f"ctx_len must be >= 2 (BOS + one token), got {self.ctx_len}")
        if min(self.n_tokens, self.batch_size, self.shard_contexts) < 1:
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


@dataclass(frozen=True)
class HarvestConfig(_HarvestBase):
    """What to harvest. Stored in the manifest; a resume must match it exactly."""

    corpus: str = "sotu"
    """Corpus: `sotu` (State of the Union via npm) or a folder of .txt files."""
    layer: int = 15
    """Decoder block whose residual stream is hooked (0-based)."""
    hook_point: str = "resid_pre"
    """`resid_pre` (block input = HF hidden_states[layer]) or `resid_post` (block output)."""

    def __post_init__(self) -> None:
        if self.hook_point not in HOOK_POINTS:
            raise ValueError(f"unknown hook_point {self.hook_point!r}: use one of {HOOK_POINTS}")
        self._check_base()


def stored_tokens_note(n_tokens: int, train: int, heldout: int, per_context: int) -> str:
    """What a harvest stored against what was asked for, in one line: '1541 tokens stored
    (1219 train + 322 held-out) for --n-tokens 1500: each split rounded up to whole contexts
    of 23 tokens'. train, heldout: stored activations per split; per_context: tokens stored
    per context (`tokens_per_context`)."""
    total = train + heldout
    head = f"{total} tokens stored ({train} train + {heldout} held-out) for --n-tokens {n_tokens}"
    if total > n_tokens:
        return f"{head}: each split rounded up to whole contexts of {per_context} tokens"
    if total < n_tokens:
        return f"{head}: fewer, the text holds no more contexts of {per_context} tokens"
    return head


DTYPE_NAMES = ("float32", "bfloat16", "float16")
"""Compute dtypes of the Hugging Face harvest (`hf_harvest.DTYPES` maps them to torch's)."""


@dataclass(frozen=True)
class HFHarvestOptions(_HarvestBase):
    """`implicit-em harvest --model NAME_OR_DIR`: what to harvest from a Hugging Face LM."""

    model: str = field(kw_only=True)
    """Hub id (set HF_HUB_OFFLINE=1 without network) or a local `save_pretrained` folder."""
    out: str = field(kw_only=True)
    """Output directory: one harvest directory per hook, OUT/<hook>/ (resumed if present)."""
    hooks: tuple[str, ...] = ("blocks.0.hook_resid_post",)
    """Hooks (repeat --hook): blocks.L.hook_{resid_pre,resid_post,attn_out,mlp_out} or a
    module name of the model."""
    text: tuple[str, ...] = ()
    """Local text files or globs (.txt, .jsonl, .parquet); or use --dataset."""
    dataset: str | None = None
    """A `datasets` builder or hub name (json, parquet, text, ...) used with --data-files."""
    data_files: tuple[str, ...] = ()
    """data_files of --dataset (local files keep it offline)."""
    dataset_split: str = "train"
    """Split of --dataset to read."""
    text_field: str = "text"
    """Field (jsonl, datasets) or column (parquet) holding the text."""
    dtype: str = "float32"
    """Model compute dtype: float32, bfloat16 or float16 (activations are stored as float16)."""
    device: str = "cpu"
    """Device of the forward passes (cpu, cuda, cuda:1, ...)."""
    stride: int | None = None
    """Step between window starts in the token stream (default ctx_len - 1: no overlap)."""
    progress: bool = True
    """Show a progress bar (tokens/s and ETA)."""

    def __post_init__(self) -> None:
        if not self.hooks:
            raise ValueError("name at least one --hook, e.g. blocks.6.hook_resid_post")
        if len(set(self.hooks)) != len(self.hooks):
            raise ValueError(f"duplicate hooks in {self.hooks}: name each once")
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"unknown dtype {self.dtype!r}: use one of {sorted(DTYPE_NAMES)}")
        if bool(self.text) == bool(self.dataset):
            raise ValueError("give text files with --text or a dataset with --dataset (one)")
        self._check_base()
        if self.stride is not None and not 1 <= self.stride:
            raise ValueError(f"stride must be >= 1, got {self.stride}")

    @property
    def window_stride(self) -> int:
        return self.stride if self.stride is not None else self.ctx_len - 1
