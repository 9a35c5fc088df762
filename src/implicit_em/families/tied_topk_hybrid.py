"""The hybrid: the tied TopK autoencoder whose ReLU codes also carry the LSE + InfoMax terms.

Legend: B batch, D input dim, K latents. x (B, D), z (B, K) = ReLU(W x + b), a (B, K) =
TopK_k(z), W (K, D).

    loss = mse(x, a W + b_dec) + w_lse L_LSE(z) + w_var L_var(z) + w_tc L_tc(z) (+ w_wr L_wr(W))

mse as in `families.tied_topk_sae` (summed over D, averaged over B); the other terms are the
decoder-free encoder's objective (paper Eqs. 3, 7, 8; `losses.combined_loss`) on the full
ReLU codes z, before TopK, with the encoder's weights (`losses.loss_weights`: the lambdas,
var and tc rescaled from loss.reference_k to K; the LSE summed over the batch). The issue's
"hybrid SAE whose codes also carry the LSE + InfoMax terms": reconstruction plus volume
control, no decoder parameters. With loss.tc_probes the decorrelation term is the sketched
estimate, probes drawn fresh each step from the global generator.

The synthetic harness's `tied-topk-im-W` (docs/eval/synthetic/variants.md) minimises
W * mse + (encoder terms at lambdas 1); that is W times this family's loss at lambdas 1 / W
(lambda_lse = lambda_var = lambda_tc = 1 / W), the same Adam trajectory up to Adam's eps
(Adam divides out a constant gradient scale). `tests/families/test_tied_topk.py` checks the
gradients against the harness's formula.

Data parallelism: var and tc need column statistics of the whole batch, but this family's
terms are computed on each rank's shard (`batch_statistics` is False), so the trainers are
exact on one rank only.
"""

from __future__ import annotations

from torch import Tensor

from implicit_em.families.tied_topk_sae import TiedTopKSAE, TiedTopKSAEFamily
from implicit_em.losses import combined_loss, correlation_probes, loss_weights, summed_squared_error


class TiedTopKHybrid(TiedTopKSAE):
    """A `TiedTopKSAE` trained with the encoder's terms on its ReLU codes as well (its own
    class so that `families.family_of` tells the two objectives apart)."""


class TiedTopKHybridFamily(TiedTopKSAEFamily):
    name = "tied_topk_hybrid"
    model_class = TiedTopKHybrid
    term_names = ("mse", "lse", "var", "tc", "wr")
    cost = 3.0

    def weights(self, loss, k: int) -> dict[str, float]:
        return {"mse": 1.0, **loss_weights(loss, k)}

    def terms_from_outputs(self, model, x, out, loss, dead=None, amp=False):
        x_hat, a, z = out  # (B, D), (B, K), (B, K)
        probes = correlation_probes(z.shape[1], loss.tc_probes, z) if loss.tc_probes else None
        terms = combined_loss(z, model.W, loss, validate=False, probes=probes,
                              responsibilities=False)  # fmt: skip
        terms.pop("total")
        return {"mse": summed_squared_error(x, x_hat), **terms}, a

    def readout(self, model, x: Tensor, a: Tensor) -> dict[str, float]:
        out = super().readout(model, x, a)
        z = model.pre_activations(x)  # (N, K)
        out["lse_per_sample"] = float(-z.neg().logsumexp(dim=1).mean())
        return out
