"""The options of the experiment commands beyond the paper (`harvest`, `llm-train`,
`llm-eval`, `ood`, `scale`), apart from the code that runs them: the CLI reads these
dataclasses to build each command's flags and --help, so this module imports no torch,
transformers or matplotlib. Their old homes (`experiments.llm`, `.ood`, `.scale`) re-export
them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from implicit_em.data.lm.harvest_config import HarvestConfig
from implicit_em.options import ThreadsOption, flag
from implicit_em.tracking import TrackingOptions

# ---------------------------------------------------------------- language-model commands


@dataclass(frozen=True)
class _Compute(ThreadsOption):
    no_progress: bool = field(default=False, kw_only=True)
    """no progress bars"""


@dataclass(frozen=True)
class HarvestOptions(HarvestConfig, _Compute):
    """Harvest residual-stream activations of a language model to fp16 shards."""

    out: str = field(kw_only=True)
    """harvest directory (resumed if it exists)"""


LLM_TRAIN_BASE = ("model.hidden_dim=1024", "model.k=32", "training.epochs=10",
                  "training.batch_size=1024", "training.seed=1")  # fmt: skip
"""llm-train's starting point; --set and the run-config flags apply on top."""


@dataclass(frozen=True)
class LlmTrainOptions(_Compute, TrackingOptions):
    """Train an encoder or SAE on harvested activations. The run config starts from
    model.hidden_dim=1024, model.k=32, training.epochs=10, training.batch_size=1024,
    training.seed=1 (other fields: the config dataclasses' defaults); model.input_dim is the
    activations' width."""

    acts: str = field(kw_only=True)
    """harvest directory"""
    out: str = field(kw_only=True)
    """run directory"""
    set: list[str] = flag(factory=list, metavar="SECTION.FIELD=VALUE", append=True, config_flags=True)
    """override a config field, e.g. --set model.type=topk_sae (repeatable)"""
    normalize: bool = True
    """scale inputs by the manifest's norm_scale (mean squared norm D)"""
    center: bool = False
    """also subtract the train mean"""
    max_norm_ratio: float = 10.0
    """drop train tokens whose norm exceeds this times the median (massive activations); 0
    keeps all"""
    resume: bool = False
    """continue an unfinished run in --out"""
    overwrite: bool = False
    """replace an existing run in --out"""


@dataclass(frozen=True)
class LlmEvalOptions(_Compute):
    """Evaluate llm-train runs on the harvest's held-out split: FVU, code statistics, and the
    LM's CE / KL with each reconstruction spliced into the residual stream."""

    acts: str = field(kw_only=True)
    """harvest directory"""
    runs: list[str] = field(kw_only=True)
    """run directories from llm-train"""
    out: str | None = None
    """write all metrics to this JSON file"""
    budget: int = 10_000
    """held-out tokens for FVU and code stats"""
    ce_contexts: int = 40
    """held-out contexts spliced for CE/KL"""
    batch_size: int = 8
    """contexts per LM forward"""
    markdown: str | None = None
    """also write a markdown table here"""

# ---------------------------------------------------------------- ood

OOD_OUT = "results/ood"
OOD_EPOCHS = 5
OOD_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class OodOptions:
    """Train on MNIST train; score MNIST test (in-distribution) against Fashion-MNIST test
    (out-of-distribution) with the decoder-free LSE energy, SAE reconstruction errors, a
    diagonal GaussianMixture and k-means. Writes results.json, table.md and roc.png."""

    out: str = OOD_OUT
    """output directory"""
    epochs: int = OOD_EPOCHS
    """epochs per neural model (a few minutes on 2 CPU cores; the paper trains 100)"""
    seeds: list[int] = flag(factory=lambda: list(OOD_SEEDS))
    """seeds"""
    n_components: int = 64
    """K for every method"""
    topk_k: int = 16
    """active latents of the TopKSAE"""
    gmm_space: Literal["pca50", "pixels"] = "pca50"
    """fit the GaussianMixture on a PCA-50 projection or on raw pixels"""
    train_subset: int | None = None
    """use only the first n training images"""
    data_dir: str | None = None
    """directory holding the IDX files"""
    threads: int = 1
    """torch/BLAS threads"""
    overwrite: bool = False
    """replace existing results in --out"""

# ---------------------------------------------------------------- scale

SCALE_CORPUS = "sotu,moby,spam,pydoc,perldoc"


@dataclass(frozen=True)
class ScaleOptions(TrackingOptions):
    """Harvest SmolLM2 activations, train Encoder / TopK / L1 SAEs at large K on a GPU, and
    evaluate them on held-out documents (each step resumes from what exists)."""

    model: str = "smollm2-135m"
    """LM: alias, .gguf path, folder, hub id"""
    layer: int = 15
    """decoder block whose residual stream is harvested"""
    work: str = ".scale"
    """harvests and run directories go here"""
    out: str = "docs/scale"
    """results.json/csv, frontier.png, README"""
    corpus: str = SCALE_CORPUS
    """corpus spec for implicit_em.data.lm.corpus.load_corpus (a union a,b,c)"""
    offsets: list[int] = flag(factory=lambda: [0])
    """words dropped from each document, one harvest per offset"""
    harvest_tokens: int = 10_000_000
    """per offset, both splits; more than the corpus holds takes every window"""
    hidden_dims: list[int] = flag(factory=lambda: [4096, 16384, 32768])
    """K of every model family"""
    tc_probes: int = 32
    """encoders' sketched correlation probes (0: exact penalty)"""
    exact_check: list[int] = flag(factory=lambda: [4096], nargs="*")
    """K at which an exact-penalty encoder is trained too, as a check"""
    compile: bool = False
    """torch.compile forward + loss"""
    topk: list[int] = flag(factory=lambda: [32, 64])
    """k of the TopK SAEs"""
    l1: list[float] = flag(factory=lambda: [1.0, 4.0, 16.0])
    """StandardSAE l1_weight = c * K / D for each c"""
    batchtopk: list[int] = flag(factory=list, nargs="*")
    """k of the BatchTopK SAEs (none by default)"""
    jumprelu: list[float] = flag(factory=list, nargs="*")
    """L0 coefficients of the JumpReLU SAEs (none by default)"""
    centre: bool = False
    """also train every SAE on mean-centred inputs (model.centre), beside the uncentred one"""
    batch_size: int = 4096
    """tokens per step"""
    lr: float = 1e-3
    """Adam learning rate"""
    epochs: float = 1.0
    """passes over the train tokens"""
    amp: bool = False
    """bf16 autocast in training"""
    fit_tokens: int = 100_000
    """train tokens for the scalar and least-squares read-outs"""
    eval_tokens: int = 50_000
    """held-out tokens (FVU, codes)"""
    ce_contexts: int = 256
    """held-out contexts spliced"""
    time_limit: float = 0
    """seconds; start no new run after this (0: none)"""
    harvest_only: bool = False
    """stop after harvesting"""
