"""The JumpReLU SAE baseline (Rajamanoharan et al. 2024, "Jumping Ahead: Improving
Reconstruction Fidelity with JumpReLU Sparse Autoencoders", arXiv 2407.14435).

Legend: B batch, D input dim, K latents. x (B, D), z (B, K) pre-activations, theta (K,)
thresholds, a (B, K) codes, H the Heaviside step.

    z = W_enc (x - b_dec) + b_enc,   a = JumpReLU_theta(z) = z * H(z - theta)   (Eq. 1-2)
    x_hat = W_dec a + b_dec,         loss = ||x - x_hat||^2 / D + l0_coef * sum_j H(z_j - theta_j)

averaged over the batch. The MSE is a mean over B and D, as for the other SAEs here, where
the paper sums over D: l0_coef here is the paper's lambda / D. H has zero
derivative almost everywhere, so both functions use straight-through estimators with the
rectangle kernel K(u) = 1[-1/2 < u < 1/2] of bandwidth eps (Eq. 11-12), and pass gradient to
theta only (as the paper; sae-lens's jumprelu_ste_to_input=False):

    d JumpReLU_theta(z) / d theta = -(theta / eps) K((z - theta) / eps)
    d H(z - theta) / d theta      = -(1 / eps) K((z - theta) / eps)

while d JumpReLU / d z = H(z - theta) exactly. theta is a parameter kept >= 0 by projection
after each optimizer step (sae-lens trains theta directly rather than log theta: Adam moves
log theta too slowly from a small start). Decoder columns have unit norm (as the TopK SAE
here; the L0 penalty is blind to the decoder's scale, so the constraint only removes a
degenerate direction), with the gradient along each column removed before the step.

Defaults (`ModelConfig.jump_threshold` = 1.0, `jump_bandwidth` = 0.1, `LossConfig.l0_coef` =
1.0). The paper starts theta and eps at 0.001 (and trains for billions of tokens); sae-lens
6.54 (`JumpReLUTrainingSAEConfig`) at theta 0.01, eps 0.05 with l0_coefficient 1.0 against an
MSE summed over D. Adam moves theta by about lr per step, so from such a start the code stays
dense for a long time on inputs of unit scale per dimension, whatever the L0 coefficient:
measured on the mini recipe (512 features in 64 dimensions, true L0 4.04; 600 steps of 512,
K = 512, seed 0): theta0 = eps = 0.001 gives L0 73.7 at l0_coef 1.0 and 73.1 at 0.1 (MCC 0.382,
the untrained control's 0.379); sae-lens's 0.01 / 0.05 gives L0 37.3 / 37.5 (MCC 0.388);
theta0 = 1.0, eps = 0.1 gives L0 4.9 / 5.0 (MCC 0.460 / 0.459). The threshold must start near
the pre-activations' scale (std ~0.6 for an untrained model on such inputs), so the defaults
are those of the harness (docs/eval/synthetic/baselines.md); tests/families/
test_jumprelu_defaults.py checks they reach a sparse code that recovers planted features.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from implicit_em.families.base import Family
from implicit_em.families.topk_sae import (
    normalize_decoders_stacked_,
    remove_parallel_grads_stacked_,
)
from implicit_em.models import _check_dims, _SAEWeights, _UnitDecoder


def rectangle(u: Tensor) -> Tensor:
    """K(u) = 1 where -1/2 < u < 1/2, else 0 (the STE kernel, Eq. 11)."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _ThresholdSTE(torch.autograd.Function):
    """Shared by the two straight-through functions: saves z (B, K), theta (K,) and eps."""

    generate_vmap_rule = True  # the stacked trainer's generic path vmaps over models

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        z, theta, eps = inputs
        ctx.save_for_backward(z, theta)
        ctx.eps = eps


class JumpReLUFunction(_ThresholdSTE):
    """z * H(z - theta) with the straight-through gradient for theta (module docstring).
    z (B, K), theta (K,), eps a positive float; returns (B, K)."""

    @staticmethod
    def forward(z: Tensor, theta: Tensor, eps: float) -> Tensor:
        return z * (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, g: Tensor):
        z, theta = ctx.saved_tensors
        gate = (z > theta).to(g.dtype)  # (B, K)
        kern = rectangle((z - theta) / ctx.eps) / ctx.eps  # (B, K)
        return g * gate, -(theta * kern * g).sum(dim=0), None


class StepFunction(_ThresholdSTE):
    """H(z - theta) with the straight-through gradient for theta (module docstring).
    z (B, K), theta (K,); returns (B, K); no gradient reaches z."""

    @staticmethod
    def forward(z: Tensor, theta: Tensor, eps: float) -> Tensor:
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, g: Tensor):
        z, theta = ctx.saved_tensors
        kern = rectangle((z - theta) / ctx.eps) / ctx.eps  # (B, K)
        return None, -(kern * g).sum(dim=0), None


def jumprelu(z: Tensor, theta: Tensor, eps: float) -> Tensor:
    """JumpReLU_theta(z) = z H(z - theta), (B, K), straight-through in theta."""
    return JumpReLUFunction.apply(z, theta, eps)


def step(z: Tensor, theta: Tensor, eps: float) -> Tensor:
    """H(z - theta), (B, K), straight-through in theta."""
    return StepFunction.apply(z, theta, eps)


def jumprelu_loss(x: Tensor, x_hat: Tensor, z: Tensor, theta: Tensor, eps: float) -> dict:
    """Unweighted terms: mse (mean over B and D of (x_hat - x)^2) and l0 (mean over B of the
    latents firing, sum_j H(z_j - theta_j), through the STE). x, x_hat (B, D), z (B, K)."""
    return {"mse": (x_hat - x).square().mean(), "l0": step(z, theta, eps).sum(dim=1).mean()}


class JumpReLUSAE(_UnitDecoder, _SAEWeights, nn.Module):
    """JumpReLU SAE (module docstring). threshold: initial theta of every latent; bandwidth:
    eps of the STEs; centre: mean-centred inputs (`models._Centring`).
    forward(x) -> (x_hat (B, D), a (B, K), z (B, K)): the pre-activations feed the L0 term."""

    def __init__(self, input_dim: int, hidden_dim: int, threshold: float = 1.0,
                 bandwidth: float = 0.1, centre: bool = False) -> None:  # fmt: skip
        super().__init__()
        _check_dims(input_dim, hidden_dim)
        if bandwidth <= 0 or threshold < 0:
            raise ValueError(f"need bandwidth > 0 and threshold >= 0, got {bandwidth}, {threshold}")
        self.input_dim, self.hidden_dim, self.bandwidth = input_dim, hidden_dim, float(bandwidth)
        self._init_unit_decoder(input_dim, hidden_dim)
        self.threshold = nn.Parameter(torch.full((hidden_dim,), float(threshold)))  # (K,)
        self._init_centring(input_dim, centre)

    def pre_activations(self, x: Tensor) -> Tensor:
        return self.encoder(self.centred(x) - self.b_dec)  # (B, K)

    def encode(self, x: Tensor) -> Tensor:
        return jumprelu(self.pre_activations(x), self.threshold, self.bandwidth)  # (B, K)

    def decode(self, a: Tensor) -> Tensor:
        return self.uncentred(a @ self.W_dec.t() + self.b_dec)  # (B, K) @ (K, D) -> (B, D)

    def decoder_matrix(self) -> Tensor:  # (D, K)
        return self.W_dec

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        self.observe_mean_(x)
        z = self.pre_activations(x)  # (B, K)
        a = jumprelu(z, self.threshold, self.bandwidth)
        return self.decode(a), a, z

    @torch.no_grad()
    def clamp_threshold_(self) -> None:
        """theta >= 0 (below 0 the gate would pass negative pre-activations)."""
        self.threshold.clamp_(min=0.0)


class JumpReLUSAEFamily(Family):
    name = "jumprelu_sae"
    model_class = JumpReLUSAE
    saelens_architecture = "jumprelu"
    term_names = ("mse", "l0")
    cost = 2.0

    def build(self, m) -> JumpReLUSAE:
        return JumpReLUSAE(m.input_dim, m.hidden_dim, m.jump_threshold, m.jump_bandwidth,
                           m.centre)  # fmt: skip

    def weights(self, loss, k: int) -> dict[str, float]:
        return {"mse": 1.0, "l0": loss.l0_coef}

    def terms_from_outputs(self, model, x, out, loss, dead=None, amp=False):
        x_hat, a, z = out  # (B, D), (B, K), (B, K)
        theta = model.threshold.to(z.dtype)
        return jumprelu_loss(x, x_hat, z, theta, model.bandwidth), a

    def before_step(self, model) -> None:
        model.remove_parallel_grads_()

    def after_step(self, model) -> None:
        model.normalize_decoder_()
        model.clamp_threshold_()

    def stacked_before_step(self, params: dict[str, Tensor]) -> None:
        remove_parallel_grads_stacked_(params)

    @torch.no_grad()
    def stacked_after_step(self, params: dict[str, Tensor]) -> None:
        normalize_decoders_stacked_(params)
        params["model.threshold"].clamp_(min=0.0)

    def readout(self, model, x: Tensor, a: Tensor) -> dict[str, float]:
        return {"recon_mse": float((model.decode(a) - x).square().mean()),
                "threshold_mean": float(model.threshold.mean())}  # fmt: skip
