"""Evaluation of SAEs and decoder-free encoders on language-model activations.

Legend: N tokens, B contexts, T positions, D hidden size, K latents. x (N, D) activations,
x_hat (N, D) reconstructions, a (N, K) codes, r (N, K) responsibilities, W (K, D).

Three families of numbers, the ones SAE users expect:

1. Reconstruction: fraction of variance unexplained, FVU = sum ||x - x_hat||^2 /
   sum ||x - mean(x)||^2 (the conventional formula; explained variance = 1 - FVU), for
   - an SAE's own decoder;
   - the decoder-free encoder through W^T with the best scalar scale (paper Sec. 4:
     W^T as a pseudo-decoder, nothing trained), with and without a constant offset;
   - any model's codes through a linear decoder fitted *post hoc* by least squares on frozen
     train codes: a measure of the information the codes keep, not of a trained decoder.
2. Codes: L0, dead-latent fraction over a fixed token budget, feature density histogram,
   responsibility entropy and usage (r = softmax(-a), paper Eq. 4).
3. Downstream: splice the reconstruction into the model's forward pass at the harvested
   layer and report next-token CE and KL(p_orig || p_spliced), and CE loss recovered
   against zero ablation: (CE_zero - CE_sae) / (CE_zero - CE_orig).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from implicit_em.data.lm import hook_residual
from implicit_em.losses import constant_columns, lse_loss
from implicit_em.metrics import responsibility_entropy, sparsity_l0, usage_distribution

Recon = Callable[[Tensor], Tensor]

# ---------------------------------------------------------------- reconstruction


def fvu(x: Tensor, x_hat: Tensor, per_dim: bool = False) -> float:
    """Fraction of variance unexplained, float64. x, x_hat: (N, D), N >= 1.

    Default: the SAE literature's total FVU, sum_{n,d} (x - x_hat)^2 / sum_{n,d} (x - mean_n x)^2
    (SAELens, sparsify). It equals 1 - sklearn's r2_score(x, x_hat,
    multioutput="variance_weighted") only when no dimension is constant: sklearn drops the
    constant dimensions' errors, this total counts them.
    per_dim=True: the mean over dimensions of err_d / tot_d, which is exactly
    1 - r2_score(x, x_hat, multioutput="uniform_average"), including sklearn's convention for
    a constant target dimension d (tot_d = 0): its ratio is 0 if x_hat reproduces it (err_d = 0)
    and 1 otherwise. Here "constant" and "reproduces" are judged at the round-off of the
    dimension's mean (`losses.constant_columns`), not by an exact zero.
    The total follows the same convention when every dimension is constant (0 or 1).
    """
    if x.shape != x_hat.shape or x.ndim != 2 or len(x) < 1:
        raise ValueError(f"x {tuple(x.shape)} and x_hat {tuple(x_hat.shape)}: need equal (N, D)")
    x, x_hat = x.double(), x_hat.double()
    n = len(x)
    mean = x.mean(0)  # (D,)
    err = (x - x_hat).square().sum(0)  # (D,)
    tot = (x - mean).square().sum(0)  # (D,)
    constant = constant_columns(mean, tot, n)  # (D,)
    if per_dim:
        perfect = constant_columns(mean, err, n)  # error at the target's round-off
        return float(unexplained_ratio(err, tot, constant, perfect).mean())
    perfect = constant_columns(mean, err, n).all()
    return float(unexplained_ratio(err.sum(), tot.sum(), constant.all(), perfect))


def unexplained_ratio(num: Tensor, den: Tensor, den_zero: Tensor, num_zero: Tensor) -> Tensor:
    """num / den, with scikit-learn's r2 convention where the denominator vanishes.

    Elementwise over tensors of one shape (or scalars). den_zero, num_zero: bool masks of
    where den and num are zero up to round-off (decided by the caller, on its own scale).
    Where den_zero: 0 if num_zero (nothing to explain, nothing missed) else 1 (nothing to
    explain, something missed), the convention of r2_score's force_finite (r2 = 1 or 0).
    Every ratio of unexplained to total in this module goes through here.
    """
    safe = torch.where(den_zero, torch.ones_like(den), den)
    return torch.where(den_zero, (~num_zero).to(den.dtype), num / safe)


def explained_variance(x: Tensor, x_hat: Tensor, per_dim: bool = False) -> float:
    """1 - FVU."""
    return 1.0 - fvu(x, x_hat, per_dim)


@torch.no_grad()
def fit_scalar_decoder(
    a: Tensor, W: Tensor, x: Tensor, offset: bool = True
) -> tuple[float, Tensor]:
    """Least-squares (c, m) for x ~ c * (a W) + m, W^T as pseudo-decoder.

    a: (N, K), W: (K, D), x: (N, D). m (D,) is zero when offset=False; with offset=True,
    c = <x - x_bar, y - y_bar> / ||y - y_bar||^2 and m = x_bar - c y_bar, with y = a W.
    When the denominator vanishes (offset: y constant over rows, judged at the round-off of
    its mean, `losses.constant_columns`; no offset: y = 0, e.g. every latent dead), c = 0:
    x_hat is then m, the best constant.
    """
    y = a.double() @ W.double()  # (N, K) @ (K, D) -> (N, D)
    xd = x.double()
    if offset:
        yc, xc = y - y.mean(0), xd - xd.mean(0)
        flat = bool(constant_columns(y.mean(0), yc.square().sum(0), len(y)).all())
        c = 0.0 if flat else float((xc * yc).sum() / yc.square().sum())
        m = xd.mean(0) - c * y.mean(0)  # (D,)
    else:
        ss = y.square().sum()
        c = float((xd * y).sum() / ss) if ss > 0 else 0.0
        m = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    return c, m.float()


@torch.no_grad()
def fit_linear_decoder(
    a: Tensor, x: Tensor, ridge: float = 1e-6, chunk: int = 8192
) -> tuple[Tensor, Tensor]:
    """Post-hoc linear decoder: argmin ||x - (a V + v)||^2 + ridge' ||V||^2, on frozen codes.

    a: (N, K), x: (N, D). ridge is relative to the mean diagonal of the centred Gram matrix
    (keeps dead latents solvable). Returns V (K, D) and v (D,), float32. float64 solve; the
    Gram matrix is accumulated over row chunks, so no (N, K) float64 copy is made (at
    N = 100k, K = 32768 that copy alone would be 26 GB).
    """
    rows = range(0, a.shape[0], chunk)
    a_mean = sum(a[i : i + chunk].double().sum(0) for i in rows) / a.shape[0]  # (K,)
    x_mean = x.double().mean(0)  # (D,)
    gram = torch.zeros(a.shape[1], a.shape[1], dtype=torch.float64, device=a.device)
    cross = torch.zeros(a.shape[1], x.shape[1], dtype=torch.float64, device=a.device)
    for i in rows:  # centring absorbs the bias v
        ac = a[i : i + chunk].double() - a_mean  # (c, K)
        gram.addmm_(ac.t(), ac)
        cross.addmm_(ac.t(), x[i : i + chunk].double() - x_mean)
    lam = ridge * float(gram.diagonal().mean().clamp_min(1e-12))
    gram.diagonal().add_(lam)
    V = torch.linalg.solve(gram, cross)  # (K, K) \ (K, D) -> (K, D)
    v = x_mean - a_mean @ V  # (D,)
    return V.float(), v.float()


def reconstructions(model: nn.Module, x_fit: Tensor, batch: int = 8192) -> dict[str, Recon]:
    """Reconstruction functions x (N, D) -> x_hat (N, D), fitted on x_fit (train tokens).

    A model with `decode` gets `decoder`; a model without (the decoder-free Encoder) gets
    `wt_scalar` and `wt_scalar_offset`; every model gets `lstsq` (post-hoc linear decoder).
    """
    model.eval()
    a_fit = encode(model, x_fit, batch)
    out: dict[str, Recon] = {}
    if hasattr(model, "decode"):
        out["decoder"] = lambda x: model.decode(model.encode(x))
    else:
        W = model.W.detach()
        for name, off in (("wt_scalar", False), ("wt_scalar_offset", True)):
            c, m = fit_scalar_decoder(a_fit, W, x_fit, offset=off)
            out[name] = lambda x, c=c, m=m: c * (model.encode(x) @ W) + m  # (N, D)
    V, v = fit_linear_decoder(a_fit, x_fit)
    out["lstsq"] = lambda x: model.encode(x) @ V + v  # (N, K) @ (K, D) -> (N, D)
    return out


@torch.no_grad()
def encode(model: nn.Module, x: Tensor, batch: int = 8192) -> Tensor:
    """model.encode in batches: (N, D) -> (N, K)."""
    return torch.cat([model.encode(x[i : i + batch]) for i in range(0, len(x), batch)])


@torch.no_grad()
def apply_recon(fn: Recon, x: Tensor, batch: int = 8192) -> Tensor:
    return torch.cat([fn(x[i : i + batch]) for i in range(0, len(x), batch)])


# ---------------------------------------------------------------- codes


def density_histogram(density: Tensor, n_bins: int = 12, low: float = -6.0) -> dict:
    """Histogram of log10 feature density (fraction of tokens a latent fires on).

    density: (K,). Latents that never fire are counted apart under `n_dead`.
    """
    alive = density[density > 0].double().log10().clamp_min(low)
    counts, edges = np.histogram(alive.cpu().numpy(), bins=n_bins, range=(low, 0.0))
    return {
        "log10_bin_edges": [round(float(e), 3) for e in edges],
        "counts": counts.tolist(),
        "n_dead": int((density == 0).sum()),
    }


@torch.no_grad()
def code_stats(a: Tensor, threshold: float = 0.0) -> dict:
    """Sparsity and competition statistics of codes a (N, K) over a fixed token budget N.

    A latent fires on a token when a > threshold; dead = fires on none of the N tokens.
    Responsibilities r = softmax(-a) (energy convention, paper Eq. 4).
    """
    n, k = a.shape
    fires = a > threshold  # (N, K)
    density = fires.double().mean(0)  # (K,)
    l0, l0_frac = sparsity_l0(a, threshold)
    _, r = lse_loss(a.float(), reduction="mean")  # (N, K)
    usage = torch.from_numpy(usage_distribution(r))  # (K,)
    usage_h = float(-(torch.special.xlogy(usage, usage)).sum())
    return {
        "n_tokens": n,
        "l0": l0,
        "l0_fraction": l0_frac,
        "dead_fraction": float((density == 0).double().mean()),
        "density_histogram": density_histogram(density),
        "responsibility_entropy": responsibility_entropy(r),
        "max_entropy": math.log(k),
        "usage_perplexity": math.exp(usage_h),
        "usage_max": float(usage.max()),
        "usage_min": float(usage.min()),
    }


# ---------------------------------------------------------------- splicing


@torch.no_grad()
def spliced_ce(
    model: nn.Module,
    tokens: Tensor,
    layer: int,
    hook_point: str,
    replacements: dict[str, Recon | None],
    drop_bos: bool = True,
    batch_size: int = 8,
) -> dict[str, dict]:
    """Next-token CE with the residual at (layer, hook_point) replaced, and KL to the original.

    tokens: (C, T) contexts. replacements maps a name to fn(h (N, D)) -> (N, D) in model
    units, or None for the unmodified model; `zero` ablation and `orig` are always added.
    With drop_bos the BOS position is never replaced (it was not harvested) and the loss is
    taken over predictions made at positions 1..T-2; otherwise over all positions.
    Returns {name: {"ce", "kl"}} (nats per token, means over the same positions).
    """
    reps: dict[str, Recon | None] = {"orig": None, "zero": torch.zeros_like, **replacements}
    start = 1 if drop_bos else 0
    sums = {name: {"ce": 0.0, "kl": 0.0} for name in reps}
    n_pos = 0
    model.eval()
    for b0 in range(0, len(tokens), batch_size):
        ids = tokens[b0 : b0 + batch_size].long().to(model.device)  # (B, T)
        target = ids[:, start + 1 :]  # (B, T')
        ref = None
        for name, fn in reps.items():
            if fn is None:
                logits = model(input_ids=ids, use_cache=False).logits
            else:

                def swap(h: Tensor, fn=fn) -> Tensor:
                    tail = h[:, start:]  # (B, T - start, D)
                    new = fn(tail.reshape(-1, tail.shape[-1]).float())  # (N, D)
                    new = new.reshape(tail.shape).to(h.dtype)  # (B, T - start, D)
                    return torch.cat([h[:, :start], new], dim=1)  # (B, T, D)

                with hook_residual(model, layer, hook_point, swap):
                    logits = model(input_ids=ids, use_cache=False).logits
            logp = F.log_softmax(logits[:, start:-1].float(), dim=-1)  # (B, T', V)
            if ref is None:
                ref = logp
            ce = -logp.gather(-1, target.unsqueeze(-1)).sum()
            kl = (ref.exp() * (ref - logp)).sum()
            sums[name]["ce"] += float(ce)
            sums[name]["kl"] += float(kl)
        n_pos += target.numel()
    if n_pos == 0:
        raise ValueError(
            f"no predicted positions in tokens {tuple(tokens.shape)}: contexts need at least "
            f"{start + 2} tokens"
        )
    return {name: {k: v / n_pos for k, v in s.items()} for name, s in sums.items()}


# Relative size below which two CE values (nats per token, accumulated from float32 logits)
# are taken as equal by `ce_loss_recovered`.
_CE_RTOL = 1e-6


def ce_loss_recovered(ce_orig: float, ce_sae: float, ce_zero: float) -> float:
    """(CE_zero - CE_sae) / (CE_zero - CE_orig): 1 = as good as the model, 0 = as zero.

    Written as 1 - (CE_sae - CE_orig) / (CE_zero - CE_orig) through `unexplained_ratio`: when
    zero ablation does not change the CE (|CE_zero - CE_orig| <= 1e-6 max(1, |CE_orig|), the
    layer does not matter), the value is 1 if CE_sae equals CE_orig to the same tolerance and
    0 otherwise, r2_score's convention, instead of a division by (nearly) zero.
    """
    tiny = _CE_RTOL * max(1.0, abs(ce_orig))
    num = torch.tensor(ce_sae - ce_orig, dtype=torch.float64)
    den = torch.tensor(ce_zero - ce_orig, dtype=torch.float64)
    return 1.0 - float(unexplained_ratio(num, den, den.abs() <= tiny, num.abs() <= tiny))


# ---------------------------------------------------------------- everything at once


@torch.no_grad()
def evaluate_model(
    sae: nn.Module,
    x_train: Tensor,
    x_held: Tensor,
    invert: Callable[[Tensor], Tensor] | None = None,
    apply: Callable[[Tensor], Tensor] | None = None,
    lm: nn.Module | None = None,
    tokens: Tensor | None = None,
    layer: int = 0,
    hook_point: str = "resid_pre",
    drop_bos: bool = True,
    splice: tuple[str, ...] | None = None,
    batch_size: int = 8,
    typical: Tensor | None = None,
) -> dict:
    """All metrics for one model.

    x_train: (N, D) train activations in the model's input units (normalized if it was
    trained on normalized inputs), used only to fit the scalar / least-squares decoders;
    x_held: (M, D) held-out activations, same units. apply/invert map model units to input
    units and back (the harvest Normalization). With lm and tokens (C, T) held-out contexts,
    also splices each reconstruction named in `splice` (default all) into the LM.
    typical: optional (M,) bool mask of held-out rows without massive activations; adds
    `fvu_typical`, the FVU over those rows only.
    """
    recons = reconstructions(sae, x_train)
    out: dict = {"fvu": {}, "fvu_per_dim": {}, "explained_variance": {}}
    if typical is not None:
        out["fvu_typical"] = {}
        out["n_typical"] = int(typical.sum())
    for name, fn in recons.items():
        x_hat = apply_recon(fn, x_held)
        out["fvu"][name] = fvu(x_held, x_hat)
        out["fvu_per_dim"][name] = fvu(x_held, x_hat, per_dim=True)
        out["explained_variance"][name] = 1.0 - out["fvu"][name]
        if typical is not None:
            out["fvu_typical"][name] = fvu(x_held[typical], x_hat[typical])
    out["codes"] = code_stats(encode(sae, x_held))
    if lm is not None and tokens is not None:
        apply = apply or (lambda h: h)
        invert = invert or (lambda h: h)
        names = splice or tuple(recons)
        reps = {name: (lambda h, fn=recons[name]: invert(fn(apply(h)))) for name in names}
        ce = spliced_ce(lm, tokens, layer, hook_point, reps, drop_bos, batch_size)
        out["ce"] = ce
        out["ce_loss_recovered"] = {
            name: ce_loss_recovered(ce["orig"]["ce"], ce[name]["ce"], ce["zero"]["ce"])
            for name in names
        }
    return out
