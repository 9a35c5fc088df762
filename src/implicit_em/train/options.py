"""The options of the `ddp` and `ddp-modules` commands, apart from the trainers that run them
(`train.distributed`, `train.modules`): the CLI reads these dataclasses to build each command's
flags and --help, so this module imports no torch. Their old homes re-export them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from implicit_em.families.registry import DEFAULT_FAMILY
from implicit_em.options import flag
from implicit_em.tracking import TrackingOptions


@dataclass(frozen=True)
class StepOptions:
    """The options the `ddp` and `ddp-modules` commands share: random data, sizes, the step."""

    random_tokens: int = 0
    """random N(0,1) data instead of --acts"""
    input_dim: int = 576
    """D for --random-tokens"""
    k: int = 32
    """active latents of the k-sparse families"""
    batch_size: int = 4096
    """rows per step (ddp: the global batch, split over the ranks)"""
    steps: int = 100
    """optimizer steps"""
    warmup: int = 10
    """steps before timing starts"""
    lr: float = 1e-3
    """Adam learning rate"""
    amp: bool = False
    """bf16 autocast, float32 losses"""
    tc_probes: int | None = None
    """encoders: sketch the correlation penalty with this many probes (default: exact)"""
    compile: bool = False
    """torch.compile the forward + loss"""
    log_every: int = 0
    """record the terms every this many steps (0: never)"""

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        if not getattr(self, "acts", None) and self.random_tokens < self.batch_size:
            raise ValueError("pass --acts or --random-tokens >= --batch-size")


@dataclass(frozen=True)
class DistributedOptions(StepOptions, TrackingOptions):
    """Data-parallel training of one model on LM activations or random tokens, timed; run
    under `torchrun --nproc-per-node R -m implicit_em.train.distributed ...` (or alone: one rank)."""

    acts: str | None = None
    """harvest directory (train split, normalized)"""
    type: str = DEFAULT_FAMILY
    """model family (model.type)"""
    hidden_dim: int = 16384
    """K"""
    seed: int = 1
    """seeds the weights, the data order and the probes"""
    bf16_grads: bool = False
    """all-reduce gradients in bf16"""
    grad_sync: Literal["flat", "ddp"] = "flat"
    """gradient averaging over ranks: flat (one asynchronous all-reduce of the flattened
    gradients after backward) or ddp (PyTorch DDP's bucketed reducer)"""
    sync_debug: bool = False
    """count host-device synchronisations in the timed steps (CUDA)"""
    out: str | None = None
    """rank 0 writes a JSON summary here"""


@dataclass(frozen=True)
class ModulesOptions(StepOptions):
    """A grid of models trained on different ranks from one activation stream; run under
    `torchrun --nproc-per-node R -m implicit_em.train.modules ...` (or alone: one rank)."""

    out: str | None = None
    """parent of the run directories (out/<family>_K<K>_seed<seed>); none: nothing written"""
    acts: list[str] = flag(factory=list)
    """harvest directories of the same tokens (e.g. one per layer): one source each"""
    types: list[str] = flag(factory=lambda: [DEFAULT_FAMILY])
    """model families of the grid"""
    hidden_dims: list[int] = flag(factory=lambda: [16384])
    """K of the grid"""
    seeds: list[int] = flag(factory=lambda: [1])
    """seeds of the grid (weights and probes)"""
    data_seed: int = 0
    """seeds the order of the stream (and the random tokens)"""
    overwrite: bool = False
    """replace run directories that hold results"""
    resume: bool = False
    """keep the models whose run directory under --out holds a finished run of this grid
    (verified by its manifest) and train only the others, from the start"""
    summary: str | None = None
    """rank 0 writes the JSON summary here"""
