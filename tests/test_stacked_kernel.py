"""The fused kernel of a stacked encoder block (`kernels.triton_stacked_v2`, one program per
model and column strip; the only block kernel since v1 was removed) against the reference
closed form (`train.stacked.encoder_terms_grad`, itself tested against autograd in float64 in
tests/test_stacked.py): terms and dL/dz to 1e-5 relative in float32, degenerate columns too.

On a CPU machine the kernel runs in Triton's interpreter (conftest sets TRITON_INTERPRET=1
before anything imports Triton); on a GPU machine it runs compiled.
"""

from __future__ import annotations

import pytest
import torch

from implicit_em import kernels
from implicit_em.train.stacked import encoder_terms_grad

pytestmark = pytest.mark.skipif(not kernels.triton_available(), reason="Triton is not installed")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TERMS = ("lse", "var", "tc")
KERNELS = ("v2", "v2-p32")
"""v2 with its default strip of 16 columns; v2 with strips of 32."""


def kernel(name: str):
    """The block kernel `name` of KERNELS, as a function of block_terms_grad_v2's arguments."""
    from implicit_em.kernels.triton_stacked_v2 import block_terms_grad_v2

    strip = 32 if name == "v2-p32" else 16
    return lambda *args, **kw: block_terms_grad_v2(*args, **kw, strip=strip)


def block(s: int, b: int, g: int, k: int, seed: int = 0) -> torch.Tensor:
    """Pre-activations z (S, B, G K) with some correlated columns."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(s, b, g, k, generator=gen) + 0.2
    z[..., 0] += 0.7 * z[..., 1]
    return z.reshape(s, b, g * k)


def weights(s: int, g: int, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {t: 0.5 + torch.rand(s, g, generator=gen) for t in TERMS}  # distinct per model


def compare(z: torch.Tensor, g: int, k: int, name: str, rtol: float = 1e-5) -> None:
    block_terms_grad = kernel(name)
    s, b = z.shape[:2]
    w = weights(s, g)
    ref_terms, da = encoder_terms_grad(z.relu().view(s, b, g, k), 1e-6, w)
    ref_dz = da.view_as(z) * (z > 0)
    z_dev = z.to(DEVICE)
    w_dev = torch.stack([w[t].reshape(-1) for t in TERMS]).to(DEVICE)
    terms, dz = block_terms_grad(z_dev, g, k, 1e-6, w_dev)
    for t in TERMS:
        torch.testing.assert_close(terms[t].cpu(), ref_terms[t], rtol=rtol, atol=0.0, msg=t)
    err = (dz.cpu() - ref_dz).abs().max() / ref_dz.abs().max()
    assert err < rtol, f"dL/dz off by {err:.2e} relative to its largest entry"
    assert (dz.cpu()[z <= 0] == 0).all()  # ReLU's backward


# (S, B, G, K): the reproduction's block (B = 128, K = 64), B and K not powers of two, B = K,
# a K below tl.dot's 16 (padded); K = 20, 24, 9, 40 are not multiples of the strip (16 or 32)
# and B = 70, 24, 40, 50 not powers of two.
@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize(
    "s,b,g,k", [(1, 128, 2, 64), (2, 70, 3, 20), (3, 24, 1, 24), (2, 40, 2, 9), (1, 50, 2, 40)]
)
def test_kernel_matches_the_closed_form(s, b, g, k, name):
    compare(block(s, b, g, k), g, k, name)


@pytest.mark.parametrize("name", KERNELS)
def test_kernel_degenerate_columns(name):
    """A dead unit (z < 0 on every row: a = 0), a constant column (a = 1.81 on every row), a
    model whose units are all dead but one: terms equal, no gradient into constant columns."""
    s, b, g, k = 2, 48, 2, 16
    z = block(s, b, g, k).view(s, b, g, k)
    z[0, :, 0, 3] = -1.0  # dead unit
    z[0, :, 1, 5] = 1.81  # constant column
    z[1, :, 1, 1:] = -0.5  # one live unit left
    z = z.reshape(s, b, g * k)
    compare(z, g, k, name)
    block_terms_grad = kernel(name)
    w = torch.ones(3, s * g).to(DEVICE)
    _, dz = block_terms_grad(z.to(DEVICE), g, k, 1e-6, w)
    dz = dz.cpu().view(s, b, g, k)
    assert (dz[0, :, 0, 3] == 0).all() and (dz[1, :, 1, 1:] == 0).all()


def test_blocks_that_do_not_fit_are_refused():
    from implicit_em.kernels.triton_stacked_v2 import block_terms_grad_v2, fits

    assert fits(128, 64, torch.float32) and fits(1024, 64, torch.float32)
    assert not fits(1024, 64, torch.float32, strip=32) and not fits(128, 64, torch.float64)
    with pytest.raises(ValueError, match="encoder_terms_grad"):
        block_terms_grad_v2(torch.zeros(1, 2048, 64), 1, 64, 1e-6, torch.ones(3, 1))
    with pytest.raises(ValueError, match="use one of"):
        block_terms_grad_v2(torch.zeros(1, 16, 64), 1, 64, 1e-6, torch.ones(3, 1), strip=24)


def test_strip_width_and_warps_change_nothing_but_speed():
    """The strip width and warp count (timed by benchmarks/bench_stacked_kernel.py) give the
    same terms and dL/dz to float32 rounding (the strips sum the K x K product in a different
    order); a strip as wide as the padded K is one program per model. Warps alone change
    nothing but speed: 4 and 8 at one strip width agree to 1e-6."""
    from implicit_em.kernels.triton_stacked_v2 import STRIPS, block_terms_grad_v2

    z = block(2, 40, 2, 33).to(DEVICE)
    w = torch.stack([weights(2, 2)[t].reshape(-1) for t in TERMS]).to(DEVICE)
    t16, dz16 = block_terms_grad_v2(z, 2, 33, 1e-6, w)
    for strip, nw in [(p, 4) for p in STRIPS[1:]] + [(16, 8), (16, 4)]:
        t, dz = block_terms_grad_v2(z, 2, 33, 1e-6, w, num_warps=nw, strip=strip)
        assert (dz - dz16).abs().max() < 1e-6 * dz16.abs().max(), (strip, nw)
        for name in TERMS:
            torch.testing.assert_close(t[name], t16[name], rtol=1e-6, atol=0.0)
