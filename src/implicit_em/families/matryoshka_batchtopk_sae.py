"""The Matryoshka BatchTopK SAE baseline (Bussmann, Nabeshima, Karvonen and Nanda 2025,
"Learning Multi-Level Features with Matryoshka Sparse Autoencoders", arXiv 2503.17547).

Legend: B batch, D input dim, K latents. x (B, D), a (B, K), W_dec (D, K).

A BatchTopK SAE (`families.batchtopk_sae`: codes, threshold, AuxK, unit-norm decoder) whose
latents are nested prefixes of widths m_1 < m_2 < ... < m_L = K, here m_i = K / 2^(L - i)
(model.matryoshka_levels = L). Each inner prefix must reconstruct x on its own from the same
codes: x_hat_i = W_dec[:, :m_i] a[:, :m_i] + b_dec. Terms: mse (the full reconstruction, as
the other SAEs: a mean over B and D), inner (the sum over the L - 1 inner prefixes of their
mean squared errors, weight 1, as sae-lens's matryoshka_batchtopk sums them into the loss),
aux (AuxK). Exports to SAELens as `jumprelu`, as sae-lens saves these SAEs.
"""

from __future__ import annotations

from torch import Tensor

from implicit_em.families.batchtopk_sae import BatchTopKSAE, BatchTopKSAEFamily


def matryoshka_widths(hidden_dim: int, levels: int) -> list[int]:
    """Prefix widths K / 2^(L-1), ..., K / 2, K (integer division); levels that would hold
    fewer than one latent, or repeat a width, merge (K = 6, L = 4: [1, 3, 6])."""
    if levels < 1:
        raise ValueError(f"matryoshka levels must be >= 1, got {levels}")
    return sorted({max(1, hidden_dim >> (levels - 1 - i)) for i in range(levels)})


class MatryoshkaBatchTopKSAE(BatchTopKSAE):
    """BatchTopK SAE with nested prefixes (module docstring). levels: L >= 1 (1: plain
    BatchTopK)."""

    def __init__(self, input_dim: int, hidden_dim: int, k: int, levels: int = 4,
                 centre: bool = False) -> None:  # fmt: skip
        widths = matryoshka_widths(hidden_dim, levels)
        super().__init__(input_dim, hidden_dim, k, centre)
        self.widths = widths

    def inner_reconstructions(self, a: Tensor) -> list[Tensor]:
        """x_hat of each inner prefix m_1 .. m_{L-1}, each (B, D), from codes a (B, K)."""
        out, x_hat, lo = [], self.uncentred(self.b_dec.expand(a.shape[0], -1)), 0
        cols = self.decoder_columns()  # (D, K): W_dec, unit columns under sae-lens's rescale
        for w in self.widths[:-1]:
            x_hat = x_hat + a[:, lo:w] @ cols[:, lo:w].t()  # (B, w - lo) @ (w - lo, D)
            out.append(x_hat)
            lo = w
        return out


class MatryoshkaBatchTopKSAEFamily(BatchTopKSAEFamily):
    name = "matryoshka_batchtopk_sae"
    model_class = MatryoshkaBatchTopKSAE
    term_names = ("mse", "inner", "aux")
    cost = 3.5

    def build(self, m) -> MatryoshkaBatchTopKSAE:
        return MatryoshkaBatchTopKSAE(m.input_dim, m.hidden_dim, m.k, m.matryoshka_levels,
                                      m.centre)  # fmt: skip

    def weights(self, loss, k: int) -> dict[str, float]:
        return {"mse": 1.0, "inner": 1.0, "aux": loss.aux_coef}

    def terms_from_outputs(self, model, x, out, loss, dead=None, amp=False):
        terms, a = super().terms_from_outputs(model, x, out, loss, dead, amp)
        inner = [(x - x_hat).square().mean() for x_hat in model.inner_reconstructions(a)]
        terms["inner"] = sum(inner) if inner else terms["mse"] * 0
        return {t: terms[t] for t in self.term_names}, a
