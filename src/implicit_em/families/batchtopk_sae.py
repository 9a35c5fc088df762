"""The BatchTopK SAE baseline (Bussmann, Leask and Nanda 2024, "BatchTopK Sparse Autoencoders",
arXiv 2412.06410): TopK over the whole batch in training, a threshold at inference.

Legend: B batch, D input dim, K latents. x (B, D), z (B, K) ReLU pre-activations, a (B, K).

Training: of the B K pre-activations of a batch, the k B largest are kept (`batch_topk`), so a
sample may use more or fewer than k latents and k is the batch average. Inference (eval mode):
a = z * (z > theta), one threshold theta for all latents, estimated during training as the
mean over steps of the smallest kept (positive) code of each batch (Sec. 3 of the paper);
here a running mean for the first 1 / THRESHOLD_RATE steps, then an exponential moving
average with rate THRESHOLD_RATE (sae-lens uses the same rate, 0.01). The threshold lives in
the buffer `threshold` (saved with the model). Everything else is the TopK SAE's: encoder on
x - b_dec, unit-norm decoder columns, AuxK on dead latents (`families.topk_sae`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from implicit_em.families.topk_sae import TopKSAEFamily
from implicit_em.models import TopKSAE

THRESHOLD_RATE = 0.01
"""Rate of the exponential moving average of the batch's smallest kept code (after a running
mean over the first 1 / THRESHOLD_RATE steps)."""


def batch_topk(z: Tensor, k: int) -> Tensor:
    """Keep the k B largest entries of z (B, K) over the whole batch, zero the rest: (B, K).

    Ties at the boundary are broken by torch.topk; with fewer than k B positive entries in a
    ReLU'd z some kept entries are 0.
    """
    flat = z.reshape(-1)  # (B K,)
    vals, idx = flat.topk(min(k * z.shape[0], flat.numel()))
    return torch.zeros_like(flat).scatter(0, idx, vals).view_as(z)


class BatchTopKSAE(TopKSAE):
    """BatchTopK SAE: `batch_topk` of the ReLU pre-activations in training mode, the learned
    threshold `threshold` (a scalar buffer) in eval mode. k: average active latents per
    sample. centre: mean-centred inputs (`models._Centring`)."""

    def __init__(self, input_dim: int, hidden_dim: int, k: int, centre: bool = False) -> None:
        super().__init__(input_dim, hidden_dim, k, centre)
        self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("threshold_steps", torch.zeros((), dtype=torch.long))

    def encode(self, x: Tensor) -> Tensor:
        z = self.pre_activations(x)  # (B, K)
        if self.training:
            return batch_topk(z, self.k)
        return z * (z > self.threshold)  # (B, K)

    @torch.no_grad()
    def update_threshold_(self, a: Tensor) -> None:
        """Fold the smallest positive code of a training batch a (B, K) into `threshold`
        (no host synchronisation; a batch with no positive code changes nothing)."""
        m = torch.where(a > 0, a.detach().float(), torch.inf).min()  # ()
        seen = torch.isfinite(m)
        steps = self.threshold_steps + seen.long()
        rate = (1.0 / steps.clamp_min(1)).clamp_min(THRESHOLD_RATE)
        new = self.threshold + (torch.where(seen, m, self.threshold) - self.threshold) * rate
        self.threshold.copy_(new)
        self.threshold_steps.copy_(steps)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.observe_mean_(x)
        a = self.encode(x)  # (B, K)
        if self.training:
            self.update_threshold_(a)
        return self.decode(a), a


class BatchTopKSAEFamily(TopKSAEFamily):
    name = "batchtopk_sae"
    model_class = BatchTopKSAE
    saelens_architecture = "jumprelu"
    topk_codes = False  # k per batch, not per sample: the stacked per-sample fast path does not fit
    cost = 3.0

    def build(self, m) -> BatchTopKSAE:
        return BatchTopKSAE(m.input_dim, m.hidden_dim, m.k, m.centre)

    def readout(self, model, x: Tensor, a: Tensor) -> dict[str, float]:
        return {**super().readout(model, x, a), "threshold": float(model.threshold)}

    def stacked_fast_path(self, cfg) -> str | None:
        return None
