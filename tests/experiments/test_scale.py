"""The scale study's bookkeeping (specs, table rows, report files) on synthetic results."""

from __future__ import annotations

import csv

import pytest
import torch

from implicit_em.experiments.scale import ScaleOptions, rows, run_specs, spec_config, write_report


def fake_eval(recons: tuple[str, ...]) -> dict:
    return {
        "fvu": {r: 0.5 for r in recons},
        "fvu_typical": {r: 0.4 for r in recons},
        "fvu_per_dim": {r: 0.6 for r in recons},
        "ce": {r: {"ce": 4.0, "kl": 0.3} for r in recons},
        "ce_loss_recovered": {r: 0.9 for r in recons},
        "codes": {"l0": 32.0, "dead_fraction": 0.01, "responsibility_entropy": 5.0,
                  "max_entropy": 8.3},
    }  # fmt: skip


def test_specs_cover_every_architecture_and_scale_l1_with_k():
    specs = run_specs([4096, 16384], [32, 64], [1.0, 4.0], d=576)
    assert [s["name"] for s in specs[:5]] == [
        "encoder-K4096", "topk-K4096-k32", "topk-K4096-k64", "l1-K4096-c1", "l1-K4096-c4",
    ]  # fmt: skip
    assert len(specs) == 10
    assert specs[3]["l1_weight"] == pytest.approx(4096 / 576)
    args = ScaleOptions(batch_size=4096, lr=1e-3, amp=True)
    cfg = spec_config(specs[1], 576, args)
    assert (cfg.model.type, cfg.model.hidden_dim, cfg.model.k) == ("topk_sae", 4096, 32)
    assert cfg.training.amp


def test_encoders_are_sketched_with_an_exact_check():
    specs = run_specs([4096, 16384], [32], [1.0], d=576, tc_probes=32, exact_check=(4096,))
    enc = {s["name"]: s for s in specs if s["type"] == "encoder"}
    assert sorted(enc) == ["encoder-K16384", "encoder-K4096", "encoder-K4096-exact"]
    args = ScaleOptions(batch_size=4096, lr=1e-3, amp=True)
    assert spec_config(enc["encoder-K4096"], 576, args).loss.tc_probes == 32
    assert spec_config(enc["encoder-K4096-exact"], 576, args).loss.tc_probes is None


def test_report_files(tmp_path):
    specs = run_specs([64], [8], [1.0], d=16)
    train = {"tokens": 1000, "tokens_per_s": 1e5}
    results = [
        {"spec": specs[0], "train": train, "eval": fake_eval(("wt_scalar_offset", "lstsq"))},
        {"spec": specs[1], "train": train, "eval": fake_eval(("decoder", "lstsq"))},
        {"spec": specs[2], "train": train, "eval": fake_eval(("decoder", "lstsq"))},
    ]
    table = rows(results)
    assert len(table) == 6 and {r["reconstruction"] for r in table} >= {"decoder", "lstsq"}
    args = ScaleOptions()
    write_report(tmp_path, results, args, {"model_id": "m"}, [], 1000, 1.0)
    for name in ("results.json", "results.csv", "frontier.png", "table.md"):
        assert (tmp_path / name).is_file(), name
    with open(tmp_path / "results.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 6


def test_specs_add_batchtopk_jumprelu_and_centred_saes():
    specs = run_specs([4096], [32], [1.0], d=576, batchtopk=(32,), jumprelu=(0.01,), centre=True)
    names = [s["name"] for s in specs]
    assert names == [
        "encoder-K4096", "topk-K4096-k32", "l1-K4096-c1", "batchtopk-K4096-k32",
        "jumprelu-K4096-l0c0.01", "topk-K4096-k32-centred", "l1-K4096-c1-centred",
        "batchtopk-K4096-k32-centred", "jumprelu-K4096-l0c0.01-centred",
    ]  # fmt: skip
    args = ScaleOptions(batch_size=4096)
    cfg = spec_config(specs[-1], 576, args)
    assert (cfg.model.type, cfg.model.centre, cfg.loss.l0_coef) == ("jumprelu_sae", True, 0.01)
    assert spec_config(specs[3], 576, args).model.k == 32


def test_prepared_data_is_the_plain_formula(tmp_path):
    """`prepare_training_data` / `prepare_heldout` (shared with scripts/scale_dashboards.py):
    drop tokens above ratio x the train median norm, scale by the manifest's norm_scale."""
    pytest.importorskip("transformers")
    from dashboard_fixtures import make_harvest

    from implicit_em.data.lm.activations import Normalization, read_split
    from implicit_em.experiments.scale import prepare_heldout, prepare_training_data

    acts, _, _ = make_harvest(tmp_path)
    data = prepare_training_data([acts, acts], 100, "cpu", max_norm_ratio=1.2)
    x = torch.cat([read_split(acts, "train")[0]] * 2)  # (2N, D) model units
    norms = x.norm(dim=1)
    median = float(norms[:200_000].median())
    keep = norms <= 1.2 * median
    scale = Normalization.from_manifest(acts).scale
    assert data.median == pytest.approx(median) and data.dropped == int((~keep).sum()) > 0
    torch.testing.assert_close(data.x_train.float(), (x[keep] * scale).half().float())
    assert data.x_train.dtype == torch.float16 and data.x_fit.shape == (100, x.shape[1])
    rows = (x[keep] * scale).unsqueeze(1) == data.x_fit.unsqueeze(0)  # (N', 100, D)
    assert rows.all(dim=2).any(dim=0).all()  # the fit rows are kept train rows
    held, typical, tokens = prepare_heldout(acts, data, "cpu", max_tokens=50)
    raw, tok = read_split(acts, "heldout", max_tokens=50)
    torch.testing.assert_close(held, raw * scale)
    assert torch.equal(typical, raw.norm(dim=1) <= 1.2 * median) and torch.equal(tokens, tok)
