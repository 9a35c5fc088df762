"""Models: the decoder-free encoder (paper Eq. 5) and two encoder-decoder SAE baselines.

Legend: B batch, D input dim, K components/latents. x (B, D), z (B, K) pre-activations,
a (B, K) energies/activations, W (K, D), b (K,). Models return activations, never losses.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = {
    "relu": F.relu,
    "softplus": F.softplus,
    "identity": lambda z: z,
    "abs": torch.abs,
}


def n_parameters(model: nn.Module) -> int:
    """Trainable parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}: choose one of {sorted(ACTIVATIONS)}")


def _check_dims(input_dim: int, hidden_dim: int, k: int | None = None) -> None:
    """ValueError unless input_dim, hidden_dim >= 1 and (when given) 1 <= k <= hidden_dim."""
    if int(input_dim) < 1 or int(hidden_dim) < 1:
        raise ValueError(
            f"input_dim and hidden_dim must be positive, got {input_dim} and {hidden_dim}"
        )
    if k is not None and not 1 <= int(k) <= hidden_dim:
        raise ValueError(f"k must be in [1, hidden_dim={hidden_dim}], got {k}")


def topk_codes(a: Tensor, k: int) -> Tensor:
    """Keep the k largest entries of each row of a (B, K), zero the rest (Gao et al. 2024,
    "Scaling and evaluating sparse autoencoders", TopK activation). Gradient flows to the kept
    entries only."""
    vals, idx = a.topk(k, dim=-1)  # (B, k)
    return torch.zeros_like(a).scatter(-1, idx, vals)


class _LinearRows:
    """W (K, D) and b (K,) of a model whose one linear layer is `self.linear` (the decoder-free
    encoder, the tied TopK autoencoder)."""

    @property
    def W(self) -> Tensor:  # (K, D)
        return self.linear.weight

    @property
    def b(self) -> Tensor:  # (K,)
        return self.linear.bias


CENTRE_BATCHES = 8
"""Training batches whose rows estimate the input mean of a centred SAE (then it is fixed)."""


class _Centring:
    """Optional mean-centred inputs for the SAE baselines (issue 18: published work finds
    that centring removes most outlier-induced dead latents).

    With centre=True the model holds a buffer `x_mean` (D,), saved with its weights, and
    sees x - x_mean; its reconstructions add x_mean back, so decode(encode(x)) is in the
    units of x. What is estimated, and when: x_mean is the mean over all rows of the first
    CENTRE_BATCHES (8) batches that `forward` sees in training mode (a running mean, weighted
    by rows), then stays fixed for the rest of training and afterwards (`x_mean_rows`, the
    rows it averages, is saved too, so a resumed run does not re-estimate it). Until then,
    and in a model never trained, x_mean is 0. With centre=False nothing is registered.
    """

    def _init_centring(self, input_dim: int, centre: bool) -> None:
        self.centre = bool(centre)
        self._mean_fixed = False  # host-side cache of "x_mean_batches >= CENTRE_BATCHES"
        if self.centre:
            self.register_buffer("x_mean", torch.zeros(input_dim))  # (D,)
            self.register_buffer("x_mean_rows", torch.zeros((), dtype=torch.long))
            self.register_buffer("x_mean_batches", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def observe_mean_(self, x: Tensor) -> None:
        """Fold a training batch x (B, D) into x_mean while it is still being estimated."""
        if not (self.centre and self.training) or self._mean_fixed:
            return
        if int(self.x_mean_batches) >= CENTRE_BATCHES:  # e.g. after loading a checkpoint
            self._mean_fixed = True
            return
        rows = self.x_mean_rows + x.shape[0]
        self.x_mean.add_((x.detach().float().mean(dim=0) - self.x_mean) * (x.shape[0] / rows))
        self.x_mean_rows.copy_(rows)
        self.x_mean_batches.add_(1)

    def centred(self, x: Tensor) -> Tensor:
        return x - self.x_mean if self.centre else x  # (B, D)

    def uncentred(self, x_hat: Tensor) -> Tensor:
        return x_hat + self.x_mean if self.centre else x_hat  # (B, D)


class Encoder(_LinearRows, _Centring, nn.Module):
    """z = W x + b, a = phi(z): K component distances, lower = better match (paper Eq. 5).

    No decoder. 784 -> 64 has 50,240 parameters. Two options of the theory-guided variants
    (issue 18; the synthetic harness's `encoder-centred` and `encoder-unit-rows`):
    centre: mean-centred inputs (`_Centring`: z = W (x - x_mean) + b, x_mean estimated from
    the first training batches and stored with the weights); unit_norm_rows: every row of W
    starts at unit norm and `normalize_rows_()` (the family calls it after each optimizer
    step) puts it back there, which removes the ||W||-growth direction of the objective.
    """

    def __init__(self, input_dim: int, hidden_dim: int, activation: str = "relu",
                 centre: bool = False, unit_norm_rows: bool = False) -> None:  # fmt: skip
        super().__init__()
        _check_dims(input_dim, hidden_dim)
        _check_activation(activation)
        self.input_dim, self.hidden_dim, self.activation = input_dim, hidden_dim, activation
        self.linear = nn.Linear(input_dim, hidden_dim)
        self._init_centring(input_dim, centre)
        self.unit_norm_rows = bool(unit_norm_rows)
        if self.unit_norm_rows:
            self.normalize_rows_()

    @torch.no_grad()
    def normalize_rows_(self) -> None:
        """Divide every row of W (K, D) by its Euclidean norm, in place."""
        self.linear.weight.div_(self.linear.weight.norm(dim=1, keepdim=True))

    @property
    def activation_name(self) -> str:
        """The activation's name (relu, softplus, identity or abs), as the authors' API has it."""
        return self.activation

    parameter_count = n_parameters

    def get_weights(self) -> Tensor:
        """A detached copy of W, shape (K, D), for analysis."""
        return self.W.detach().clone()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.observe_mean_(x)
        z = self.linear(self.centred(x))  # (B, K)
        return ACTIVATIONS[self.activation](z), z

    def encode(self, x: Tensor) -> Tensor:
        return self.forward(x)[0]

    def preact_parts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(z0 (B, K), b (K,)) with z = z0 + b the pre-activations of `forward` (which it
        replaces in a training step: it folds x into the input mean the same way): z0 =
        W (x - x_mean) without the bias, for the fused kernels' bias fold (the bias added in
        their statistics pass, its gradient summed in their gradient pass)."""
        self.observe_mean_(x)
        return F.linear(self.centred(x), self.W), self.b


class _SAEWeights(_Centring):
    """Read-outs shared by the encoder-decoder SAEs (the authors' API)."""

    parameter_count = n_parameters

    def get_encoder_weights(self) -> Tensor:
        """A detached copy of the encoder rows W_enc, shape (K, D)."""
        return self.W.detach().clone()

    def get_decoder_weights(self) -> Tensor:
        """A detached copy of the decoder's dictionary, shape (K, D): row j is latent j's
        direction in input space (the transpose of the (D, K) decoder matrix)."""
        return self.decoder_matrix().detach().t().clone()


class StandardSAE(_SAEWeights, nn.Module):
    """Linear + ReLU encoder, linear decoder; trained with MSE + L1 (the paper's baseline).

    784 -> 64 has 101,200 parameters. centre: mean-centred inputs (`_Centring`).
    """

    def __init__(self, input_dim: int, hidden_dim: int, centre: bool = False) -> None:
        super().__init__()
        _check_dims(input_dim, hidden_dim)
        self.input_dim, self.hidden_dim = input_dim, hidden_dim
        self.encoder = nn.Linear(input_dim, hidden_dim)
        self.decoder = nn.Linear(hidden_dim, input_dim)
        self._init_centring(input_dim, centre)

    @property
    def W(self) -> Tensor:  # (K, D) encoder rows
        return self.encoder.weight

    def encode(self, x: Tensor) -> Tensor:
        return F.relu(self.encoder(self.centred(x)))  # (B, K)

    def decode(self, a: Tensor) -> Tensor:
        return self.uncentred(self.decoder(a))  # (B, D)

    def decoder_matrix(self) -> Tensor:  # (D, K)
        return self.decoder.weight

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.observe_mean_(x)
        a = self.encode(x)
        return self.decode(a), a


class _UnitDecoder:
    """An encoder on x - b_dec and a decoder W_dec (D, K) whose columns stay on the unit
    sphere, started at the encoder's rows (TopK, BatchTopK, JumpReLU SAEs)."""

    def _init_unit_decoder(self, input_dim: int, hidden_dim: int) -> None:
        self.encoder = nn.Linear(input_dim, hidden_dim)
        self.W_dec = nn.Parameter(self.encoder.weight.detach().t().clone())  # (D, K)
        self.b_dec = nn.Parameter(torch.zeros(input_dim))
        self.normalize_decoder_()

    @property
    def W(self) -> Tensor:  # (K, D) encoder rows
        return self.encoder.weight

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=0, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_grads_(self) -> None:
        """Project out the gradient component along each decoder column (stays on the sphere)."""
        if self.W_dec.grad is None:
            return
        g, w = self.W_dec.grad, self.W_dec  # (D, K)
        g.sub_(w * (g * w).sum(dim=0, keepdim=True))


class TopKSAE(_UnitDecoder, _SAEWeights, nn.Module):
    """TopK SAE (Gao et al., 2024): keep the k largest ReLU pre-activations, unit-norm decoder.

    z = W_enc (x - b_dec) + b_enc; a = TopK(ReLU(z)); x_hat = W_dec a + b_dec with every
    column of W_dec (D, K) of unit norm. Call `normalize_decoder_()` after each optimizer step
    (and `remove_parallel_grads_()` before it) to keep the columns on the sphere.
    centre: mean-centred inputs (`_Centring`): x is replaced by x - x_mean throughout and
    x_mean is added to x_hat.
    """

    def __init__(self, input_dim: int, hidden_dim: int, k: int, centre: bool = False) -> None:
        super().__init__()
        _check_dims(input_dim, hidden_dim, k)
        self.input_dim, self.hidden_dim, self.k = input_dim, hidden_dim, int(k)
        self._init_unit_decoder(input_dim, hidden_dim)
        self._init_centring(input_dim, centre)

    def pre_activations(self, x: Tensor) -> Tensor:
        return F.relu(self.encoder(self.centred(x) - self.b_dec))  # (B, K)

    def encode(self, x: Tensor) -> Tensor:
        return topk_codes(self.pre_activations(x), self.k)  # (B, K)

    def decode(self, a: Tensor) -> Tensor:
        return self.uncentred(a @ self.W_dec.t() + self.b_dec)  # (B, K) @ (K, D) -> (B, D)

    def decoder_matrix(self) -> Tensor:  # (D, K)
        return self.W_dec

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.observe_mean_(x)
        a = self.encode(x)
        return self.decode(a), a

    def aux_reconstruction(self, x: Tensor, dead: Tensor, k_aux: int) -> Tensor:
        """AuxK: reconstruct with the top-k_aux *dead* latents only (no b_dec).

        dead: (K,) bool mask of latents that have not fired recently. With fewer than k_aux
        dead latents the rest of the selection is zeros; with none the result is zero.
        Written without data-dependent branches so that it runs under torch.func.vmap.
        """
        z = self.pre_activations(x).masked_fill(~dead, 0.0)  # (B, K)
        return topk_codes(z, min(k_aux, self.hidden_dim)) @ self.W_dec.t()  # (B, D)


@torch.no_grad()
def init_from_encoder_(sae: TopKSAE, enc: Encoder) -> None:
    """Start a TopK SAE from a trained decoder-free encoder (decoder-free pre-training, then
    decoder training; the synthetic harness's `topk-pretrained`): encoder rows and bias =
    W, b; decoder columns = W^T, normalised (sae.W_dec (D, K)); b_dec stays as it is (zero
    when fresh). Centred models: the encoder's input mean (and its estimation state) is
    copied, so the SAE sees the inputs the encoder saw. In place. ValueError when one model
    is centred and the other is not, or when the shapes differ."""
    if sae.centre != enc.centre:
        raise ValueError(
            f"init_from_encoder_: the SAE has centre={sae.centre} but the encoder "
            f"centre={enc.centre}: build both with the same model.centre"
        )
    if sae.encoder.weight.shape != enc.W.shape:
        raise ValueError(f"init_from_encoder_: SAE encoder {tuple(sae.encoder.weight.shape)} "
                         f"against encoder W {tuple(enc.W.shape)}: use the same K and D")  # fmt: skip
    sae.encoder.weight.copy_(enc.W)  # (K, D)
    sae.encoder.bias.copy_(enc.b)  # (K,)
    sae.W_dec.copy_(enc.W.t())  # (D, K)
    sae.normalize_decoder_()
    if sae.centre:
        for name in ("x_mean", "x_mean_rows", "x_mean_batches"):
            getattr(sae, name).copy_(getattr(enc, name))
        sae._mean_fixed = enc._mean_fixed


class TopKReadout(nn.Module):
    """A post-hoc TopK read-out of a trained model's codes: encode(x) = TopK_k(model.encode(x))
    (`topk_codes`: each row of the (B, K) codes keeps its k largest entries, the rest are set
    to 0; Gao et al. 2024's TopK activation applied after training, not during it). Used to
    read a model out at a matched L0 (docs/eval/probing/gpu4_plan.md: the weight-redundancy
    encoder at the reference encoder's L0).

    Non-negative codes (ReLU, softplus, the SAEs): a row with fewer than k positive codes keeps
    all of them and the entries picked beyond them are zeros that stay zero, so L0 (codes > 0)
    <= k, with equality when a row has k or more positive codes. Codes that can be negative
    (activation "identity"): the k largest are kept whatever their sign, so a row with fewer
    than k positive codes also keeps its largest negative ones (k nonzeros), and the entries set
    to 0 then exceed those kept negative ones; L0 counted as codes > 0 is still <= k. Meant for
    non-negative codes.

    Nothing is learned and the wrapped model is not changed; `W` (K, D) is the model's, so the
    read-out stands where the model stood in L0 / probing / least-squares evaluations. Calling
    it works like `Encoder`: forward(x) -> (codes, a), the read-out codes (B, K) and the
    model's codes before the read-out (B, K); encode(x) = forward(x)[0]. ValueError unless k is
    an int (2.5 or 3.0 are refused, not truncated) with 1 <= k <= model.hidden_dim."""

    def __init__(self, model: nn.Module, k: int) -> None:
        super().__init__()
        try:
            k_int = None if isinstance(k, bool) else operator.index(k)
        except TypeError:
            k_int = None
        if k_int is None:
            raise ValueError(f"TopKReadout: k must be an integer number of latents, got {k!r}: "
                             "pass an int, e.g. round(l0)")  # fmt: skip
        _check_dims(model.input_dim, model.hidden_dim, k_int)
        self.inner, self.k = model, k_int
        self.input_dim, self.hidden_dim = model.input_dim, model.hidden_dim

    @property
    def W(self) -> Tensor:  # (K, D)
        return self.inner.W

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, D) -> (codes (B, K) with at most k nonzero per row, the model's codes (B, K))."""
        a = self.inner.encode(x)
        return topk_codes(a, self.k), a

    def encode(self, x: Tensor) -> Tensor:
        """x (B, D) -> codes (B, K), at most k nonzero per row."""
        return self.forward(x)[0]
