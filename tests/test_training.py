"""Training engine: determinism, per-epoch history, run directories and resume-after-kill.

All on sklearn's 8x8 digits (1797 x 64) with small models and a few epochs, on the CPU.
"""

from __future__ import annotations

import json

import pytest
import torch

from implicit_em import runs
from implicit_em.config import LossConfig, from_dict
from implicit_em.data import load_digits
from implicit_em.losses import correlation_loss, variance_loss
from implicit_em.train.loop import TERMS, evaluate, loss_terms, set_seed, term_weights, train

EPOCHS = 4


@pytest.fixture(scope="module")
def x_digits() -> torch.Tensor:
    return load_digits()[0]  # (1797, 64)


def make_cfg(model_type: str = "encoder", **training):
    model = {"type": model_type, "input_dim": 64, "hidden_dim": 16, "k": 4}
    loss = {"dead_steps": 1} if model_type == "topk_sae" else {}
    train_kw = {"epochs": EPOCHS, "batch_size": 128, "seed": 3, **training}
    return from_dict({"model": model, "loss": loss, "data": {"dataset": "digits"},
                      "training": train_kw})  # fmt: skip


def fit(cfg, x, **kw):
    model = runs.build_model(cfg)
    history = train(model, x, cfg, progress=False, **kw)
    return model, history


def strip_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in rec.items() if k != "seconds"} for rec in history]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("model_type", ["encoder", "standard_sae", "topk_sae"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_same_seed_is_bitwise_identical(x_digits, model_type, optimizer):
    cfg = make_cfg(model_type, optimizer=optimizer, epochs=2, lr=1e-3)
    m1, h1 = fit(cfg, x_digits)
    torch.manual_seed(123)  # the global RNG state must not matter: the config's seed decides
    m2, h2 = fit(cfg, x_digits)
    assert_same_weights(m1, m2)
    assert strip_time(h1) == strip_time(h2)


def test_different_seeds_differ(x_digits):
    m1, h1 = fit(make_cfg(seed=1, epochs=1), x_digits)
    m2, h2 = fit(make_cfg(seed=2, epochs=1), x_digits)
    assert not torch.equal(m1.W, m2.W)
    assert h1[0]["total"] != h2[0]["total"]


def test_set_seed_fixes_torch_numpy_and_python():
    import random

    import numpy as np

    set_seed(7)
    a = (random.random(), np.random.rand(), torch.rand(3))
    set_seed(7)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


@pytest.mark.parametrize("model_type", ["encoder", "standard_sae", "topk_sae"])
def test_history_has_every_term_and_metric(x_digits, model_type):
    cfg = make_cfg(model_type, epochs=2)
    _, history = fit(cfg, x_digits)
    assert [r["epoch"] for r in history] == [1, 2]
    for rec in history:
        for key in ("total", *TERMS[model_type], "dead_units", "redundancy", "w_row_norm"):
            assert key in rec, key
            assert isinstance(rec[key], (int, float)) and rec[key] == rec[key], key
        assert 0 <= rec["dead_units"] <= 16
    # the total is the weighted sum of the reported terms (weights of the default LossConfig)
    rec = history[-1]
    if model_type == "encoder":
        # K = 16, reference_k = 64: var weighted by 64/16, tc by 64*63/(16*15); lambda_wr = 0
        expected = rec["lse"] + 4 * rec["var"] + 16.8 * rec["tc"]
    elif model_type == "standard_sae":
        expected = rec["mse"] + 0.01 * rec["l1"]
    else:
        expected = rec["mse"] + rec["aux"] / 32
    assert rec["total"] == pytest.approx(expected, rel=1e-5)


def test_topk_auxk_is_active_with_small_dead_steps(x_digits):
    """dead_steps=1 step: some latents go dead within an epoch, so AuxK contributes."""
    _, history = fit(make_cfg("topk_sae", epochs=2), x_digits)
    assert any(rec["aux"] > 0 for rec in history)


def test_encoder_loss_decreases_and_w_row_norm_matches_weights(x_digits):
    cfg = make_cfg(epochs=3, lr=1e-2)
    model, history = fit(cfg, x_digits)
    assert history[-1]["total"] < history[0]["total"]
    assert history[-1]["w_row_norm"] == pytest.approx(
        float(model.W.detach().norm(dim=1).mean()), rel=1e-6
    )


@pytest.mark.parametrize("model_type", ["encoder", "topk_sae"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resume_after_kill_matches_uninterrupted_run(tmp_path, x_digits, model_type, optimizer):
    cfg = make_cfg(model_type, optimizer=optimizer)
    ref, ref_hist = fit(cfg, x_digits)
    run_dir = tmp_path / "run"
    _, part = fit(cfg, x_digits, run_dir=run_dir, stop_after=2)  # "killed" after 2 of 4 epochs
    assert len(part) == 2
    assert not runs.is_complete(run_dir)
    assert (run_dir / runs.CHECKPOINT).is_file()
    assert len(runs.read_history(run_dir)) == 2

    torch.manual_seed(999)  # a fresh process: different global RNG, a differently-initialised model
    fresh = runs.build_model(cfg, seed=1234)
    hist = train(fresh, x_digits, cfg, run_dir=run_dir, resume=True, progress=False)
    assert_same_weights(fresh, ref)
    assert strip_time(hist) == strip_time(ref_hist)
    assert strip_time(runs.read_history(run_dir)) == strip_time(ref_hist)
    assert runs.is_complete(run_dir)
    metrics = json.loads((run_dir / runs.METRICS).read_text())
    assert metrics["epochs_completed"] == EPOCHS
    assert metrics["total"] == ref_hist[-1]["total"]


def test_resume_of_a_complete_run_returns_its_history_and_weights(tmp_path, x_digits):
    cfg = make_cfg(epochs=2)
    ref, ref_hist = fit(cfg, x_digits, run_dir=tmp_path / "run")
    fresh = runs.build_model(cfg, seed=5)
    hist = train(fresh, x_digits, cfg, run_dir=tmp_path / "run", resume=True, progress=False)
    assert strip_time(hist) == strip_time(ref_hist)
    assert_same_weights(fresh, ref)


def test_resume_with_a_different_config_is_refused(tmp_path, x_digits):
    cfg = make_cfg()
    fit(cfg, x_digits, run_dir=tmp_path / "run", stop_after=1)
    other = make_cfg(lr=1e-2)
    with pytest.raises(ValueError, match="training.lr"):
        train(runs.build_model(other), x_digits, other, run_dir=tmp_path / "run", resume=True,
              progress=False)  # fmt: skip


def snapshot(run_dir) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(run_dir.iterdir())}


@pytest.mark.parametrize("complete", [True, False])
def test_existing_run_is_never_overwritten_silently(tmp_path, x_digits, complete):
    cfg = make_cfg(epochs=2)
    fit(cfg, x_digits, run_dir=tmp_path / "run", stop_after=None if complete else 1)
    before = snapshot(tmp_path / "run")
    with pytest.raises(runs.RunExistsError, match="complete run" if complete else "unfinished"):
        fit(cfg, x_digits, run_dir=tmp_path / "run")
    assert snapshot(tmp_path / "run") == before
    # --overwrite replaces it with a fresh run
    fit(make_cfg(epochs=1), x_digits, run_dir=tmp_path / "run", overwrite=True)
    assert len(runs.read_history(tmp_path / "run")) == 1
    assert json.loads((tmp_path / "run" / runs.METRICS).read_text())["epochs_completed"] == 1


def test_stray_tmp_file_is_never_trusted(tmp_path, x_digits):
    """A kill during a write leaves only a hidden .tmp; it neither marks the run complete nor is
    read back as a checkpoint, and a directory holding one is not silently reused."""
    cfg = make_cfg()
    ref, ref_hist = fit(cfg, x_digits)
    run_dir = tmp_path / "run"
    fit(cfg, x_digits, run_dir=run_dir, stop_after=2)
    # a half-written metrics.json and a half-written checkpoint of a later epoch
    (run_dir / ".metrics.json.abc.tmp").write_text('{"epochs_completed": 4, "tot')
    (run_dir / ".checkpoint.pt.abc.tmp").write_bytes(b"\x80\x02garbage")
    assert not runs.is_complete(run_dir)
    with pytest.raises(runs.RunExistsError, match="unfinished"):
        fit(cfg, x_digits, run_dir=run_dir)
    fresh = runs.build_model(cfg, seed=77)
    hist = train(fresh, x_digits, cfg, run_dir=run_dir, resume=True, progress=False)
    assert_same_weights(fresh, ref)
    assert strip_time(hist) == strip_time(ref_hist)

    only_tmp = tmp_path / "only-tmp"
    only_tmp.mkdir()
    (only_tmp / ".model.safetensors.x.tmp").write_bytes(b"partial")
    with pytest.raises(runs.RunExistsError):
        fit(cfg, x_digits, run_dir=only_tmp)
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        runs.load_run(only_tmp)


def test_atomic_write_leaves_no_file_on_failure(tmp_path):
    def boom(path):
        with open(path, "wb") as fh:
            fh.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        runs.atomic_save(boom, tmp_path / "model.safetensors")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("model_type", ["encoder", "standard_sae", "topk_sae"])
def test_load_run_and_evaluate_reproduce_recorded_metrics(tmp_path, x_digits, model_type):
    cfg = make_cfg(model_type, epochs=2)
    x_eval = x_digits[1400:]
    model, history = fit(cfg, x_digits[:1400], x_eval=x_eval, run_dir=tmp_path / "run")
    loaded, loaded_cfg = runs.load_run(tmp_path / "run")
    assert loaded_cfg == cfg
    assert type(loaded) is type(model)
    assert_same_weights(loaded, model)
    recorded = json.loads((tmp_path / "run" / runs.METRICS).read_text())
    again = evaluate(loaded, x_eval)
    for key, value in again.items():
        assert recorded[key] == value, key
    assert recorded["epochs_completed"] == 2
    assert recorded["total"] == history[-1]["total"]


def test_term_weights_unchanged_at_reference_k_and_scaled_at_large_k():
    loss = LossConfig(lambda_lse=1.0, lambda_var=2.0, lambda_tc=3.0, lambda_wr=0.5)
    at_64 = term_weights("encoder", loss, 64)
    assert at_64 == {"lse": 1.0, "var": 2.0, "tc": 3.0, "wr": 0.5}  # the MNIST setting
    at_4096 = term_weights("encoder", loss, 4096)
    assert at_4096["lse"] == 1.0 and at_4096["wr"] == 0.5
    assert at_4096["var"] == pytest.approx(2.0 * 64 / 4096)
    assert at_4096["tc"] == pytest.approx(3.0 * 64 * 63 / (4096 * 4095))
    off = LossConfig(lambda_var=2.0, lambda_tc=3.0, reference_k=None)
    assert term_weights("encoder", off, 4096)["var"] == 2.0
    assert term_weights("encoder", off, 4096)["tc"] == 3.0
    assert term_weights("topk_sae", loss, 4096) == {"mse": 1.0, "aux": loss.aux_coef}


def test_scaled_penalties_stay_comparable_across_k():
    """For independent columns the scaled var and tc per unit do not grow with K."""
    torch.manual_seed(0)
    loss = LossConfig()
    totals = []
    for k in (64, 1024):
        a = torch.rand(256, k)  # (B, K) independent columns
        w = term_weights("encoder", loss, k)
        totals.append((w["var"] * variance_loss(a), w["tc"] * correlation_loss(a)))
    (v64, t64), (v1k, t1k) = totals
    assert float(v1k) == pytest.approx(float(v64), rel=0.05)
    assert float(t1k) == pytest.approx(float(t64), rel=0.1)


@pytest.mark.parametrize("model_type", ["encoder", "standard_sae", "topk_sae"])
def test_amp_terms_are_float32_and_close_to_full_precision(x_digits, model_type):
    cfg = make_cfg(model_type)
    model = runs.build_model(cfg)
    x = x_digits[:128]
    dead = torch.ones(16, dtype=torch.bool) if model_type == "topk_sae" else None
    full = loss_terms(model, x, cfg.loss, dead)
    half = loss_terms(model, x, cfg.loss, dead, amp=True)
    for name in TERMS[model_type]:
        assert half[name].dtype == torch.float32, name
        assert float(half[name].detach()) == pytest.approx(
            float(full[name].detach()), rel=0.05, abs=0.05
        ), name
    assert half["a"].dtype == torch.float32


def test_amp_training_runs_and_learns(x_digits):
    cfg = make_cfg("encoder", amp=True, epochs=2)
    _, history = fit(cfg, x_digits)
    assert history[-1]["total"] < history[0]["total"]


def test_with_wr_false_leaves_only_the_wr_metric_out(x_digits):
    """loss_terms(with_wr=False) (bench_scale's "-wr" rows; the metric a trainer may log only
    now and then) drops the zero-weight wr metric and nothing else: the other terms are
    bitwise those of the full call. At lambda_wr > 0 wr stays (it carries gradient)."""
    cfg = make_cfg("encoder")
    model = runs.build_model(cfg)
    x = x_digits[:128]
    full = loss_terms(model, x, cfg.loss)
    step = loss_terms(model, x, cfg.loss, with_wr=False)
    assert set(full) - set(step) == {"wr"}
    assert all(torch.equal(step[k], full[k]) for k in step)
    graded = LossConfig(lambda_wr=0.1)
    assert loss_terms(model, x, graded, with_wr=False)["wr"].requires_grad
