"""The stacked N-model trainer against the plain one-model loop (implicit_em.training.train).

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
from implicit_em.stacked import StackedTrainer, group_configs, stack_key, train_many
from implicit_em.training import train


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
    histories = trainer.fit(x, progress=False)
    for cfg, stacked_model, hist in zip(cfgs, trainer.models, histories, strict=True):
        solo = runs.build_model(cfg)
        solo_hist = train(solo, x, cfg, progress=False)
        assert len(hist) == len(solo_hist) == epochs
        for name, p in solo.named_parameters():
            q = dict(stacked_model.named_parameters())[name]
            assert p.dtype == q.dtype == torch.float64
            torch.testing.assert_close(q, p, rtol=1e-8, atol=1e-9, msg=name)
        for rec, solo_rec in zip(hist, solo_hist, strict=True):
            a, b = strip(rec), strip(solo_rec)
            assert a.keys() == b.keys()
            for k in a:
                assert math.isclose(a[k], b[k], rel_tol=1e-8, abs_tol=1e-9), (k, a[k], b[k])
    # the models really differ from one another (different seeds and settings)
    w = [m.W.detach() for m in trainer.models]
    assert not torch.allclose(w[0], w[1])
    if model_type == "topk_sae":  # AuxK fired: some latents were dead at some step
        assert any(rec["aux"] > 0 for h in histories for rec in h)


def test_stacked_float32_matches_solo_to_float_tolerance(x_digits):
    """The default dtype: Adam on the encoder stays within float32 noise over 2 epochs."""
    cfgs = [make_cfg("encoder", loss, seed, 1e-3 * mult, "adam", 2)
            for loss, seed, mult in VARIANTS["encoder"]]  # fmt: skip
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
