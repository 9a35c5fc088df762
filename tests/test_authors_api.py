"""The paper authors' API as a drop-in (issue 13, case 7): each name delegates to the
library's own function, and returns what the authors' code expects."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import implicit_em
from implicit_em import (
    Encoder,
    LossConfig,
    StandardSAE,
    TopKSAE,
    activation_correlation_matrix,
    combined_loss,
    compute_all_metrics,
    feature_similarity_matrix,
    normalized_reconstruction_mse,
)
from implicit_em.metrics import reconstruction_mse, redundancy_score


def test_names_are_exported():
    for name in ("activation_correlation_matrix", "compute_all_metrics",
                 "feature_similarity_matrix", "normalized_reconstruction_mse"):  # fmt: skip
        assert name in implicit_em.__all__


def test_combined_loss_takes_a_plain_mapping():
    a, W = torch.rand(16, 6), torch.randn(6, 10)
    cfg = {"lambda_lse": 0.5, "lambda_var": 2.0, "lambda_tc": 3.0, "lambda_wr": 0.1,
           "variance_eps": 1e-5}  # fmt: skip
    out = combined_loss(a, W, cfg)
    ref = combined_loss(a, W, LossConfig(**cfg))
    for k in ("total", "lse", "var", "tc", "wr"):
        torch.testing.assert_close(out[k], ref[k])


def test_parameter_count_and_weights():
    enc, sae, topk = Encoder(784, 64), StandardSAE(784, 64), TopKSAE(784, 64, 8)
    assert enc.parameter_count() == 50_240
    assert sae.parameter_count() == 101_200
    assert topk.parameter_count() == 784 * 64 * 2 + 64 + 784
    assert enc.activation_name == "relu"
    assert Encoder(5, 3, "softplus").activation_name == "softplus"
    for m in (sae, topk):
        enc_w, dec_w = m.get_encoder_weights(), m.get_decoder_weights()
        assert enc_w.shape == dec_w.shape == (64, 784)
        torch.testing.assert_close(enc_w, m.W.detach())
        assert not dec_w.requires_grad
    torch.testing.assert_close(sae.get_decoder_weights(), sae.decoder.weight.detach().t())
    torch.testing.assert_close(topk.get_decoder_weights(), topk.W_dec.detach().t())


def test_similarity_and_correlation_matrices_match_numpy():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(5, 7, generator=g)
    wn = W.double().numpy() / np.linalg.norm(W.double().numpy(), axis=1, keepdims=True)
    np.testing.assert_allclose(feature_similarity_matrix(W), wn @ wn.T, atol=1e-12)
    a = torch.rand(50, 4, generator=g)
    c = activation_correlation_matrix(a)
    assert c.shape == (4, 4) and isinstance(c, np.ndarray)
    np.testing.assert_allclose(c, np.corrcoef(a.double().numpy().T), atol=1e-12)
    off = c - np.diag(np.diag(c))
    assert redundancy_score(a) == pytest.approx((off**2).sum(), rel=1e-10)


def test_compute_all_metrics_and_normalized_mse():
    g = torch.Generator().manual_seed(0)
    x, W = torch.rand(40, 6, generator=g), torch.randn(4, 6, generator=g)
    a = torch.relu(x @ W.t())
    out = compute_all_metrics(a, W, x, torch.softmax(-a, dim=1))
    assert set(out) >= {
        "dead_units",
        "redundancy",
        "weight_redundancy",
        "effective_rank",
        "l0",
        "density",
        "resp_entropy",
        "recon_mse",
        "recon_mse_normalized",
    }
    assert all(isinstance(v, (int, float)) and np.isfinite(v) for v in out.values())
    assert normalized_reconstruction_mse(x, a, W) == reconstruction_mse(x, a, W, normalize=True)
    assert out["recon_mse_normalized"] == normalized_reconstruction_mse(x, a, W)
