"""Run tracking: W&B in offline mode (no account) and TensorBoard, through the trainers."""

from __future__ import annotations

import pytest
import torch

from implicit_em import tracking
from implicit_em.config import ModelConfig, RunConfig, TrainConfig
from implicit_em.runs import build_model
from implicit_em.train.loop import train


class Recorder:
    """A tracker that keeps every call (checks what the trainers send)."""

    def __init__(self) -> None:
        self.config, self.steps, self.final, self.closed = None, [], None, False

    def log_config(self, config):
        self.config = config

    def log(self, metrics, step):
        self.steps.append((step, tracking.scalars(metrics)))

    def log_final(self, metrics):
        self.final = tracking.scalars(metrics)

    def close(self):
        self.closed = True


def _cfg(epochs: int = 3) -> RunConfig:
    return RunConfig(
        model=ModelConfig(type="encoder", input_dim=8, hidden_dim=6),
        training=TrainConfig(epochs=epochs, batch_size=32, lr=1e-2, seed=0),
    )


def _x() -> torch.Tensor:
    return torch.randn(128, 8, generator=torch.Generator().manual_seed(0))


def test_train_sends_config_epochs_and_final_metrics():
    rec = Recorder()
    cfg = _cfg()
    history = train(build_model(cfg), _x(), cfg, progress=False, tracker=rec)
    assert rec.config == cfg.to_dict()
    assert [s for s, _ in rec.steps] == [1, 2, 3]
    assert rec.steps[-1][1]["total"] == pytest.approx(history[-1]["total"])
    assert rec.final["epochs_completed"] == 3 and rec.final["lse"] == history[-1]["lse"]
    assert not rec.closed  # the caller closes


def test_distributed_trainer_logs_each_logged_step():
    from implicit_em.train.distributed import train_steps

    rec = Recorder()
    cfg = _cfg()
    res = train_steps(
        build_model(cfg),
        _x(),
        cfg.loss,
        global_batch=32,
        steps=6,
        log_every=2,
        warmup=1,
        tracker=rec,
    )
    assert [s for s, _ in rec.steps] == [2, 4, 6]
    assert rec.final["total"] == pytest.approx(res["history"][-1]["total"])
    assert rec.final["tokens_per_s"] > 0


def test_scalars_flattens_and_drops_non_numbers():
    got = tracking.scalars({"a": 1, "b": float("nan"), "c": {"d": 2.5}, "e": "x", "f": True})
    assert got == {"a": 1.0, "c/d": 2.5}


def test_tensorboard_event_files_hold_the_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tr = tracking.make_tracker(tracking.TrackingOptions(tensorboard=str(tmp_path)))
    cfg = _cfg()
    history = train(build_model(cfg), _x(), cfg, progress=False, tracker=tr)
    tr.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "lse" in tags and "final/lse" in tags
    lse = acc.Scalars("lse")
    assert [e.step for e in lse] == [1, 2, 3]
    assert lse[-1].value == pytest.approx(history[-1]["lse"], rel=1e-6)


def test_wandb_offline_run_needs_no_account(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    opts = tracking.TrackingOptions(
        wandb="implicit-em-test", wandb_mode="offline", wandb_dir=str(tmp_path), run_name="t"
    )
    tr = tracking.make_tracker(opts)
    cfg = _cfg(epochs=2)
    history = train(build_model(cfg), _x(), cfg, progress=False, tracker=tr)
    summary = dict(tr.run.summary)
    assert summary["final/lse"] == pytest.approx(history[-1]["lse"])
    assert tr.run.config["training"]["epochs"] == 2
    tr.close()
    import wandb

    wandb.teardown()  # stops W&B's writer process: the record file is complete after this
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    records = list(runs[0].glob("run-*.wandb"))  # what `wandb sync` uploads (protobuf log)
    assert len(records) == 1
    data = records[0].read_bytes()
    for key in (b"final/lse", b"resp_entropy", b"implicit-em-test", b"lambda_tc"):
        assert key in data


def test_missing_backends_and_bad_mode_fail_clearly(monkeypatch):
    with pytest.raises(ValueError, match="wandb_mode"):
        tracking.TrackingOptions(wandb="p", wandb_mode="cloud")
    assert tracking.make_tracker(tracking.TrackingOptions()) is None
    import builtins

    real = builtins.__import__

    def no_wandb(name, *a, **kw):
        if name == "wandb":
            raise ImportError("no wandb")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(ImportError, match="implicit-em\\[tracking\\]"):
        tracking.WandbTracker("p", mode="offline")
