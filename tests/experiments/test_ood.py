"""The OOD study: metric helpers against hand-computed values, and a tiny end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from implicit_em.data import load_digits
from implicit_em.experiments import ood
from implicit_em.models import StandardSAE

# ---------------------------------------------------------------------------- metrics

# Positives (in-distribution) 0.9, 0.8, 0.3; negatives (OOD) 0.5, 0.1.
Y = np.array([1, 1, 1, 0, 0])
S = np.array([0.9, 0.8, 0.3, 0.5, 0.1])


def test_auroc_counts_correctly_ordered_pairs() -> None:
    # 6 (positive, negative) pairs; only (0.3, 0.5) is out of order: 5/6.
    assert ood.auroc(Y, S) == pytest.approx(5 / 6)
    # A tie counts one half.
    assert ood.auroc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert ood.auroc([1, 1, 0], [2.0, 3.0, 1.0]) == 1.0
    assert ood.auroc([1, 1, 0], [0.0, 0.1, 1.0]) == 0.0


@pytest.mark.parametrize(
    ("tpr", "expected"),
    [
        # Keeping all 3 positives needs threshold 0.3, which accepts the negative 0.5: 1/2.
        (0.95, 0.5),
        (1.0, 0.5),
        # Two of three positives (threshold 0.8) accept no negative.
        (2 / 3, 0.0),
        (0.5, 0.0),
    ],
)
def test_fpr_at_tpr_hand_computed(tpr, expected) -> None:
    assert ood.fpr_at_tpr(Y, S, tpr) == pytest.approx(expected)


def test_fpr_at_exactly_95_percent_tpr() -> None:
    # 20 positives 0..19: 19 of them (95 %) are kept by threshold 1, which accepts 5.5 and
    # 10.5 but not 0.5: FPR 2/3. A threshold one step lower would give 1.
    s_in, s_out = np.arange(20.0), np.array([0.5, 5.5, 10.5])
    res = ood.evaluate_scores(s_in, s_out)
    assert res["fpr95"] == pytest.approx(2 / 3)
    # AUROC: 0.5 beats 19 of 20 in-dist... pairs in order = (19 + 14 + 9) / 60.
    assert res["auroc"] == pytest.approx((19 + 14 + 9) / 60)


def test_ties_at_the_threshold_count_as_accepted() -> None:
    assert ood.fpr_at_tpr([1, 0, 0], [1.0, 1.0, 0.0]) == pytest.approx(0.5)


def test_metric_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="matching arrays"):
        ood.auroc([1, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="both classes"):
        ood.fpr_at_tpr([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN or Inf"):
        ood.auroc([1, 0], [np.nan, 0.2])
    with pytest.raises(ValueError, match="tpr must be in"):
        ood.fpr_at_tpr(Y, S, 0.0)


def test_reconstruction_error_is_per_sample_mse() -> None:
    model = StandardSAE(5, 3)
    x = torch.rand(4, 5)
    with torch.no_grad():
        expected = ((model.decoder(torch.relu(model.encoder(x))) - x) ** 2).mean(dim=1)
    np.testing.assert_allclose(ood.reconstruction_error(model, x), expected.double(), rtol=1e-6)


# ------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_data():
    """Digits 0-4 in distribution; digits 5-9 with pixels permuted as OOD. D = 64."""
    x, y = load_digits()
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    x_in_all = x[y < 5]
    return x_in_all[:400], x_in_all[400:600], x[y >= 5][:200][:, perm], "digits 0-4", "scrambled"


def run_tiny(out, data, **kw):
    params = dict(epochs=1, seeds=(0, 1), n_components=8, topk_k=4, data=data, verbose=False)
    params.update(kw)
    return ood.run_ood(out, **params)


def test_tiny_end_to_end_run_writes_results(tmp_path, tiny_data) -> None:
    out = tmp_path / "ood"
    res = run_tiny(out, tiny_data)
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "roc.png", "table.md"]
    on_disk = json.loads((out / "results.json").read_text())
    names = [m["name"] for m in on_disk["methods"]]
    assert names == [
        "decoder_free_lse",
        "standard_sae_recon",
        "topk_sae_recon",
        "gmm_loglik",
        "kmeans_distance",
    ]
    assert on_disk["protocol"]["epochs"] == 1 and on_disk["protocol"]["n_train"] == 400
    lse = on_disk["methods"][0]
    assert [r["seed"] for r in lse["per_seed"]] == [0, 1]
    aurocs = [r["auroc"] for r in lse["per_seed"]]
    assert lse["auroc_mean"] == pytest.approx(np.mean(aurocs))
    assert lse["auroc_std"] == pytest.approx(np.std(aurocs, ddof=1))
    for r in lse["per_seed"]:
        assert 0 <= r["zero_energies_in"] <= 8 and 0 <= r["zero_energies_out"] <= 8
        assert 0 <= r["min_energy_zero_in"] <= 1
    for m in on_disk["methods"]:
        assert 0.0 <= m["auroc_mean"] <= 1.0 and 0.0 <= m["fpr95_mean"] <= 1.0
    # Scrambled pixels are far from every digit centroid: the floor method must see that.
    assert on_disk["methods"][-1]["auroc_mean"] > 0.95
    table = (out / "table.md").read_text()
    assert table.count("\n") == 2 + 5 and "AUROC" in table
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res["methods"][0]["auroc_mean"] == pytest.approx(lse["auroc_mean"])


def test_same_seeds_give_the_same_numbers(tmp_path, tiny_data) -> None:
    a = run_tiny(tmp_path / "a", tiny_data, seeds=(3,))
    b = run_tiny(tmp_path / "b", tiny_data, seeds=(3,))
    for ma, mb in zip(a["methods"], b["methods"], strict=True):
        assert ma["auroc_mean"] == mb["auroc_mean"] and ma["fpr95_mean"] == mb["fpr95_mean"]


def test_existing_results_are_never_overwritten_silently(tmp_path, tiny_data) -> None:
    out = tmp_path / "ood"
    run_tiny(out, tiny_data, seeds=(0,))
    before = (out / "results.json").read_text()
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_tiny(out, tiny_data, seeds=(1,))
    assert (out / "results.json").read_text() == before
    run_tiny(out, tiny_data, seeds=(1,), overwrite=True)
    assert json.loads((out / "results.json").read_text())["protocol"]["seeds"] == [1]


def test_report_section_is_labelled_beyond_the_paper(tmp_path, tiny_data) -> None:
    res = run_tiny(tmp_path / "ood", tiny_data, seeds=(0,))
    text = ood.write_report_section(res)
    assert text.startswith("## Beyond the paper")
    assert "Not an experiment of the paper" in text
    assert ood.markdown_table(res) in text
    assert "roc.png" in text and "**1 epoch**" in text


def test_cli_parser_and_refusal_to_overwrite(tmp_path, capsys) -> None:
    from implicit_em.cli import COMMANDS, main, parser_for
    from implicit_em.cli.options import build_options

    command = next(c for c in COMMANDS if c.name == "ood")
    opts = build_options(ood.OodOptions, parser_for(command).parse_args(["--out", str(tmp_path)]))
    assert opts.epochs == ood.DEFAULT_EPOCHS and opts.seeds == [0, 1, 2]
    assert opts.gmm_space == "pca50" and not opts.overwrite
    (tmp_path / "results.json").write_text("{}")
    assert main(["ood", "--out", str(tmp_path)]) == 2  # refuses before loading any data
    assert "--overwrite" in capsys.readouterr().err


def test_bad_arguments_fail_before_training(tmp_path) -> None:
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        ood.run_ood(tmp_path, epochs=0)
    with pytest.raises(ValueError, match="gmm_space"):
        ood.run_ood(tmp_path, gmm_space="tsne")
