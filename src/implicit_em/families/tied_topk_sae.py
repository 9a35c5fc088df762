"""The tied TopK autoencoder: one matrix W, no decoder parameters (issue 18).

Legend: B batch, D input dim, K latents. x (B, D), z (B, K) ReLU pre-activations, a (B, K)
codes, W (K, D) the one weight matrix, b (K,) its bias, b_dec (D,) a data offset.

    z = ReLU(W x + b),   a = TopK_k(z),   x_hat = a W + b_dec,
    loss = mse = sum_d (x - x_hat)_d^2, averaged over the batch

The encoder is the decoder-free encoder's one linear layer (`models.Encoder`'s initialisation,
so the same seed draws the same W and b), read back through its own rows: a tied-weight
autoencoder (Vincent et al. 2010, JMLR 11, "Stacked denoising autoencoders") with the TopK
activation of Gao et al. 2024 ("Scaling and evaluating sparse autoencoders"). It is the
`tied-topk` variant of the synthetic harness (`eval.options.VARIANTS`,
docs/eval/synthetic/variants.md), which beat every SAE baseline on SynthSAEBench-16k at a
short budget (docs/eval/synthetic/gpu16k.md). As there: no AuxK, no unit-norm constraint on
W (a row's norm is both its encoder gain and its decoder length), the reconstruction summed
over D (`losses.summed_squared_error`). centre: mean-centred inputs (`models._Centring`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from implicit_em.families.base import Family
from implicit_em.losses import summed_squared_error
from implicit_em.models import _check_dims, _LinearRows, _SAEWeights, topk_codes


class TiedTopKSAE(_LinearRows, _SAEWeights, nn.Module):
    """x_hat = TopK_k(ReLU(W x + b)) W + b_dec: one (K, D) matrix for encoder and decoder.

    input_dim D, hidden_dim K, k in [1, K] (ValueError otherwise); centre: mean-centred
    inputs (x replaced by x - x_mean, x_mean added to x_hat). `forward` returns
    (x_hat (B, D), a (B, K), z (B, K)), z the ReLU pre-activations before TopK.
    """

    def __init__(self, input_dim: int, hidden_dim: int, k: int, centre: bool = False) -> None:
        super().__init__()
        _check_dims(input_dim, hidden_dim, k)
        self.input_dim, self.hidden_dim, self.k = input_dim, hidden_dim, int(k)
        self.linear = nn.Linear(input_dim, hidden_dim)  # models.Encoder's layer and init
        self.b_dec = nn.Parameter(self.linear.weight.new_zeros(input_dim))  # (D,)
        self._init_centring(input_dim, centre)

    def pre_activations(self, x: Tensor) -> Tensor:
        return F.relu(self.linear(self.centred(x)))  # (B, K)

    def encode(self, x: Tensor) -> Tensor:
        return topk_codes(self.pre_activations(x), self.k)  # (B, K), k non-zero per row

    def decode(self, a: Tensor) -> Tensor:
        return self.uncentred(a @ self.W + self.b_dec)  # (B, K) @ (K, D) -> (B, D)

    def decoder_matrix(self) -> Tensor:  # (D, K)
        return self.W.t()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self.observe_mean_(x)
        z = self.pre_activations(x)
        a = topk_codes(z, self.k)
        return self.decode(a), a, z


class TiedTopKSAEFamily(Family):
    name = "tied_topk_sae"
    model_class = TiedTopKSAE
    term_names: tuple[str, ...] = ("mse",)
    cost = 2.0  # one matrix, a TopK: between the encoder and the TopK SAE

    def build(self, m) -> nn.Module:
        return self.model_class(m.input_dim, m.hidden_dim, m.k, m.centre)

    def weights(self, loss, k: int) -> dict[str, float]:
        return {"mse": 1.0}

    def terms_from_outputs(self, model, x, out, loss, dead=None, amp=False):
        x_hat, a, _ = out  # (B, D), (B, K), (B, K)
        return {"mse": summed_squared_error(x, x_hat)}, a

    def readout(self, model, x: Tensor, a: Tensor) -> dict[str, float]:
        return {"recon_mse": float((model.decode(a) - x).square().mean())}
