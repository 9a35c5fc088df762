"""The stacked N-model trainer against the plain one-model loop (implicit_em.train.loop.train).

Each model of a stack has its own seed, learning rate and loss weights; each must end where
training it alone ends. Compared in float64: the encoder objective under SGD is chaotic in
float32 (rounding differences grow several-fold per step), float64 leaves room for a few epochs.
"""

from __future__ import annotations

import math

import pytest
import torch

from implicit_em import runs
from implicit_em.config import from_dict
from implicit_em.data import load_digits
from implicit_em.losses import correlation_loss, lse_loss, variance_loss, weight_redundancy_loss
from implicit_em.train.loop import train
from implicit_em.train.stacked import (
    StackedTrainer,
    encoder_terms,
    encoder_terms_grad,
    group_configs,
    seed_slots,
    stack_key,
    train_many,
)


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="module")
def x_digits() -> torch.Tensor:
    return load_digits()[0]  # (1797, 64)


# Per-model variations inside one stack: seeds, learning rates and loss weights all differ.
VARIANTS = {
    "encoder": [
        ({"lambda_var": 1.0, "lambda_tc": 1.0}, 1, 1.0),
        ({"lambda_var": 0.5, "lambda_tc": 2.0}, 2, 0.5),
        ({"lambda_lse": 0.0, "lambda_var": 1.0, "lambda_tc": 1.0, "reference_k": 32}, 3, 2.0),
    ],
    "standard_sae": [({"l1_weight": 0.01}, 1, 1.0), ({"l1_weight": 0.1}, 2, 3.0)],
    "topk_sae": [({"aux_coef": 1 / 32}, 1, 1.0), ({"aux_coef": 0.5}, 2, 0.3)],
}
BASE_LR = {"adam": 1e-3, "sgd": 1e-2}


def make_cfg(model_type, loss, seed, lr, optimizer, epochs):
    loss = {**loss, "dead_steps": 2} if model_type == "topk_sae" else loss
    if model_type == "encoder":  # at K = 16, reference_k = 16 leaves the lambdas as given
        loss = {"reference_k": 16, **loss}
    return from_dict({
        "model": {"type": model_type, "input_dim": 64, "hidden_dim": 16, "k": 4},
        "loss": loss,
        "data": {"dataset": "digits"},
        "training": {"optimizer": optimizer, "lr": lr, "seed": seed, "epochs": epochs,
                     "batch_size": 128},
    })  # fmt: skip


def strip(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "seconds"}


def assert_same_run(cfg, stacked_model, hist, solo, solo_hist):
    """Parameters and every history number equal to float64 tolerance.

    The encoder's wr (no gradient at lambda_wr = 0) is recorded by the stacked trainer at the
    end of each epoch rather than averaged over its steps: checked at the last epoch against
    the final weights.
    """
    assert len(hist) == len(solo_hist) == cfg.training.epochs
    for name, p in solo.named_parameters():
        q = dict(stacked_model.named_parameters())[name]
        assert p.dtype == q.dtype == torch.float64
        torch.testing.assert_close(q, p, rtol=1e-8, atol=1e-9, msg=name)
    wr_at_end = cfg.model.type == "encoder" and not cfg.loss.lambda_wr
    for rec, solo_rec in zip(hist, solo_hist, strict=True):
        a, b = strip(rec), strip(solo_rec)
        assert a.keys() == b.keys()
        for k in a:
            if k == "wr" and wr_at_end:
                continue
            assert math.isclose(a[k], b[k], rel_tol=1e-8, abs_tol=1e-9), (k, a[k], b[k])
    if wr_at_end:
        wr = float(weight_redundancy_loss(solo.W.detach()))
        assert math.isclose(hist[-1]["wr"], wr, rel_tol=1e-8), (hist[-1]["wr"], wr)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("model_type", ["encoder", "standard_sae", "topk_sae"])
def test_stacked_matches_solo_training(float64, x_digits, model_type, optimizer):
    # Encoder + SGD is chaotic at lr 1e-2 (float64 differences reach 1e-5 after 2 epochs):
    # lr 1e-3 and 2 epochs keep the comparison meaningful (measured difference ~1e-10).
    chaotic = (model_type, optimizer) == ("encoder", "sgd")
    epochs, base_lr = (2, 1e-3) if chaotic else (3, BASE_LR[optimizer])
    cfgs = [
        make_cfg(model_type, loss, seed, base_lr * mult, optimizer, epochs)
        for loss, seed, mult in VARIANTS[model_type]
    ]
    assert len(group_configs(cfgs)) == 1
    x = x_digits.double()
    trainer = StackedTrainer(cfgs)
    calls = []  # the SAEs' hand-written gradients ran (TopK: with and without AuxK)
    sae_step = trainer._sae_step
    trainer._sae_step = lambda xn, dead=None: calls.append(dead is not None) or sae_step(xn, dead)
    histories = trainer.fit(x, progress=False)
    assert (len(calls) > 0) == (model_type != "encoder")
    assert any(calls) == (model_type == "topk_sae")  # AuxK's gradients by hand too
    for cfg, stacked_model, hist in zip(cfgs, trainer.models, histories, strict=True):
        solo = runs.build_model(cfg)
        assert_same_run(cfg, stacked_model, hist, solo, train(solo, x, cfg, progress=False))
    # the models really differ from one another (different seeds and settings)
    w = [m.W.detach() for m in trainer.models]
    assert not torch.allclose(w[0], w[1])
    if model_type == "topk_sae":  # AuxK fired: some latents were dead at some step
        assert any(rec["aux"] > 0 for h in histories for rec in h)


@pytest.mark.parametrize("host_reads", [True, False])
@pytest.mark.parametrize("aux_k", [1, 3])
def test_stacked_auxk_on_dead_columns_matches_solo(float64, x_digits, aux_k, host_reads):
    """AuxK runs on each model's dead columns only, padded to the largest dead count: the
    same as the top-aux_k over all latents, also when more latents are dead than aux_k and
    when the models' dead counts differ (the padding must contribute nothing). Without host
    reads (the CUDA-graph mode, run here on CPU) it runs every step on all K columns."""
    cfgs = [
        make_cfg("topk_sae", {"aux_k": aux_k, "aux_coef": coef}, seed, 1e-3, "adam", 3)
        for coef, seed in ((1 / 32, 1), (0.5, 2), (0.25, 3))
    ]
    x = x_digits.double()
    trainer = StackedTrainer(cfgs)
    trainer.host_reads = host_reads
    dead_counts = []
    sae_step = trainer._sae_step

    def spy(xn, dead=None):
        if dead is not None:
            dead_counts.append(dead.sum(dim=1).tolist())
        return sae_step(xn, dead)

    trainer._sae_step = spy
    histories = trainer.fit(x, progress=False)
    if not host_reads:  # AuxK from the first step, before any latent can be dead
        assert len(dead_counts) == len(histories[0]) * -(-len(x) // 128)
        assert max(dead_counts[0]) == 0
    assert any(max(c) > aux_k for c in dead_counts)  # top-aux_k within the dead columns
    assert any(len(set(c)) > 1 for c in dead_counts)  # padding: unequal dead counts
    for cfg, stacked_model, hist in zip(cfgs, trainer.models, histories, strict=True):
        solo = runs.build_model(cfg)
        assert_same_run(cfg, stacked_model, hist, solo, train(solo, x, cfg, progress=False))


def test_stacked_float32_matches_solo_to_float_tolerance(x_digits):
    """The default dtype: Adam on the encoder stays within float32 noise over 2 epochs.

    The third variant (no LSE term, lr 2e-3) is left out: it is chaotic in float32 (scaling
    its initial W by 1 + 1e-7 moves the solo run's W by 8e-4 after 2 epochs), so any change
    in rounding, e.g. a batched matmul instead of one per model, exceeds float32 noise there.
    """
    cfgs = [make_cfg("encoder", loss, seed, 1e-3 * mult, "adam", 2)
            for loss, seed, mult in VARIANTS["encoder"][:2]]  # fmt: skip
    trainer = StackedTrainer(cfgs)
    trainer.fit(x_digits, progress=False)
    for cfg, model in zip(cfgs, trainer.models, strict=True):
        solo = runs.build_model(cfg)
        train(solo, x_digits, cfg, progress=False)
        torch.testing.assert_close(model.W, solo.W, rtol=1e-4, atol=1e-4)


def test_group_configs_splits_incompatible_configs():
    enc = make_cfg("encoder", {}, 1, 1e-3, "adam", 2)
    cfgs = [
        enc,
        make_cfg("encoder", {"lambda_var": 0.0}, 2, 1e-2, "adam", 2),  # same stack: weights, lr
        make_cfg("encoder", {}, 1, 1e-3, "sgd", 2),  # other optimizer
        make_cfg("standard_sae", {}, 1, 1e-3, "adam", 2),  # other architecture
        make_cfg("encoder", {}, 1, 1e-3, "adam", 3),  # other number of epochs
        make_cfg("encoder", {"lambda_wr": 0.5}, 1, 1e-3, "adam", 2),  # wr carries gradient
        make_cfg("encoder", {}, 5, 1e-1, "adam", 2),  # same stack as the first
    ]
    assert group_configs(cfgs) == [[0, 1, 6], [2], [3], [4], [5]]
    assert stack_key(cfgs[0]) == stack_key(cfgs[6])
    with pytest.raises(ValueError, match="group_configs"):
        StackedTrainer([cfgs[0], cfgs[2]])


def test_train_many_stacked_equals_plain_and_writes_run_dirs(tmp_path, float64, x_digits):
    x = x_digits.double()
    cfgs = [
        make_cfg("encoder", {}, 1, 1e-3, "adam", 2),
        make_cfg("standard_sae", {}, 2, 1e-3, "adam", 2),
        make_cfg("encoder", {"lambda_tc": 0.0}, 3, 2e-3, "adam", 2),
    ]
    dirs = [tmp_path / f"run{i}" for i in range(3)]
    stacked = train_many(cfgs, x, run_dirs=dirs, progress=False)
    plain = train_many(cfgs, x, progress=False, stacked=False)
    for (ms, hs), (mp, hp), d, cfg in zip(stacked, plain, dirs, cfgs, strict=True):
        torch.testing.assert_close(ms.W, mp.W, rtol=1e-9, atol=1e-10)
        assert [r["epoch"] for r in hs] == [r["epoch"] for r in hp] == [1, 2]
        assert runs.is_complete(d)
        loaded, loaded_cfg = runs.load_run(d)
        assert loaded_cfg == cfg
        assert torch.equal(loaded.W.double(), ms.W.detach())
        assert [strip(r) for r in runs.read_history(d)] == [strip(r) for r in hs]
    with pytest.raises(runs.RunExistsError):  # finished runs are not overwritten silently
        train_many(cfgs[:1], x, run_dirs=dirs[:1], progress=False)


def test_train_many_saves_each_stack_before_the_next_one_starts(tmp_path, x_digits, monkeypatch):
    """A failure in a later stack (killed, out of memory) leaves the earlier stacks saved."""
    cfgs = [
        make_cfg("encoder", {}, 1, 1e-3, "adam", 1),
        make_cfg("standard_sae", {}, 2, 1e-3, "adam", 1),
    ]
    dirs = [tmp_path / "enc", tmp_path / "sae"]
    fit = StackedTrainer.fit

    def fit_or_fail(self, *args, **kwargs):
        if self.kind == "standard_sae":
            raise RuntimeError("the second stack fails")
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(StackedTrainer, "fit", fit_or_fail)
    with pytest.raises(RuntimeError, match="second stack"):
        train_many(cfgs, x_digits, run_dirs=dirs, progress=False)
    assert runs.is_complete(dirs[0])
    assert not runs.is_complete(dirs[1])


def test_seed_slots_puts_models_of_one_seed_side_by_side():
    slots, data_seeds, blocks = seed_slots([2, 1, 2, 3, 3, 3, 4])
    assert slots == [3, 4, 5, 0, 2, 1, 6]  # seed 3 (3 models), seed 2 (2), seeds 1 and 4 (1)
    assert data_seeds == [3, 2, 1, 4]
    assert blocks == [(0, 1, 3), (1, 2, 2), (2, 4, 1)]  # (data rows r0:r1, models per row)


@pytest.mark.parametrize("batch", [24, 5])  # B >= K: K x K correlation; B < K: B x B Gram
def test_encoder_terms_match_the_loss_functions(float64, batch):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, batch, 3, 8, generator=gen).relu().requires_grad_()  # (S, B, G, K)
    got = encoder_terms(a, 1e-6)
    grad = torch.autograd.grad(sum(t.sum() for t in got.values()), a)[0]
    ref_grad = torch.zeros_like(a)
    for s in range(2):
        for g in range(3):
            col = a[s, :, g].detach().requires_grad_()  # (B, K)
            ref = {"lse": lse_loss(col)[0], "var": variance_loss(col), "tc": correlation_loss(col)}
            for name, value in ref.items():
                torch.testing.assert_close(got[name][s, g], value, rtol=1e-10, atol=1e-12)
            ref_grad[s, :, g] = torch.autograd.grad(sum(ref.values()), col)[0]
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)


SHARED = [  # (loss, seed, lr multiplier): seeds 1 and 2 shared, blocks of 3, 2 and 1 models
    ({}, 1, 1.0),
    ({"lambda_var": 0.5, "lambda_tc": 2.0}, 2, 0.5),
    ({"lambda_tc": 0.0}, 1, 2.0),
    ({"lambda_lse": 0.5}, 1, 1.0),
    ({}, 2, 1.5),
    ({"lambda_var": 2.0}, 3, 1.0),
]


@pytest.mark.parametrize(
    "model_type,optimizer,fused",
    [("encoder", "adam", True), ("encoder", "adam", False), ("encoder", "sgd", False),
     ("standard_sae", "adam", True)],
)  # fmt: skip
def test_models_sharing_data_seeds_match_solo_training(
    float64, x_digits, model_type, optimizer, fused
):
    """Seed-sharing models run as one matmul per block (encoder) or from one gathered batch
    per seed (vmap path); CPU Adam is fused or the tensor update used with CUDA graphs."""
    epochs, lr = 2, 1e-3  # encoder + SGD is chaotic at larger lr (see above)
    cfgs = []
    for loss, seed, mult in SHARED:
        if model_type == "standard_sae":
            loss = {"l1_weight": 0.01 * mult}
        cfgs.append(make_cfg(model_type, loss, seed, lr * mult, optimizer, epochs))
    x = x_digits.double()
    trainer = StackedTrainer(cfgs)
    trainer.fused_adam = fused
    assert trainer.fast_encoder == (model_type == "encoder")
    assert len(trainer.blocks) == 3 and trainer.data_seeds == [1, 2, 3]
    histories = trainer.fit(x, progress=False)
    for cfg, stacked_model, hist in zip(cfgs, trainer.models, histories, strict=True):
        solo = runs.build_model(cfg)
        assert_same_run(cfg, stacked_model, hist, solo, train(solo, x, cfg, progress=False))


def test_eval_every_evaluates_some_epochs_and_the_last(float64, x_digits):
    cfgs = [make_cfg("encoder", {}, sd, 1e-3, "adam", 3) for sd in (1, 2)]
    every = StackedTrainer(cfgs).fit(x_digits.double(), progress=False)
    some = StackedTrainer(cfgs).fit(x_digits.double(), progress=False, eval_every=2)
    for h_every, h_some in zip(every, some, strict=True):
        assert "dead_units" not in h_some[0] and "w_row_norm" in h_some[0]
        assert "dead_units" in h_some[1] and "dead_units" in h_some[2]  # epoch 2, last epoch
        for rec_every, rec_some in zip(h_every, h_some, strict=True):
            for k, v in strip(rec_some).items():
                assert math.isclose(v, rec_every[k], rel_tol=1e-12, abs_tol=1e-12), k


@pytest.mark.parametrize(
    "loss,model,batch",
    [({"lambda_wr": 0.5}, {}, 128),  # wr carries gradient: autograd for it, closed form else
     ({}, {}, 8),  # B < K: autograd from the losses back to z instead of the closed form
     ({}, {"activation": "softplus"}, 128)],  # closed form through a non-ReLU activation
)  # fmt: skip
def test_encoder_paths_match_solo_training(float64, x_digits, loss, model, batch):
    cfgs = []
    for (extra, seed, mult), lr in zip(SHARED[:4], (1e-3, 2e-3, 1e-3, 5e-4), strict=True):
        cfg = make_cfg("encoder", {**extra, **loss}, seed, lr * mult, "adam", 2).to_dict()
        cfg["model"].update(model)
        cfg["training"]["batch_size"] = batch
        cfgs.append(from_dict(cfg))
    x = x_digits[:400].double()
    trainer = StackedTrainer(cfgs)
    assert trainer.fast_encoder
    histories = trainer.fit(x, progress=False)
    for cfg, stacked_model, hist in zip(cfgs, trainer.models, histories, strict=True):
        solo = runs.build_model(cfg)
        assert_same_run(cfg, stacked_model, hist, solo, train(solo, x, cfg, progress=False))


@pytest.mark.parametrize("batch", [24, 5])
def test_encoder_terms_grad_is_the_autograd_gradient(float64, batch):
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(2, batch, 3, 8, generator=gen).relu().requires_grad_()  # (S, B, G, K)
    w = {t: torch.rand(2, 3, generator=gen) for t in ("lse", "var", "tc")}  # (S, G) each
    ref = encoder_terms(a, 1e-6)
    ref_grad = torch.autograd.grad(sum((w[t] * ref[t]).sum() for t in w), a)[0]
    terms, grad = encoder_terms_grad(a.detach(), 1e-6, w)
    for t in w:
        torch.testing.assert_close(terms[t], ref[t].detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "optimizer,fused,fused_step",
    [("adam", True, False), ("adam", False, False), ("sgd", False, False),
     ("adam", False, True), ("sgd", False, True)],  # fused_step: the opt-in fused step
)  # fmt: skip
def test_a_diverged_model_is_frozen(x_digits, optimizer, fused, fused_step):
    """`fit` marks a model with a non-finite record as dead; its slice must stop moving."""
    cfgs = [make_cfg("encoder", {}, sd, 1e-2, optimizer, 1) for sd in (1, 2, 3)]
    trainer = StackedTrainer(cfgs, fused_step=fused_step)
    trainer.fused_adam = fused
    order = trainer.epoch_order(len(x_digits), 0)
    trainer.step(trainer.batch(x_digits, order, 0, 128))
    trainer.alive[1] = False
    before = {k: v.detach().clone() for k, v in trainer.params.items()}
    trainer.step(trainer.batch(x_digits, order, 1, 128))
    for k, v in trainer.params.items():
        assert torch.equal(v[1], before[k][1]), k
        assert not torch.equal(v[0], before[k][0]) and not torch.equal(v[2], before[k][2]), k


def test_sketched_penalty_trains_stacked_with_independent_probes():
    """tc_probes inside the stacked (vmap) path: each model draws its own probes."""
    from implicit_em.config import LossConfig, ModelConfig, RunConfig, TrainConfig
    from implicit_em.train.stacked import StackedTrainer

    def cfg(seed: int) -> RunConfig:
        return RunConfig(model=ModelConfig(input_dim=8, hidden_dim=16),
                         loss=LossConfig(tc_probes=4),
                         training=TrainConfig(epochs=2, batch_size=16, seed=seed))  # fmt: skip

    torch.manual_seed(0)
    x = torch.randn(64, 8)
    hist = StackedTrainer([cfg(0), cfg(0)]).fit(x, progress=False)
    tcs = [h[-1]["tc"] for h in hist]
    assert all(math.isfinite(t) for t in tcs)
    assert tcs[0] != tcs[1]  # same seed and data, different probes: different estimates


@pytest.mark.parametrize("model_type", ["encoder", "topk_sae"])
def test_fit_in_graphed_chunks_equals_step_by_step(x_digits, model_type, monkeypatch):
    """`fit`'s CUDA bookkeeping (runs of full steps from one `steps` call, their terms summed
    into the static sums), run eagerly on CPU: weights and histories bitwise those of the
    step-by-step loop, float32."""
    from implicit_em.train import stacked

    cfgs = [make_cfg(model_type, loss, seed, 1e-3 * mult, "adam", 2)
            for loss, seed, mult in VARIANTS[model_type]]  # fmt: skip
    plain = StackedTrainer(cfgs)
    hist_plain = plain.fit(x_digits, progress=False)
    monkeypatch.setattr(stacked, "STEPS_PER_GRAPH", 4)  # 13 full batches: 1 + 3 x 4 + 0
    chunked = StackedTrainer(cfgs)
    chunked.use_graphs, chunked._graph = True, object()  # "captured": step 0 starts _acc
    chunked.step = chunked.train_step
    replays = []
    chunked._replay_steps = lambda *a: replays.append(a[1].shape) or chunked.steps(*a)
    hist_chunked = chunked.fit(x_digits, progress=False)
    # one data seed per model; 3 runs of 4 steps an epoch, 2 epochs
    assert replays == [(len(cfgs), 4 * 128)] * 6
    for k, p in plain.params.items():
        assert torch.equal(chunked.params[k], p), k
    for a, b in zip(hist_plain, hist_chunked, strict=True):
        assert [strip(r) for r in a] == [strip(r) for r in b]


def test_background_training_equals_train_many(tmp_path, x_digits):
    """`train_many_in_background`'s thread, run on CPU: the same models and run directories
    as `train_many`; on CPU the public entry declines (None)."""
    from implicit_em.train.stacked import _train_in_thread, train_many_in_background

    cfgs = [
        make_cfg("encoder", {}, 1, 1e-3, "adam", 1),
        make_cfg("standard_sae", {}, 2, 1e-3, "adam", 1),
    ]
    assert train_many_in_background(cfgs, x_digits, device="cpu") is None
    ref = train_many(cfgs, x_digits, run_dirs=[tmp_path / "a0", tmp_path / "a1"], progress=False)
    dirs = [tmp_path / "b0", tmp_path / "b1"]
    got = _train_in_thread(cfgs, x_digits, None, dirs, "cpu", False, 1, 5).result(timeout=120)
    for (m_ref, h_ref), (m, h), d in zip(ref, got, dirs, strict=True):
        assert runs.is_complete(d)
        for (name, p), q in zip(m_ref.state_dict().items(), m.state_dict().values(), strict=True):
            assert torch.equal(p, q), name
        assert [strip(r) for r in h_ref] == [strip(r) for r in h]
    bad = make_cfg("encoder", {}, 1, 1e-3, "adam", 1).to_dict()
    bad["model"]["input_dim"] = 50  # the digits have 64 pixels: the first step fails
    fut = _train_in_thread([from_dict(bad)], x_digits, None, None, "cpu", False, 1, 5)
    with pytest.raises(RuntimeError):
        fut.result(timeout=60)
    with pytest.raises(RuntimeError):
        fut.of(0).result(timeout=60)  # the stack's own future carries its error too


def recorded_priorities(monkeypatch) -> list[tuple[int, int]]:
    """(models, stream priority) of each StackedTrainer built from now on, in order."""
    from implicit_em.train import stacked

    priorities = []

    class Recorded(stacked.StackedTrainer):
        def __init__(self, cfgs, device="cpu", priority=0):
            priorities.append((len(cfgs), priority))
            super().__init__(cfgs, device, priority)

    monkeypatch.setattr(stacked, "StackedTrainer", Recorded)
    return priorities


def test_background_stacks_urgent_first(tmp_path, x_digits, monkeypatch):
    """`urgent`: the stacks holding those configs get URGENT_PRIORITY, the others 0; each
    stack's own future (`StacksFuture.of`) resolves once its runs are saved."""
    from implicit_em.train import stacked

    priorities = recorded_priorities(monkeypatch)
    cfgs = [
        make_cfg("encoder", {}, 1, 1e-3, "adam", 1),
        make_cfg("standard_sae", {}, 2, 1e-3, "adam", 1),
        make_cfg("encoder", {}, 3, 1e-3, "adam", 1),
    ]
    dirs = [tmp_path / f"r{i}" for i in range(3)]
    fut = stacked._train_in_thread(cfgs, x_digits, None, dirs, "cpu", False, 1, 5, urgent=[1])
    assert priorities == [(2, 0), (1, stacked.URGENT_PRIORITY)]  # stacks in order of first use
    assert fut.of(0) is fut.of(2) and fut.of(0) is not fut.of(1)
    assert fut.of(1).result(timeout=120) is None and runs.is_complete(dirs[1])
    got = fut.result(timeout=120)
    assert all(runs.is_complete(d) for d in dirs) and len(got) == 3


def test_urgent_configs_apart_get_stacks_of_their_own(tmp_path, x_digits, monkeypatch):
    """`stack_groups(apart=True)` (IMPLICIT_EM_SPLIT_URGENT in the experiments): the urgent
    configs split off their stacks into stacks of their own, first, at URGENT_PRIORITY; the
    others keep their order; without urgent configs or apart, `group_configs`."""
    from implicit_em.train import stacked

    cfgs = [
        make_cfg("encoder", {}, 1, 1e-3, "adam", 1),
        make_cfg("standard_sae", {}, 2, 1e-3, "adam", 1),
        make_cfg("encoder", {}, 3, 1e-3, "adam", 1),
        make_cfg("encoder", {}, 4, 1e-3, "adam", 1),
    ]
    assert stacked.stack_groups(cfgs, [2], apart=False) == [[0, 2, 3], [1]]
    assert stacked.stack_groups(cfgs, [], apart=True) == [[0, 2, 3], [1]]
    assert stacked.stack_groups(cfgs, [2], apart=True) == [[2], [0, 3], [1]]
    assert stacked.stack_groups(cfgs, [1, 3], apart=True) == [[3], [1], [0, 2]]
    priorities = recorded_priorities(monkeypatch)
    dirs = [tmp_path / f"r{i}" for i in range(4)]
    fut = stacked._train_in_thread(cfgs, x_digits, None, dirs, "cpu", False, 1, 5, urgent=[2],
                                   apart=True)  # fmt: skip
    assert priorities == [(1, stacked.URGENT_PRIORITY), (2, 0), (1, 0)]
    assert fut.of(2) is not fut.of(0) and fut.of(0) is fut.of(3)
    assert len(fut.result(timeout=120)) == 4 and all(runs.is_complete(d) for d in dirs)


def test_take_streams_skips_streams_held_by_live_owners(monkeypatch):
    """The stream choice of `optim.take_streams`, with a fake pool of 4 streams handed out in
    turn (torch's has 32 per priority): owners alive at once get distinct streams while the
    pool has free ones, share only when it is exhausted, and give theirs back when collected."""
    import gc

    from implicit_em.train import optim

    class Owner:
        pass

    handed = []

    class FakeStream:
        def __init__(self, device, priority=0):
            self.device_index, self.cuda_stream = 0, 1000 + len(handed) % 4
            handed.append(priority)

    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    assert optim.take_streams(Owner(), torch.device("cpu"), 2) == []
    cuda = torch.device("cuda")
    a, b = Owner(), Owner()
    sa = [s.cuda_stream for s in optim.take_streams(a, cuda, 2, priority=-1)]
    sb = [s.cuda_stream for s in optim.take_streams(b, cuda, 3)]
    assert sa == [1000, 1001] and sb == [1002, 1003, 1000]  # the pool spent: a's first shared
    assert handed[:2] == [-1, -1]
    del a
    gc.collect()
    c = Owner()
    sc = [s.cuda_stream for s in optim.take_streams(c, cuda, 2)]
    assert sc == [1001, 1002]  # 1001 (a's) is the only free one: b holds 1000, 1002 and 1003
    del b, c
    gc.collect()
    assert not optim._HELD
