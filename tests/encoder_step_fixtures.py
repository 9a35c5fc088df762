"""The encoder family's training step on the fused path against the reference step (fused
off), shared by the bias fold's test (test_kernels.py) and the matmul fold's
(test_matmul_stats.py)."""

from __future__ import annotations

import torch

from implicit_em.kernels import fused_mode

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def assert_step_matches_reference(x: torch.Tensor, cfg, centre: bool,
                                  names: tuple[str, ...]) -> None:  # fmt: skip
    """One `train.loop.loss_terms` step of a fresh Encoder(24, 300) on x (B, 24), fused on
    and then off (the same init and probes): the parameter gradients (W (300, 24), b (300,))
    to 1e-5 relative to their largest entry, the terms `names` to 1e-5 relative, the codes
    to 1e-5 relative (1e-6 absolute)."""
    from implicit_em.models import Encoder
    from implicit_em.train.loop import loss_terms, term_weights

    weights = term_weights("encoder", cfg, 300)
    results = []
    for mode in ("on", "off"):
        torch.manual_seed(0)
        model = Encoder(24, 300, centre=centre).to(DEVICE)
        torch.manual_seed(1)  # the same probes
        with fused_mode(mode):
            terms = loss_terms(model, x, cfg)
        sum(weights[k] * terms[k] for k in weights).backward()
        results.append(([p.grad.clone() for p in model.parameters()],
                        torch.stack([terms[k].detach() for k in names]),
                        terms["a"].detach()))  # fmt: skip
    (gf, vf, af), (gr, vr, ar) = results
    assert [g.shape for g in gf] == [(300, 24), (300,)]
    for a, b in zip(gf, gr, strict=True):
        assert (a - b).abs().max() / b.abs().max() < 1e-5
    torch.testing.assert_close(vf, vr, rtol=1e-5, atol=0.0)
    torch.testing.assert_close(af, ar, rtol=1e-5, atol=1e-6)
