"""Config: YAML and dicts map onto frozen dataclasses; bad keys and values name the key."""

from __future__ import annotations

import dataclasses

import pytest

from implicit_em.config import (
    ConfigError,
    LossConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    from_dict,
    load_config,
    load_yaml,
    override,
)
from implicit_em.data import resolve_input_dim


def test_defaults_match_the_paper():
    cfg = RunConfig()
    assert (cfg.loss.lambda_lse, cfg.loss.lambda_var, cfg.loss.lambda_tc, cfg.loss.lambda_wr) == (
        1,
        1,
        1,
        0,
    )
    assert cfg.loss.l1_weight == 0.01
    assert (cfg.model.input_dim, cfg.model.hidden_dim) == (None, 64)  # D follows the data
    assert resolve_input_dim(cfg).model.input_dim == 784  # MNIST, the default data set


def test_from_dict_and_round_trip():
    cfg = from_dict(
        {"model": {"hidden_dim": 32, "activation": "softplus"}, "training": {"lr": "1e-2"}}
    )
    assert cfg.model.hidden_dim == 32 and cfg.model.activation == "softplus"
    assert cfg.training.lr == 0.01 and isinstance(cfg.training.lr, float)
    assert cfg.loss == LossConfig()  # sections left out keep their defaults
    assert from_dict(cfg.to_dict()) == cfg
    assert from_dict(None) == RunConfig() == from_dict({"model": None})


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().training.lr = 1.0


def test_override():
    base = from_dict({"training": {"epochs": 3}})
    cfg = override(
        base, ["training.lr=0.05", "model.type=topk_sae", "data.train_subset=100", "data.root=null"]
    )
    assert cfg.training.lr == 0.05 and cfg.training.epochs == 3
    assert cfg.model.type == "topk_sae"
    assert cfg.data.train_subset == 100 and cfg.data.root is None
    assert base.training.lr == TrainConfig().lr  # the original is untouched


def test_load_yaml_and_load_config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  hidden_dim: 128\nloss:\n  lambda_tc: 0.5\ntraining:\n  lr: 1e-3\n")
    assert load_yaml(path) == {
        "model": {"hidden_dim": 128},
        "loss": {"lambda_tc": 0.5},
        "training": {"lr": "1e-3"},
    }
    cfg = load_config(path, ["training.epochs=7"])
    assert (cfg.model.hidden_dim, cfg.loss.lambda_tc, cfg.training.lr, cfg.training.epochs) == (
        128,
        0.5,
        1e-3,
        7,
    )


def test_load_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_yaml(tmp_path / "list.yaml")


@pytest.mark.parametrize(
    "data, key",
    [
        ({"training": {"lrr": 0.1}}, "training.lrr"),
        ({"model": {"hidden": 3}}, "model.hidden"),
        ({"optim": {}}, "'optim'"),
    ],
)
def test_unknown_keys(data, key):
    with pytest.raises(ConfigError, match=f"unknown (key|section) {key}"):
        from_dict(data)


def test_unknown_override_key():
    with pytest.raises(ConfigError, match=r"unknown key training\.lrr: valid keys are"):
        override(RunConfig(), ["training.lrr=0.1"])
    with pytest.raises(ConfigError, match="section.field=value"):
        override(RunConfig(), ["lr=0.1"])
    with pytest.raises(ConfigError, match="unknown section 'optim'"):
        override(RunConfig(), ["optim.lr=0.1"])


@pytest.mark.parametrize(
    "assignment, key",
    [
        ("training.lr=-1", "training.lr"),
        ("training.lr=fast", "training.lr"),
        ("training.epochs=0", "training.epochs"),
        ("training.epochs=2.5", "training.epochs"),
        ("training.epochs=true", "training.epochs"),
        ("training.batch_size=1", "training.batch_size"),
        ("training.optimizer=rmsprop", "training.optimizer"),
        ("model.type=vae", "model.type"),
        ("model.activation=gelu", "model.activation"),
        ("model.hidden_dim=0", "model.hidden_dim"),
        ("model.input_dim=0", "model.input_dim"),
        ("loss.lambda_var=-0.1", "loss.lambda_var"),
        ("loss.variance_eps=0", "loss.variance_eps"),
        ("data.dataset=cifar", "data.dataset"),
        ("data.train_subset=1", "data.train_subset"),
    ],
)
def test_invalid_values_name_the_key(assignment, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        override(RunConfig(), [assignment])


def test_topk_k_checked_against_hidden_dim():
    with pytest.raises(ConfigError, match=r"model\.k must be in \[1, hidden_dim=8\]"):
        ModelConfig(type="topk_sae", hidden_dim=8, k=16)


def test_small_hidden_dim_for_encoder_is_not_blocked_by_topk_k():
    # k only matters for topk_sae; an encoder with K=8 must not trip over the default k=16.
    assert override(RunConfig(), ["model.hidden_dim=8"]).model.hidden_dim == 8
