"""Our BatchTopK with sae-lens's protocol (`BatchTopKSAE.saelens_protocol_`, `Variant.saelens`)
against sae-lens's own BatchTopK training SAE and SAETrainer (docs/eval/synthetic/harness-gap.md)."""

from dataclasses import replace

import pytest
import torch

pytest.importorskip("sae_lens")

from implicit_em.eval.options import SAELENS_PROTOCOL, VARIANTS, SyntheticEvalOptions  # noqa: E402
from implicit_em.eval.synthetic import VariantTrainer, build_synthetic_model, make_model  # noqa: E402
from implicit_em.families import family  # noqa: E402
from implicit_em.families.batchtopk_sae import BatchTopKSAE  # noqa: E402

D, K, k, B = 12, 20, 3, 32


@pytest.fixture(scope="module")
def synth():
    torch.manual_seed(0)
    return build_synthetic_model("tiny", seed=42)


def _saelens_pair(dead_window: int, steps: int, seed: int = 0, widths: list | None = None):
    """sae-lens's BatchTopKTrainingSAE (or, with widths, its MatryoshkaBatchTopKTrainingSAE
    with those nested widths) + SAETrainer (as train_toy_sae configures it)."""
    from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, LoggingConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.matryoshka_batchtopk_sae import (
        MatryoshkaBatchTopKTrainingSAE,
        MatryoshkaBatchTopKTrainingSAEConfig,
    )
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(seed)
    if widths is None:
        sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=48, d_sae=K, k=k))
    else:
        sae = MatryoshkaBatchTopKTrainingSAE(
            MatryoshkaBatchTopKTrainingSAEConfig(d_in=48, d_sae=K, k=k, matryoshka_widths=widths)
        )
    cfg = SAETrainerConfig(
        n_checkpoints=0, checkpoint_path=None, save_final_checkpoint=False,
        total_training_samples=steps * B, device="cpu", autocast=False, lr=3e-3, lr_end=3e-3,
        lr_scheduler_name="constant", lr_warm_up_steps=0, adam_beta1=0.9, adam_beta2=0.999,
        lr_decay_steps=0, n_restart_cycles=1, train_batch_size_samples=B,
        dead_feature_window=dead_window, feature_sampling_window=2000,
        logger=LoggingConfig(log_to_wandb=False, eval_every_n_wandb_logs=2**31 - 1),
        n_batches_for_norm_estimate=1000,
    )  # fmt: skip
    return sae, SAETrainer(cfg=cfg, sae=sae, data_provider=iter(()))


def _ours_at_saelens_weights(synth, name: str, sae, steps: int, window: int) -> VariantTrainer:
    """Our trainer of variant `name` (the sae-lens test settings), started at sae's weights."""
    opts = SyntheticEvalOptions(recipe="tiny", latents=K, k=k, lr=3e-3, batch_size=B,
                                steps=steps, dead_steps=window + 1, gradient_shares=False)  # fmt: skip
    tr = VariantTrainer(VARIANTS[name], synth, opts, 0, None)
    with torch.no_grad():
        tr.model.encoder.weight.copy_(sae.W_enc.t())
        tr.model.encoder.bias.copy_(sae.b_enc)
        tr.model.W_dec.copy_(sae.W_dec.t())
        tr.model.b_dec.copy_(sae.b_dec)
    return tr


def test_all_parts_train_like_sae_lens_own_trainer(synth):
    """Ours with every sae-lens part, started at sae-lens's weights, ends at sae-lens's
    weights after 40 steps on the same batches, AuxK active (dead window 5 steps: sae-lens
    counts a latent dead after more than W steps without firing, ours after >= W + 1)."""
    steps, window = 40, 5
    sae, trainer = _saelens_pair(window, steps)
    tr = _ours_at_saelens_weights(synth, "batchtopk-sl-all", sae, steps, window)
    m = tr.model
    torch.manual_seed(5)
    xs = [synth.sample(B) for _ in range(steps)]
    aux_seen = 0.0
    for x in xs:
        out = trainer.step(x)
        trainer.n_training_steps += 1
        aux_seen = max(aux_seen, float(out.losses["auxiliary_reconstruction_loss"].detach()))
        tr.step(x)
    assert aux_seen > 0  # AuxK acted in sae-lens's run
    assert int(tr.since_fired.ge(window + 1).sum()) == int(trainer.dead_neurons.sum()) > 0
    for ours, theirs in ((m.encoder.weight, sae.W_enc.t()), (m.encoder.bias, sae.b_enc),
                         (m.W_dec, sae.W_dec.t()), (m.b_dec, sae.b_dec)):  # fmt: skip
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    moved = float((m.W_dec - make_model(VARIANTS["batchtopk"], 48, K, 3.0).W_dec).abs().max())
    assert moved > 1e-3


def test_matryoshka_with_all_parts_trains_like_sae_lens_own_trainer(synth):
    """The same for Matryoshka BatchTopK (`matryoshka-sl-all`): our nested widths (K/8, K/4,
    K/2, K) given to sae-lens's MatryoshkaBatchTopKTrainingSAE; the inner reconstruction
    losses and AuxK act, and the weights end equal after 40 steps."""
    from implicit_em.families.matryoshka_batchtopk_sae import matryoshka_widths

    steps, window = 40, 5
    widths = matryoshka_widths(K, 4)
    assert len(widths) == 4  # three inner levels
    sae, trainer = _saelens_pair(window, steps, widths=widths)
    tr = _ours_at_saelens_weights(synth, "matryoshka-sl-all", sae, steps, window)
    m = tr.model
    assert m.widths == widths
    torch.manual_seed(5)
    inner_seen = aux_seen = 0.0
    for _ in range(steps):
        x = synth.sample(B)
        out = trainer.step(x)
        trainer.n_training_steps += 1
        inner_seen = max(inner_seen, float(out.losses[f"inner_mse_loss_{widths[0]}"].detach()))
        aux_seen = max(aux_seen, float(out.losses["auxiliary_reconstruction_loss"].detach()))
        tr.step(x)
    assert inner_seen > 0 and aux_seen > 0
    for ours, theirs in ((m.encoder.weight, sae.W_enc.t()), (m.encoder.bias, sae.b_enc),
                         (m.W_dec, sae.W_dec.t()), (m.b_dec, sae.b_dec)):  # fmt: skip
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_our_protocol_does_not_match_sae_lens_trainer(synth):
    """Control for the test above: the plain `batchtopk` from the same weights ends
    elsewhere (so that test measures the protocol, not a no-op)."""
    steps = 40
    sae, trainer = _saelens_pair(5, steps)
    opts = SyntheticEvalOptions(recipe="tiny", latents=K, k=k, lr=3e-3, batch_size=B,
                                steps=steps, dead_steps=6, gradient_shares=False)  # fmt: skip
    tr = VariantTrainer(VARIANTS["batchtopk"], synth, opts, 0, None)
    with torch.no_grad():
        tr.model.encoder.weight.copy_(sae.W_enc.t())
        tr.model.encoder.bias.copy_(sae.b_enc)
        tr.model.W_dec.copy_(sae.W_dec.t() / sae.W_dec.t().norm(dim=0))
        tr.model.b_dec.copy_(sae.b_dec)
    torch.manual_seed(5)
    for _ in range(steps):
        x = synth.sample(B)
        trainer.step(x)
        trainer.n_training_steps += 1
        tr.step(x)
    dirs = tr.model.W_dec / tr.model.W_dec.norm(dim=0)
    theirs = sae.W_dec.t() / sae.W_dec.t().norm(dim=0)
    assert float((dirs - theirs).abs().max()) > 1e-2


def test_init_part_is_sae_lens_heuristic_init():
    torch.manual_seed(0)
    m = BatchTopKSAE(D, K, k)
    m.saelens_protocol_(("init",))
    assert torch.allclose(m.W_dec.norm(dim=0), torch.full((K,), 0.1))
    assert torch.equal(m.encoder.weight, m.W_dec.t())
    assert torch.equal(m.encoder.bias, torch.zeros(K))
    with pytest.raises(ValueError, match="unknown sae-lens parts"):
        m.saelens_protocol_(("clip",))  # the trainer's part, not the model's


def test_rescale_codes_and_decode_match_sae_lens_formula():
    """rescale: codes = BatchTopK(ReLU(z) * ||d_j||), decode with unit columns; the decoder
    is left free (no projection, no renormalisation)."""
    torch.manual_seed(1)
    m = BatchTopKSAE(D, K, k)
    m.saelens_protocol_(("rescale",))
    with torch.no_grad():
        m.W_dec.mul_(torch.linspace(0.2, 3.0, K))  # columns of different norms
    x = torch.randn(B, D)
    z = m.encoder(x - m.b_dec) * m.W_dec.norm(dim=0)  # (B, K)
    keep = torch.relu(z).flatten().topk(k * B).indices
    a = torch.zeros(B * K).index_put_((keep,), torch.relu(z).flatten()[keep]).view(B, K)
    x_hat, codes = m(x)
    assert torch.allclose(codes, a, atol=1e-6)
    assert torch.allclose(x_hat, a @ (m.W_dec / m.W_dec.norm(dim=0)).t() + m.b_dec, atol=1e-5)
    before = m.W_dec.detach().clone()
    m.W_dec.grad = torch.ones_like(m.W_dec)
    fam = family("batchtopk_sae")
    fam.before_step(m)
    fam.after_step(m)
    assert torch.equal(m.W_dec.grad, torch.ones_like(m.W_dec))
    assert torch.equal(m.W_dec.detach(), before)


def test_default_auxk_gives_a_dead_latent_with_negative_preactivations_no_gradient():
    """The claim in gpu16k-converged.md: our AuxK (Gao et al.'s, on ReLU'd pre-activations)
    gives a dead latent whose pre-activations are all negative no gradient; sae-lens's AuxK
    (raw pre-activations) does."""
    from implicit_em.config import LossConfig

    grads = {}
    for parts in ((), ("auxk",)):
        torch.manual_seed(2)
        m = BatchTopKSAE(D, K, k)
        m.saelens_protocol_(parts)
        x = torch.randn(B, D)
        with torch.no_grad():
            m.encoder.bias[0] = -100.0  # latent 0: every pre-activation negative
        dead = torch.zeros(K, dtype=torch.bool)
        dead[0] = True
        loss = LossConfig(aux_coef=1.0)
        terms = family("batchtopk_sae").loss_terms(m, x, loss, dead)
        terms["aux"].backward()
        grads[parts] = float(m.encoder.weight.grad[0].abs().sum())
    assert grads[()] == 0.0
    assert grads[("auxk",)] > 0.0


def test_saelens_variants_exist_and_refuse_other_families():
    for base in ("matryoshka", "matryoshka-k25"):
        assert VARIANTS[f"{base}-sl-all"].saelens == SAELENS_PROTOCOL
        assert VARIANTS[f"{base}-sl-all"].family == "matryoshka_batchtopk_sae"
    for base in ("batchtopk", "batchtopk-k25"):
        assert VARIANTS[f"{base}-sl-all"].saelens == SAELENS_PROTOCOL
        for part in SAELENS_PROTOCOL:
            assert VARIANTS[f"{base}-sl-{part}"].saelens == (part,)
            rest = VARIANTS[f"{base}-sl-no-{part}"].saelens
            assert part not in rest and len(rest) == len(SAELENS_PROTOCOL) - 1
    with pytest.raises(ValueError, match="BatchTopK family"):
        make_model(replace(VARIANTS["topk"], saelens=("rescale",)), D, K, 3.0)
