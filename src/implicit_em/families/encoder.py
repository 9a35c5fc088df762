"""The decoder-free encoder (ours): a = act(W x + b), trained by LSE + variance + decorrelation.

Legend: B batch, D input dim, K components. x (B, D), a (B, K), W (K, D).
Terms: lse (paper Eq. 3), var and tc (the InfoMax terms of Eq. 7), wr (Eq. 8, weight 0 in the
paper). No decoder: the read-out is W^T a (`metrics.reconstruction_mse`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from implicit_em import metrics
from implicit_em.families.base import Family
from implicit_em.kernels import fused_active
from implicit_em.losses import combined_loss, correlation_probes, loss_weights
from implicit_em.models import Encoder


def bias_fold(model, loss, x: Tensor) -> bool:
    """Whether the step folds the encoder's bias into the fused kernels: the sketched penalty
    on the fused path (`kernels.fused_active`), ReLU codes and a bias. Then z0 = W x goes
    to the kernels without b, their statistics pass adds it and their gradient pass sums
    dL/dz over the rows for dL/db (no separate pass over (B, K) for it); values and
    gradients are those of the plain step (tests/test_kernels.py). `kernels.infomax.FOLD`
    ["bias"] False turns it off."""
    from implicit_em.kernels.infomax import FOLD

    return FOLD["bias"] and _foldable(model, loss, x)


def matmul_fold(model, loss, x: Tensor) -> bool:
    """Whether the step computes the encoder's matmul together with the fused statistics (the
    matmul fold, issue 19's round 14: `kernels.infomax.fused_encoder_terms`): where the bias
    fold could apply (`bias_fold`'s conditions but its switch) and `kernels.infomax.FOLD`
    ["matmul"] names a forward ("triton" or "cublas"). It takes precedence over the bias
    fold, whose bias it folds too."""
    from implicit_em.kernels.infomax import FOLD

    return bool(FOLD["matmul"]) and _foldable(model, loss, x)


def _foldable(model, loss, x: Tensor) -> bool:
    """The sketched penalty on the fused path (`kernels.fused_active`), ReLU codes, a bias."""
    # x and W both: under the stacked trainer's vmap either may be the batched one
    return (loss.tc_probes is not None and model.activation == "relu"
            and model.linear.bias is not None and fused_active(x)
            and fused_active(model.W))  # fmt: skip


class EncoderFamily(Family):
    name = "encoder"
    model_class = Encoder
    saelens_architecture = "standard"
    term_names = ("lse", "var", "tc", "wr")
    cost = 1.0  # 23 Adam encoders took 637 s of the reproduction's CPU stacks
    batch_statistics = True

    def build(self, m) -> nn.Module:
        return Encoder(m.input_dim, m.hidden_dim, m.activation, centre=m.centre,
                       unit_norm_rows=m.unit_norm_rows)  # fmt: skip

    def after_step(self, model) -> None:
        if model.unit_norm_rows:
            model.normalize_rows_()

    def weights(self, loss, k: int) -> dict[str, float]:
        return loss_weights(loss, k)  # the lambdas rescaled from loss.reference_k to K

    def loss_terms(self, model, x, loss, dead=None, amp=False, with_wr=True):
        if matmul_fold(model, loss, x):
            return self._matmul_fold_terms(model, x, loss, amp, with_wr)
        if bias_fold(model, loss, x):  # the fused sketch adds b and sums dL/db itself
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                z0, b = model.preact_parts(x)  # (B, K), (K,) float32
            # the codes as forward computes them, for the caller (the kernels do not read
            # them: under torch.compile this is dead code unless the caller uses terms["a"])
            a = torch.relu(z0 + b.to(z0.dtype))
            terms, a = self.terms_from_outputs(model, x, (a, z0), loss, dead, amp,
                                               with_wr=with_wr, bias=b)  # fmt: skip
            terms["a"] = a
            return terms
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            a, z = model(x)  # (B, K) each
        # The fused InfoMax kernels (`implicit_em.kernels`) read bf16 codes and accumulate in
        # float32; the reference formulas need float32 codes (log Var and the correlation's
        # sums of squares lose too much in bf16).
        if amp and not fused_active(a):
            a, z = a.float(), z.float()
        terms, a = self.terms_from_outputs(model, x, (a, z), loss, dead, amp, with_wr=with_wr)
        terms["a"] = a
        return terms

    def _matmul_fold_terms(self, model, x, loss, amp, with_wr) -> dict:
        """`loss_terms` under the matmul fold: the codes and the InfoMax terms from the
        forward FOLD["matmul"] names (the Triton GEMM with the statistics in its epilogue,
        or cuBLAS's ReLU epilogue then the statistics pass; `fused_encoder_terms`)."""
        from implicit_em.kernels.infomax import fused_encoder_terms

        model.observe_mean_(x)
        xc, w = model.centred(x), model.W  # (B, D), (K, D)
        if amp:  # as autocast runs F.linear: both operands in bf16
            xc, w = xc.to(torch.bfloat16), w.to(torch.bfloat16)
        else:
            xc = xc.to(w.dtype)
        probes = correlation_probes(w.shape[0], loss.tc_probes, xc)  # (K, m)
        lse, var, tc, a = fused_encoder_terms(xc, w, model.b, probes, loss.variance_eps)
        terms = combined_loss(a, model.W, loss, validate=False, responsibilities=False,
                              with_wr=with_wr, infomax=(lse, var, tc))  # fmt: skip
        terms.pop("total")
        terms["a"] = a
        return terms

    def terms_from_outputs(self, model, x, out, loss, dead=None, amp=False, with_wr=True,
                           bias=None):  # fmt: skip
        """bias: b (K,) when out's z is z0 = z - b (the bias fold, `bias_fold`)."""
        a, z = out  # (B, K) each
        # lambda_wr only decides whether wr carries gradient; weights are applied by the caller.
        probes = None
        if loss.tc_probes is not None:
            probes = correlation_probes(a.shape[1], loss.tc_probes, a)
        # a = relu(z): the fused kernels then write dL/dz themselves (no separate ReLU backward)
        preact = z if model.activation == "relu" and z.dtype == a.dtype else None
        terms = combined_loss(a, model.W, loss, validate=False, probes=probes,
                              responsibilities=False, preact=preact, with_wr=with_wr,
                              bias=bias if preact is not None else None)  # fmt: skip
        terms.pop("total")
        return terms, a

    def readout(self, model, x: Tensor, a: Tensor) -> dict[str, float]:
        r = torch.softmax(-a, dim=1)  # (N, K) responsibilities, paper Eq. 4
        return {
            "resp_entropy": metrics.responsibility_entropy(r),
            "recon_mse": metrics.reconstruction_mse(x, a, model.W),
            "recon_mse_normalized": metrics.reconstruction_mse(x, a, model.W, normalize=True),
            "lse_per_sample": float(-torch.logsumexp(-a, dim=1).mean()),
        }

    def stacked_fast_path(self, cfg) -> str | None:
        # bf16 autocast and the sketched correlation penalty keep the generic vmap path.
        if cfg.training.amp or cfg.loss.tc_probes is not None:
            return None
        return "_encoder_step"
