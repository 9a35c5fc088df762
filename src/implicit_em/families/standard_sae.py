"""The standard SAE baseline: ReLU encoder, linear decoder, MSE + L1 on the codes.

Legend: B batch, D input dim, K latents. x (B, D), a (B, K). Terms: mse, l1 (`losses.sae_loss`).
"""

from __future__ import annotations

from torch import Tensor, nn

from implicit_em.families.base import Family
from implicit_em.losses import sae_loss
from implicit_em.models import StandardSAE


class StandardSAEFamily(Family):
    name = "standard_sae"
    model_class = StandardSAE
    saelens_architecture = "standard"
    term_names = ("mse", "l1")
    cost = 1.9  # 5 standard SAEs took 260 s of the reproduction's CPU stacks

    def build(self, m) -> nn.Module:
        return StandardSAE(m.input_dim, m.hidden_dim, m.centre)

    def weights(self, loss, k: int) -> dict[str, float]:
        return {"mse": 1.0, "l1": loss.l1_weight}

    def terms_from_outputs(self, model, x, out, loss, dead=None, amp=False):
        x_hat, a = out  # (B, D), (B, K)
        terms = sae_loss(x, x_hat, a, loss.l1_weight)
        terms.pop("total")
        return terms, a

    def readout(self, model, x: Tensor, a: Tensor) -> dict[str, float]:
        return {"recon_mse": float((model.decode(a) - x).square().mean())}

    def stacked_fast_path(self, cfg) -> str | None:
        return None if cfg.training.amp else "_sae_step"
