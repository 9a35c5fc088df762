"""A published SAE (SAELens or sparsify format) as a model of ours, so our evaluation judges it.

Legend: B batch, D input dim (d_in), K latents (d_sae). x (B, D) in the LM's own units,
z (B, K) pre-activations, a (B, K) codes. Tensors follow SAELens: W_enc (D, K), b_enc (K,),
W_dec (K, D), b_dec (D,), threshold (K,) for JumpReLU.

The forward pass is the SAELens one (sae_lens.saes.{standard,topk,jumprelu}_sae, v6):

    x' = x - b_dec            if apply_b_dec_to_input, else x
    z  = x' W_enc + b_enc                                   # (B, D) @ (D, K) -> (B, K)
    standard: a = ReLU(z);  topk: a = ReLU(TopK_k(z));  jumprelu: a = ReLU(z) * (z > threshold)
    x_hat = a W_dec + b_dec                                 # (B, K) @ (K, D) -> (B, D)

With `rescale_acts_by_decoder_norm` (topk), z is multiplied by the row norms of W_dec before
TopK and a is divided by them before decoding, as SAELens does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ARCHITECTURES = ("standard", "topk", "jumprelu")


class SAELensModel(nn.Module):
    """An encoder-decoder SAE with SAELens semantics (standard, topk or jumprelu).

    Has `encode` (B, D) -> (B, K), `decode` (B, K) -> (B, D), `forward` -> (x_hat, a) and `W`
    (K, D) encoder rows, like our own models, so `implicit_em.lm_eval` takes it unchanged.
    """

    def __init__(
        self,
        W_enc: Tensor,
        b_enc: Tensor,
        W_dec: Tensor,
        b_dec: Tensor,
        architecture: str = "standard",
        *,
        k: int | None = None,
        threshold: Tensor | None = None,
        apply_b_dec_to_input: bool = True,
        rescale_acts_by_decoder_norm: bool = False,
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}: use one of {ARCHITECTURES}")
        d, K = W_enc.shape
        if W_dec.shape != (K, d) or b_enc.shape != (K,) or b_dec.shape != (d,):
            raise ValueError(
                f"inconsistent SAE tensors: W_enc {tuple(W_enc.shape)}, b_enc "
                f"{tuple(b_enc.shape)}, W_dec {tuple(W_dec.shape)}, b_dec {tuple(b_dec.shape)}; "
                "expected (D, K), (K,), (K, D), (D,)"
            )
        if architecture == "topk" and not (k is not None and 1 <= k <= K):
            raise ValueError(f"a topk SAE needs k in [1, {K}], got {k}")
        if architecture == "jumprelu" and (threshold is None or threshold.shape != (K,)):
            raise ValueError("a jumprelu SAE needs a threshold tensor of shape (K,)")
        self.architecture, self.k = architecture, k
        self.apply_b_dec_to_input = bool(apply_b_dec_to_input)
        self.rescale_acts_by_decoder_norm = bool(rescale_acts_by_decoder_norm)
        self.input_dim, self.hidden_dim = d, K
        self.W_enc = nn.Parameter(W_enc.detach().clone())
        self.b_enc = nn.Parameter(b_enc.detach().clone())
        self.W_dec = nn.Parameter(W_dec.detach().clone())
        self.b_dec = nn.Parameter(b_dec.detach().clone())
        if threshold is not None:
            self.threshold = nn.Parameter(threshold.detach().clone())
        else:
            self.threshold = None

    @property
    def W(self) -> Tensor:  # (K, D) encoder rows
        return self.W_enc.t()

    def pre_activations(self, x: Tensor) -> Tensor:
        """z (B, K) = (x - b_dec) W_enc + b_enc (b_dec only if apply_b_dec_to_input)."""
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc  # (B, D) @ (D, K) -> (B, K)

    def encode(self, x: Tensor) -> Tensor:
        z = self.pre_activations(x)  # (B, K)
        if self.architecture == "standard":
            return F.relu(z)
        if self.architecture == "jumprelu":
            return F.relu(z) * (z > self.threshold).to(z)
        if self.rescale_acts_by_decoder_norm:
            z = z * self.W_dec.norm(dim=-1)
        vals, idx = z.topk(self.k, dim=-1)  # (B, k)
        return torch.zeros_like(z).scatter(-1, idx, F.relu(vals))

    def decode(self, a: Tensor) -> Tensor:
        if self.rescale_acts_by_decoder_norm:
            a = a / self.W_dec.norm(dim=-1)
        return a @ self.W_dec + self.b_dec  # (B, K) @ (K, D) -> (B, D)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a = self.encode(x)
        return self.decode(a), a
