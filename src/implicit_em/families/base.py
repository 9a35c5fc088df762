"""What a model family must say about itself; the trainers rely on nothing else.

Legend: B batch, D input dim, K components/latents. x (B, D), a (B, K).

A family is a stateless object (one per name, from `families.family`). The trainer keeps the
changing state (`init_state`), asks the family for the unweighted loss terms of a batch and
their weights, and calls its hooks around each optimizer step. The stacked trainer may use a
family's batched fast path (`stacked_fast_path`), tested against the one-model loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from implicit_em.config import LossConfig, ModelConfig


class Family:
    name: ClassVar[str]
    """Registry name (`model.type`)."""
    model_class: ClassVar[type[nn.Module]]
    """The nn.Module this family builds."""
    term_names: ClassVar[tuple[str, ...]]
    """Unweighted terms reported each step, in order; "total" is their weighted sum."""
    cost: ClassVar[float] = 1.0
    """CPU time of one model-step relative to the decoder-free encoder (stack planning)."""
    topk_codes: ClassVar[bool] = False
    """Codes keep the k largest pre-activations, with a unit-norm decoder and AuxK (read by
    the stacked trainer's batched SAE step)."""
    saelens_architecture: ClassVar[str | None] = None
    """The sae-lens architecture the model exports to (`interop.saelens`): standard, topk or
    jumprelu; None: not exportable."""
    batch_statistics: ClassVar[bool] = False
    """Terms depend on statistics of the whole batch (variance, correlation), so data-parallel
    ranks must share column statistics; False: terms are per-sample means."""

    def build(self, m: ModelConfig) -> nn.Module:
        """A freshly initialised model (the caller seeds torch)."""
        raise NotImplementedError

    def weights(self, loss: LossConfig, k: int) -> dict[str, float]:
        """Weight of each term in the total, for a model with k components."""
        raise NotImplementedError

    def init_state(self, model: nn.Module) -> dict:
        """The trainer's mutable state for this model (saved in checkpoints)."""
        return {}

    def dead_mask(self, state: dict, loss: LossConfig) -> Tensor | None:
        """(K,) bool mask the terms need (AuxK's dead latents), or None."""
        return None

    def terms_from_outputs(
        self, model: nn.Module, x: Tensor, out: tuple, loss: LossConfig,
        dead: Tensor | None = None, amp: bool = False,
    ) -> tuple[dict[str, Tensor], Tensor]:  # fmt: skip
        """Unweighted terms (scalars) and the codes a (B, K) from one forward's outputs."""
        raise NotImplementedError

    def loss_terms(
        self, model: nn.Module, x: Tensor, loss: LossConfig,
        dead: Tensor | None = None, amp: bool = False, with_wr: bool = True,
    ) -> dict:  # fmt: skip
        """Unweighted terms and "a" (B, K) for a batch x (B, D). amp: bf16 autocast for the
        model, its outputs cast to float32 before the losses (log Var and the correlation's
        sums of squares lose too much in bf16). with_wr=False: leave out the encoder's
        zero-weight wr metric (`losses.combined_loss`); families without it ignore it."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        if amp:
            out = tuple(t.float() for t in out)
        terms, a = self.terms_from_outputs(model, x, out, loss, dead, amp)
        terms["a"] = a
        return terms

    def before_step(self, model: nn.Module) -> None:
        """After backward, before the optimizer step (e.g. project decoder gradients)."""

    def after_step(self, model: nn.Module) -> None:
        """After the optimizer step: constraints on the weights (e.g. a unit-norm decoder)."""

    def track(self, state: dict, fired: Tensor) -> None:
        """Update the state from the step's firing latents, fired (K,) bool (data-parallel
        trainers reduce it over ranks first). Called only when `init_state` is not empty."""

    def stacked_before_step(self, params: dict[str, Tensor]) -> None:
        """`before_step` on N stacked models at once; params: "model.<name>" -> (N, ...)."""

    def stacked_after_step(self, params: dict[str, Tensor]) -> None:
        """`after_step` on N stacked models at once."""

    def readout(self, model: nn.Module, x: Tensor, a: Tensor) -> dict[str, float]:
        """Evaluation metrics that depend on the family (reconstruction, responsibilities).
        x (N, D), a = model.encode(x) (N, K)."""
        return {}

    def stacked_fast_path(self, cfg) -> str | None:
        """Name of the StackedTrainer method that trains this family's stacks with batched
        matmuls and hand-written gradients, or None for the generic vmap path."""
        return None
