"""Dashboard sites for each model family, checked against numbers computed directly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from dashboard_fixtures import WORDS, make_harvest, make_run  # noqa: E402

from implicit_em.dashboard import DashboardOptions, run  # noqa: E402
from implicit_em.dashboard.site import quantile_groups, sig_round, window_tokens  # noqa: E402
from implicit_em.data.lm.activations import Normalization, read_split  # noqa: E402
from implicit_em.runs import load_run  # noqa: E402

FAMILIES = ("encoder", "topk_sae", "standard_sae")


def read_js(path: Path) -> dict:
    text = path.read_text()
    start, end = text.index("(") + 1, text.rindex(")")
    return json.loads(text[start:end])


@pytest.fixture(scope="module")
def harvest(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash")
    acts, tok, lm = make_harvest(root)
    return root, acts, tok, lm


def build(harvest, family: str, **kw) -> tuple[Path, Path]:
    root, acts, tok, lm = harvest
    run_dir = root / family
    if not run_dir.exists():
        make_run(root, acts, family)
    out = root / f"site-{family}-{len(list(root.glob('site-*')))}"
    opts = DashboardOptions(run_dir=str(run_dir), out=str(out), progress=False, top_k=5,
                            n_samples=16, context=3, block_size=5, **kw)  # fmt: skip
    run(opts, tokenizer=tok, W_U=lm.get_output_embeddings().weight.detach())
    return run_dir, out


def direct_codes(run_dir: Path, acts: Path) -> tuple[torch.Tensor, torch.Tensor]:
    model, _ = load_run(run_dir)
    x, toks = read_split(acts, "train", norm=Normalization.from_manifest(acts))
    with torch.no_grad():
        return model.encode(x), toks  # (N, K), (C, T)


@pytest.mark.parametrize("family", FAMILIES)
def test_site_numbers_match_direct_computation(harvest, family: str) -> None:
    root, acts, tok, _ = harvest
    run_dir, out = build(harvest, family)
    a, toks = direct_codes(run_dir, acts)
    N, K = a.shape
    idx = read_js(out / "data" / "index.js")
    rows, meta = idx["rows"], idx["meta"]
    assert meta["n_latents"] == K == 12 and meta["n_tokens"] == N
    assert rows["id"] == list(range(K))
    freq = (a > 0).double().mean(0)
    torch.testing.assert_close(
        torch.tensor(rows["freq"], dtype=torch.float64), freq, rtol=1e-3, atol=0
    )
    torch.testing.assert_close(torch.tensor(rows["max"]), a.max(0).values, rtol=1e-3, atol=0)
    mean_nz = a.sum(0) / (a > 0).sum(0)
    got_mean = torch.tensor([float("nan") if m is None else m for m in rows["mean"]])
    torch.testing.assert_close(got_mean, mean_nz, rtol=1e-3, atol=0, equal_nan=True)
    if family == "encoder":
        assert meta["responsibilities"] and meta["near"] == ["encoder"] and not meta["logits"]
        usage = torch.softmax(-a, dim=1).mean(0)
        torch.testing.assert_close(torch.tensor(rows["usage"]), usage, rtol=1e-3, atol=0)
    else:
        assert not meta["responsibilities"] and meta["near"] == ["encoder", "decoder"]
        assert meta["logits"] and rows["usage"] == [None] * K
    assert sum(idx["density"]["counts"]) + idx["density"]["dead"] == K

    blk = read_js(out / "data" / "block_00000.js")
    P = a.shape[0] // toks.shape[0]
    for key, rec in blk["latents"].items():
        j = int(key)
        n_fire = int((a[:, j] > 0).sum())
        want_vals, want_rows = a[:, j].topk(min(5, n_fire))
        got = [ex[0] for ex in rec["top"]]
        torch.testing.assert_close(torch.tensor(got), want_vals, rtol=1e-3, atol=0)
        for ex, g in zip(rec["top"], want_rows.tolist(), strict=True):
            off, refs = ex[2], ex[3]
            centre_tok = int(toks[g // P, g % P + 1])  # + 1: BOS is not stored
            assert blk["strings"][refs[-off]] == tok.decode([centre_tok])
            if family == "encoder":
                r = torch.softmax(-a[g], dim=0)[j]
                assert ex[1] == pytest.approx(float(r), rel=2e-3)
        assert rec["n_sample"] == min(16, int((a[:, j] > 0).sum()))
        hist_total = sum(rec["hist"]["counts"])
        assert hist_total == rec["fires"] == int((a[:, j] > 0).sum())
        if family != "encoder":
            assert len(rec["logits"]["pos"]) == 10 and len(rec["logits"]["neg"]) == 10
            assert rec["logits"]["pos"][0][1] >= rec["logits"]["neg"][0][1]
    html = (out / "index.html").read_text()
    assert "K = 12 latents" in html and "usage E[r]" in html if family == "encoder" else True


def test_custom_readout_and_latent_sample(harvest) -> None:
    root, acts, _, _ = harvest
    run_dir, out = build(harvest, "encoder", latents="3,7", responsibilities="off")
    model, _ = load_run(run_dir)
    idx = read_js(out / "data" / "index.js")
    assert idx["rows"]["id"] == [3, 7] and idx["meta"]["n_shown"] == 2
    assert not idx["meta"]["responsibilities"]

    root, acts, tok, _ = harvest
    out2 = root / "site-doubled"
    run(DashboardOptions(run_dir=str(run_dir), out=str(out2), progress=False, top_k=3,
                         n_samples=4, latents="3"),
        tokenizer=tok, codes=lambda x: 2.0 * model.encode(x))  # fmt: skip
    doubled = read_js(out2 / "data" / "index.js")["rows"]["max"][0]
    assert doubled == pytest.approx(2.0 * idx["rows"]["max"][0], rel=1e-3)


def test_refuses_to_overwrite_and_bad_options(harvest) -> None:
    root, _, tok, _ = harvest
    run_dir, out = build(harvest, "topk_sae")
    with pytest.raises(FileExistsError, match="not empty"):
        run(DashboardOptions(run_dir=str(run_dir), out=str(out), progress=False), tokenizer=tok)
    other = root / "not-a-site"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="holds no dashboard"):
        run(
            DashboardOptions(run_dir=str(run_dir), out=str(other), progress=False, overwrite=True),
            tokenizer=tok,
        )
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="out of range"):
        run(
            DashboardOptions(
                run_dir=str(run_dir), out=str(root / "x1"), progress=False, latents="99"
            ),
            tokenizer=tok,
        )
    with pytest.raises(ValueError, match="sample:N"):
        run(
            DashboardOptions(
                run_dir=str(run_dir), out=str(root / "x3"), progress=False, latents="some"
            ),
            tokenizer=tok,
        )
    sampled = root / "x4"
    run(
        DashboardOptions(
            run_dir=str(run_dir), out=str(sampled), progress=False, latents="sample:5"
        ),
        tokenizer=tok,
    )
    ids = read_js(sampled / "data" / "index.js")["rows"]["id"]
    assert len(set(ids)) == 5 and all(0 <= j < 12 for j in ids)
    with pytest.raises(ValueError, match="split must be"):
        DashboardOptions(run_dir="r", out="o", split="test")
    with pytest.raises(ValueError, match="codes returned shape"):
        run(DashboardOptions(run_dir=str(run_dir), out=str(root / "x2"), progress=False),
            tokenizer=tok, codes=lambda x: x)  # fmt: skip


def test_window_tokens_and_quantile_groups() -> None:
    tokens = torch.arange(20, dtype=torch.int32).view(2, 10)  # (C, T); P = 9 with BOS dropped
    got = window_tokens(
        tokens, torch.tensor([0, 9 + 8, -1]), per_context=9, bos_offset=1, context=2
    )
    assert got.tolist() == [[-1, -1, 1, 2, 3], [17, 18, 19, -1, -1], [-1] * 5]
    groups = quantile_groups(10, n_groups=4, per_group=2)
    assert groups == [(0, [1, 0]), (1, [3, 2]), (2, [6, 5]), (3, [8, 7])]
    x = torch.tensor([0.0, 1.23456, -0.0098765, 123456.0, float("nan")])
    got = sig_round(x, 3).tolist()
    assert got[:4] == [0.0, 1.23, -0.00988, 123000.0] and got[4] != got[4]


def test_parallel_site_writing_gives_the_same_files(harvest) -> None:
    _, one = build(harvest, "topk_sae", site_workers=1)
    _, three = build(harvest, "topk_sae", site_workers=3)  # 12 latents / 5 per block: 3 blocks
    files = sorted(p.name for p in (one / "data").iterdir())
    assert files == ["block_00000.js", "block_00001.js", "block_00002.js", "index.js"]
    assert files == sorted(p.name for p in (three / "data").iterdir())
    for name in files:
        assert (one / "data" / name).read_bytes() == (three / "data" / name).read_bytes(), name


def test_neuronpedia_export_holds_the_same_numbers(harvest) -> None:
    root, acts, tok, _ = harvest
    run_dir, out = build(harvest, "topk_sae", neuronpedia=True)
    a, toks = direct_codes(run_dir, acts)
    P = a.shape[0] // toks.shape[0]
    batches = sorted((out / "neuronpedia").glob("batch-*.json"))
    assert [b.name for b in batches] == ["batch-0.json", "batch-1.json", "batch-2.json"]
    feats = [f for b in batches for f in json.loads(b.read_text())["features"]]
    head = json.loads(batches[0].read_text())
    assert head["layer"] == 1 and head["sae_set"] == run_dir.name
    assert [f["feature_index"] for f in feats] == list(range(12))
    for f in feats:
        j = f["feature_index"]
        col = a[:, j]
        assert f["frac_nonzero"] == pytest.approx(float((col > 0).double().mean()), rel=1e-3)
        assert sum(f["freq_hist_data_bar_heights"]) == int((col > 0).sum())
        top = [x for x in f["activations"] if x["bin_min"] == -1]
        want_vals, want_rows = col.topk(min(5, int((col > 0).sum())))
        assert len(top) == len(want_rows)
        for x, v, g in zip(top, want_vals.tolist(), want_rows.tolist(), strict=True):
            i = x["target_index"]
            assert x["target_value"] == pytest.approx(v, rel=1e-3)
            assert x["values"][i] == pytest.approx(v, rel=5e-3)  # 3 significant digits
            assert x["tokens"][i] == tok.decode([int(toks[g // P, g % P + 1])])
        quant = [x for x in f["activations"] if x["bin_min"] != -1]
        assert all(x["bin_contains"] == pytest.approx(0.2) for x in quant)
        assert all(x["bin_min"] <= x["bin_max"] <= float(col.max()) * 1.001 for x in quant)
        assert len(f["pos_str"]) == len(f["pos_values"]) == 10
        assert f["pos_values"][0] >= f["neg_values"][0]
    assert not head["model_id"].startswith("/")  # a model name, not a path of this machine
    with pytest.raises(FileExistsError, match="batch"):
        from implicit_em.dashboard.neuronpedia import export_neuronpedia

        export_neuronpedia(out, out / "neuronpedia")


def test_neuronpedia_model_id_names_the_model_not_the_machine() -> None:
    from implicit_em.dashboard.neuronpedia import model_id_of

    cached = "/root/.cache/implicit_em/models/SmolLM2-135M-Instruct.Q4_1-b179c9523d0e"
    assert model_id_of(cached) == "SmolLM2-135M-Instruct.Q4_1-b179c9523d0e"
    assert model_id_of("./models/gpt2.gguf") == "gpt2.gguf"
    assert model_id_of("~/m/SmolLM2") == "SmolLM2"
    assert model_id_of("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"
    assert model_id_of("smollm2-135m") == "smollm2-135m"


def test_dashboard_reads_only_the_tokenizer_when_no_unembedding_is_needed(harvest, monkeypatch):
    """The decoder-free encoder needs no W_U: the dashboard loads the harvested model's
    tokenizer alone, from a folder that holds no weights (loading the LM there would fail)."""
    import importlib

    import transformers

    # implicit_em.dashboard.run, the module (the package's attribute `run` is the function)
    dash_run = importlib.import_module("implicit_em.dashboard.run")

    root, acts, tok, _ = harvest
    tok_only = root / "tokenizer-only"
    tok.save_pretrained(tok_only)
    manifest = dash_run.load_manifest(acts)
    manifest["identity"]["config"]["model"] = str(tok_only)
    monkeypatch.setattr(dash_run, "load_manifest", lambda _acts: manifest)

    def no_weights(*a, **kw):
        raise AssertionError("the dashboard loaded the language model's weights")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_weights)
    run_dir = root / "encoder"
    if not run_dir.exists():
        make_run(root, acts, "encoder")
    out = root / "site-tokenizer-only"
    run(DashboardOptions(run_dir=str(run_dir), out=str(out), progress=False, top_k=3,
                         n_samples=4, latents="0,1"))  # fmt: skip
    strings = read_js(out / "data" / "block_00000.js")["strings"]
    assert len(strings) >= 5 and set(strings) <= {*WORDS, "<bos>", "<eos>"}  # decoded words
