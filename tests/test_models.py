"""Models: parameter counts, shapes, activations, and the TopK SAE's decoder geometry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from implicit_em.models import Encoder, StandardSAE, TopKSAE, n_parameters


def test_parameter_counts():
    assert n_parameters(Encoder(784, 64)) == 784 * 64 + 64 == 50_240
    assert n_parameters(StandardSAE(784, 64)) == 2 * 784 * 64 + 64 + 784 == 101_200


@pytest.mark.parametrize(
    "activation, phi",
    [
        ("relu", F.relu),
        ("softplus", F.softplus),
        ("identity", lambda z: z),
        ("abs", torch.abs),
    ],
)
def test_encoder_forward(activation, phi):
    enc = Encoder(20, 7, activation=activation)
    x = torch.randn(5, 20)
    a, z = enc(x)
    assert a.shape == z.shape == (5, 7)
    assert enc.W.shape == (7, 20) and enc.b.shape == (7,)
    torch.testing.assert_close(z, x @ enc.W.T + enc.b)
    torch.testing.assert_close(a, phi(z))
    torch.testing.assert_close(enc.encode(x), a)


def test_encoder_activations_differ_on_negative_inputs():
    z = torch.tensor([[-2.0, 0.5]])
    enc = Encoder(2, 2, activation="abs")
    with torch.no_grad():
        enc.W.copy_(torch.eye(2))
        enc.b.zero_()
    assert enc.encode(z).tolist() == [[2.0, 0.5]]
    enc.activation = "relu"
    assert enc.encode(z).tolist() == [[0.0, 0.5]]


def test_get_weights_is_a_detached_copy():
    enc = Encoder(4, 3)
    w = enc.get_weights()
    assert not w.requires_grad
    w.zero_()
    assert enc.W.abs().sum() > 0


def test_unknown_activation():
    with pytest.raises(
        ValueError, match=r"unknown activation 'gelu'.*abs.*identity.*relu.*softplus"
    ):
        Encoder(4, 3, activation="gelu")


@pytest.mark.parametrize("cls", [Encoder, StandardSAE])
def test_non_positive_dims(cls):
    with pytest.raises(ValueError, match="must be positive"):
        cls(0, 3)


def test_standard_sae_forward():
    sae = StandardSAE(12, 5)
    x = torch.randn(4, 12)
    x_hat, a = sae(x)
    assert x_hat.shape == (4, 12) and a.shape == (4, 5)
    assert (a >= 0).all()
    torch.testing.assert_close(a, F.relu(x @ sae.W.T + sae.encoder.bias))
    torch.testing.assert_close(x_hat, a @ sae.decoder.weight.T + sae.decoder.bias)


def test_topk_exactly_k_nonzeros_per_row():
    # K=64, k=8: with random weights about half the pre-activations are positive, so the
    # top 8 of every row are strictly positive and exactly k units fire.
    sae = TopKSAE(30, 64, k=8)
    x = torch.randn(50, 30)
    x_hat, a = sae(x)
    assert x_hat.shape == (50, 30) and a.shape == (50, 64)
    assert ((a != 0).sum(dim=1) == 8).all()
    # The kept values are the k largest ReLU pre-activations.
    z = sae.pre_activations(x)
    torch.testing.assert_close(a.sort(dim=1).values[:, -8:], z.topk(8, dim=1).values.flip(1))
    torch.testing.assert_close(x_hat, a @ sae.W_dec.T + sae.b_dec)


def test_topk_k_out_of_range():
    with pytest.raises(ValueError, match=r"k must be in \[1, hidden_dim=4\]"):
        TopKSAE(6, 4, k=5)


def test_topk_decoder_unit_norm_after_normalize():
    sae = TopKSAE(10, 16, k=4)
    torch.testing.assert_close(sae.W_dec.norm(dim=0), torch.ones(16))
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.1, 5.0, 16))
    assert not torch.allclose(sae.W_dec.norm(dim=0), torch.ones(16))
    direction = sae.W_dec / sae.W_dec.norm(dim=0)
    sae.normalize_decoder_()
    torch.testing.assert_close(sae.W_dec.norm(dim=0), torch.ones(16))
    torch.testing.assert_close(sae.W_dec.detach(), direction.detach())


def test_remove_parallel_grads_keeps_updates_tangent():
    sae = TopKSAE(10, 16, k=4)
    x = torch.randn(32, 10)
    x_hat, _ = sae(x)
    (x - x_hat).square().mean().backward()
    g_before = sae.W_dec.grad.clone()
    assert (g_before * sae.W_dec).sum(dim=0).abs().max() > 1e-4  # there is something to remove
    sae.remove_parallel_grads_()
    g = sae.W_dec.grad
    torch.testing.assert_close((g * sae.W_dec).sum(dim=0), torch.zeros(16), atol=1e-7, rtol=0)
    # Only the radial part was removed: g_before - g is parallel to each column.
    radial = g_before - g
    cos = (radial * sae.W_dec).sum(0) / (radial.norm(dim=0) * sae.W_dec.norm(dim=0) + 1e-30)
    assert (cos.abs()[radial.norm(dim=0) > 1e-8] > 1 - 1e-5).all()
    # A small SGD step along the tangent gradient leaves the norms at 1 to second order.
    with torch.no_grad():
        sae.W_dec.sub_(1e-3 * g / g.norm(dim=0).clamp_min(1e-12))
    assert (sae.W_dec.norm(dim=0) - 1).abs().max() < 1e-5


def test_remove_parallel_grads_without_grad_is_a_no_op():
    sae = TopKSAE(10, 16, k=4)
    sae.remove_parallel_grads_()
    assert sae.W_dec.grad is None


def test_aux_reconstruction_uses_only_dead_latents():
    sae = TopKSAE(10, 16, k=4)
    x = torch.randn(8, 10)
    dead = torch.zeros(16, dtype=torch.bool)
    dead[[1, 5, 9]] = True
    aux = sae.aux_reconstruction(x, dead, k_aux=2)
    assert aux.shape == (8, 10)

    z = sae.pre_activations(x).detach()
    expected = torch.zeros(8, 10)
    for i in range(8):
        top = sorted(dead.nonzero().flatten().tolist(), key=lambda j: -z[i, j])[:2]
        expected[i] = sum(z[i, j] * sae.W_dec[:, j] for j in top)
    torch.testing.assert_close(aux, expected)

    # Live decoder columns receive no gradient; scrambling them does not change the output.
    aux.square().sum().backward()
    assert sae.W_dec.grad[:, ~dead].abs().max() == 0
    assert sae.W_dec.grad[:, dead].abs().max() > 0
    with torch.no_grad():
        sae.W_dec[:, ~dead] = torch.randn(10, 13)
    torch.testing.assert_close(sae.aux_reconstruction(x, dead, k_aux=2), aux)


def test_aux_reconstruction_without_dead_latents_is_empty():
    sae = TopKSAE(10, 16, k=4)
    out = sae.aux_reconstruction(torch.randn(3, 10), torch.zeros(16, dtype=torch.bool), 4)
    assert out is None or (out.shape == (3, 10) and out.abs().max() == 0)


def test_aux_reconstruction_with_fewer_dead_than_k_aux():
    sae = TopKSAE(10, 16, k=4)
    x, dead = torch.randn(5, 10), torch.zeros(16, dtype=torch.bool)
    dead[3] = True
    z = sae.pre_activations(x).detach()
    expected = z[:, 3:4] * sae.W_dec[:, 3]  # (B, 1) * (D,) -> (B, D)
    torch.testing.assert_close(sae.aux_reconstruction(x, dead, k_aux=8), expected)


def test_topk_readout_keeps_the_k_largest_codes_of_the_model():
    """models.TopKReadout: the model's codes with all but the k largest per row zeroed (the
    plain formula: a sort), W the model's, the model unchanged; rows with fewer than k
    positive codes keep exactly their positive ones; k out of range or not an integer is
    refused."""
    import numpy as np

    from implicit_em.models import TopKReadout

    torch.manual_seed(0)
    enc = Encoder(6, 20)
    x = torch.randn(64, 6)
    a = enc.encode(x).detach()
    ro = TopKReadout(enc, 5)
    z = ro.encode(x).detach()
    kth = a.sort(dim=1, descending=True).values[:, 4:5]  # (64, 1) the 5th largest code
    assert torch.equal(z, torch.where(a >= kth, a, torch.zeros_like(a)))
    assert ((z > 0).sum(1) <= 5).all() and (
        (z > 0).sum(1) == torch.clamp((a > 0).sum(1), max=5)
    ).all()
    assert ro.W is enc.W and torch.equal(enc.encode(x), a)  # the model is not changed
    sparse = TopKReadout(enc, 20).encode(x).detach()  # k = K: the codes as they are
    assert torch.equal(sparse, a)
    for bad in (0, 21):
        with pytest.raises(ValueError, match="k must be in"):
            TopKReadout(enc, bad)
    for bad in (2.5, 3.0, True, "5", torch.tensor(2.5)):  # refused, never truncated to 2
        with pytest.raises(ValueError, match="k must be an integer number of latents"):
            TopKReadout(enc, bad)
    assert TopKReadout(enc, np.int64(5)).k == 5 and TopKReadout(enc, torch.tensor(5)).k == 5


def test_topk_readout_is_called_like_the_encoder_and_keeps_negative_codes_by_rank():
    """TopKReadout(x) works like Encoder(x): (read-out codes, the model's codes before the
    read-out); encode(x) is its first part. On codes that can be negative (activation
    "identity") the k largest are kept whatever their sign, as the docstring says: a row with
    fewer than k positive codes keeps negative ones too, and L0 (codes > 0) stays <= k."""
    from implicit_em.models import TopKReadout

    torch.manual_seed(1)
    enc = Encoder(6, 20)
    x = torch.randn(32, 6)
    ro = TopKReadout(enc, 4)
    z, a = ro(x)
    assert torch.equal(a, enc.encode(x)) and torch.equal(z, ro.encode(x))
    assert torch.equal(z, ro.forward(x)[0]) and z.shape == a.shape == (32, 20)
    lin = Encoder(6, 20, activation="identity")
    with torch.no_grad():
        lin.linear.bias.fill_(-10.0)  # every code negative
    ident = TopKReadout(lin, 4)
    z, a = ident(x)
    kth = a.sort(dim=1, descending=True).values[:, 3:4]  # (32, 1) the 4th largest code
    assert (a < 0).all() and torch.equal(z, torch.where(a >= kth, a, torch.zeros_like(a)))
    assert ((z != 0).sum(1) == 4).all() and ((z < 0).sum(1) == 4).all()  # negatives kept
    assert ((z > 0).sum(1) == 0).all()  # L0 (codes > 0) still <= k


def test_the_probing_study_reads_out_in_eval_mode():
    """run.readout_at_k: the trained model and its untrained twin are read out the same way,
    both in eval mode (wrapper and wrapped model), whatever mode the model was in."""
    from implicit_em.eval.probing_study.run import readout_at_k

    enc = Encoder(6, 20).train()
    ro = readout_at_k(enc, 3)
    assert not ro.training and not ro.inner.training and ro.k == 3
