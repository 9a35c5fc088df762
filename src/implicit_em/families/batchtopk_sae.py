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

sae-lens's protocol (`BatchTopKSAE.saelens_protocol_`, the defaults of sae-lens's
`BatchTopKTrainingSAEConfig` that SynthSAEBench's published runs use; each part can be
switched on alone, docs/eval/synthetic/harness-gap.md):

- rescale (`rescale_acts_by_decoder_norm`): the pre-activations are multiplied by each
  decoder column's norm and decode uses the columns divided by their norm; the decoder is
  free (no gradient projection, no renormalisation).
- init (`decoder_init_norm=0.1`): decoder columns kaiming-uniform rescaled to norm 0.1,
  encoder rows = their transpose, encoder bias 0.
- auxk (`TopKTrainingSAE.calculate_topk_aux_loss`): AuxK on the top D // 2 dead latents'
  raw pre-activations (not ReLU'd: a dead latent whose pre-activations are all negative
  still gets gradient), weighted by min(n_dead / (D // 2), 1); use with loss.aux_coef = 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from implicit_em.families.topk_sae import TopKSAEFamily
from implicit_em.models import TopKSAE, topk_codes

SAELENS_PARTS = ("rescale", "init", "auxk")
"""Parts of sae-lens's BatchTopK protocol a model can take (`BatchTopKSAE.saelens_protocol_`)."""
SAELENS_DECODER_INIT_NORM = 0.1
"""sae-lens's `decoder_init_norm` default (Anthropic's April 2024 update heuristic)."""

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
        self.rescale = False  # sae-lens's rescale_acts_by_decoder_norm
        self.raw_auxk = False  # sae-lens's AuxK (raw pre-activations, k_aux = D // 2)

    @torch.no_grad()
    def saelens_protocol_(self, parts: tuple[str, ...]) -> None:
        """Switch on parts of sae-lens's BatchTopK protocol (`SAELENS_PARTS`; module
        docstring). "init" re-initialises the weights in place (from the global RNG), so call
        this before training. ValueError on an unknown part."""
        unknown = [p for p in parts if p not in SAELENS_PARTS]
        if unknown:
            raise ValueError(f"unknown sae-lens parts {unknown}: choose from {SAELENS_PARTS}")
        self.rescale = "rescale" in parts
        self.raw_auxk = "auxk" in parts
        if "init" in parts:
            w = torch.empty(self.hidden_dim, self.input_dim)  # (K, D), sae-lens's W_dec layout
            torch.nn.init.kaiming_uniform_(w)
            w = w / w.norm(dim=1, keepdim=True) * SAELENS_DECODER_INIT_NORM
            self.W_dec.copy_(w.t())  # (D, K)
            self.encoder.weight.copy_(w)  # (K, D) = W_dec^T
            self.encoder.bias.zero_()

    def decoder_columns(self) -> Tensor:
        """The dictionary used in decode, (D, K): W_dec, or W_dec with unit columns under
        rescale."""
        if not self.rescale:
            return self.W_dec
        return self.W_dec / self.W_dec.norm(dim=0, keepdim=True)

    def raw_pre_activations(self, x: Tensor) -> Tensor:
        """W_enc (x - b_dec) + b_enc, times the decoder column norms under rescale: (B, K)."""
        z = self.encoder(self.centred(x) - self.b_dec)  # (B, K)
        return z * self.W_dec.norm(dim=0) if self.rescale else z

    def pre_activations(self, x: Tensor) -> Tensor:
        return torch.relu(self.raw_pre_activations(x))  # (B, K)

    def decode(self, a: Tensor) -> Tensor:
        return self.uncentred(a @ self.decoder_columns().t() + self.b_dec)  # (B, D)

    def aux_reconstruction(self, x: Tensor, dead: Tensor, k_aux: int) -> Tensor:
        """AuxK reconstruction (B, D) from the dead latents (dead: (K,) bool). Default: the
        TopK SAE's (`TopKSAE.aux_reconstruction`). With raw_auxk (sae-lens): the top D // 2
        dead latents' raw pre-activations per sample, k_aux ignored; with fewer dead latents
        than that, all of them. No host synchronisation."""
        if not self.raw_auxk:
            return super().aux_reconstruction(x, dead, k_aux)
        z = self.raw_pre_activations(x).masked_fill(~dead, -torch.inf)  # (B, K)
        a_aux = topk_codes(z, min(self.input_dim // 2, self.hidden_dim))
        a_aux = a_aux.nan_to_num(neginf=0.0)  # live latents picked (fewer dead): zero
        return a_aux @ self.decoder_columns().t()  # (B, D)

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

    def terms_from_outputs(self, model, x, out, loss, dead=None, amp=False):
        terms, a = super().terms_from_outputs(model, x, out, loss, dead, amp)
        if dead is not None and model.raw_auxk:  # sae-lens: scaled by min(n_dead / k_aux, 1)
            terms["aux"] = terms["aux"] * (dead.sum() / (model.input_dim // 2)).clamp(max=1.0)
        return terms, a

    def before_step(self, model) -> None:
        if not model.rescale:  # under rescale the decoder is free (sae-lens)
            model.remove_parallel_grads_()

    def after_step(self, model) -> None:
        if not model.rescale:
            model.normalize_decoder_()

    def readout(self, model, x: Tensor, a: Tensor) -> dict[str, float]:
        return {**super().readout(model, x, a), "threshold": float(model.threshold)}

    def stacked_fast_path(self, cfg) -> str | None:
        return None
