"""The TopK SAE baseline (Gao et al. 2024): keep the k largest codes, unit-norm decoder, AuxK.

Legend: B batch, D input dim, K latents. x (B, D), a (B, K). Terms: mse, aux (AuxK on latents
that have not fired for loss.dead_steps steps, zero when none is dead; `losses.topk_loss`).
Housekeeping each step: the gradient parallel to each decoder column is removed before the
optimizer step and the columns are renormalised after it; `since_fired` counts steps since
each latent last fired.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from implicit_em.families.base import Family
from implicit_em.losses import topk_loss
from implicit_em.models import TopKSAE


@torch.no_grad()
def remove_parallel_grads_stacked_(params: dict[str, Tensor]) -> None:
    """`remove_parallel_grads_` on N stacked unit-norm decoders, params["model.W_dec"] (N, D, K)."""
    w = params["model.W_dec"]
    w.grad.sub_(w * (w.grad * w).sum(dim=1, keepdim=True))


@torch.no_grad()
def normalize_decoders_stacked_(params: dict[str, Tensor]) -> None:
    """`normalize_decoder_` on N stacked decoders, params["model.W_dec"] (N, D, K)."""
    w = params["model.W_dec"]
    w.div_(w.norm(dim=1, keepdim=True).clamp_min(1e-8))


class TopKSAEFamily(Family):
    name = "topk_sae"
    model_class = TopKSAE
    saelens_architecture = "topk"
    term_names = ("mse", "aux")
    topk_codes = True
    cost = 2.9  # 5 TopK SAEs took ~400 s of the reproduction's CPU stacks

    def build(self, m) -> nn.Module:
        return TopKSAE(m.input_dim, m.hidden_dim, m.k, m.centre)

    def weights(self, loss, k: int) -> dict[str, float]:
        return {"mse": 1.0, "aux": loss.aux_coef}

    def init_state(self, model) -> dict:
        k, device = model.hidden_dim, next(model.parameters()).device
        return {"since_fired": torch.zeros(k, dtype=torch.long, device=device)}

    def dead_mask(self, state: dict, loss) -> Tensor | None:
        return state["since_fired"] >= loss.dead_steps  # (K,)

    def terms_from_outputs(self, model, x, out, loss, dead=None, amp=False):
        x_hat, a = out  # (B, D), (B, K)
        aux_hat = None
        if dead is not None and loss.aux_coef > 0:
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                aux_hat = model.aux_reconstruction(x, dead, loss.aux_k)  # (B, D)
            aux_hat = aux_hat.float() if amp else aux_hat
        terms = topk_loss(x, x_hat, aux_hat, loss.aux_coef)
        if dead is not None:
            terms["aux"] = terms["aux"] * dead.any()  # no dead latents: no AuxK loss
        terms.pop("total")
        return terms, a

    def before_step(self, model) -> None:
        model.remove_parallel_grads_()

    def after_step(self, model) -> None:
        model.normalize_decoder_()

    def track(self, state: dict, fired: Tensor) -> None:
        state["since_fired"] = torch.where(fired, 0, state["since_fired"] + 1)

    def stacked_before_step(self, params: dict[str, Tensor]) -> None:
        remove_parallel_grads_stacked_(params)

    def stacked_after_step(self, params: dict[str, Tensor]) -> None:
        normalize_decoders_stacked_(params)

    def readout(self, model, x: Tensor, a: Tensor) -> dict[str, float]:
        return {"recon_mse": float((model.decode(a) - x).square().mean())}

    def stacked_fast_path(self, cfg) -> str | None:
        return None if cfg.training.amp else "_sae_step"
