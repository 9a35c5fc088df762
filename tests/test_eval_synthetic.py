"""Ground-truth harness (issue 18) on the tiny sae-lens synthetic model, CPU only."""

import io
import json

import pytest
import torch

pytest.importorskip("sae_lens")

from implicit_em.eval.synthetic import (  # noqa: E402
    SyntheticEvalOptions,
    build_synthetic_model,
    evaluate_latents,
    rows_from_report,
    run,
    topk_readout,
    write_report,
)
from implicit_em.models import Encoder  # noqa: E402


@pytest.fixture(scope="module")
def synth():
    torch.manual_seed(0)
    return build_synthetic_model("tiny", seed=42)


def test_latents_at_the_true_features_score_mcc_one(synth):
    gt = synth.feature_dict.feature_vectors.detach()  # (N, D)
    enc = Encoder(gt.shape[1], gt.shape[0])
    with torch.no_grad():
        enc.linear.weight.copy_(gt)
        enc.linear.bias.fill_(-2.5)  # a feature fires with magnitude ~4 to 5
    res = evaluate_latents(enc.W.detach(), enc.encode, synth, n_samples=4000)
    assert res["mcc"] > 0.999
    assert res["features_cos_0.9"] == gt.shape[0]
    assert res["uniqueness"] == 1.0
    assert res["f1"] > 0.35  # each latent detects its own feature (superposition noise: < 1)


def test_random_directions_score_like_the_random_control(synth):
    gt = synth.feature_dict.feature_vectors.detach()
    g = torch.Generator().manual_seed(1)
    scores = []
    for _ in range(2):
        dirs = torch.randn(gt.shape, generator=g)
        scores.append(evaluate_latents(dirs, topk_readout(dirs, 3), synth, n_samples=2000))
    assert abs(scores[0]["mcc"] - scores[1]["mcc"]) < 0.03
    assert scores[0]["mcc"] < 0.5
    assert scores[0]["l0"] == pytest.approx(3.0)


def test_run_writes_report_with_controls_and_refuses_to_overwrite(tmp_path):
    opts = SyntheticEvalOptions(recipe="tiny", variants=("encoder", "topk"), steps=4,
                                batch_size=64, eval_samples=1000, log_every=2,
                                out_dir=str(tmp_path))  # fmt: skip
    res = run(opts)
    assert [r["variant"] for r in res["rows"]] == ["encoder", "topk"]
    for row in res["rows"]:
        assert 0 < row["trained"]["mcc"] <= 1
        assert 0 < row["untrained"]["mcc"] <= 1
        assert 0 < row["trained"]["random_at_l0"]["mcc"] <= 1
        assert len(row["history"]) == 2
    assert "mcc_encoder_rows" in res["rows"][1]["trained"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["true_l0"] == pytest.approx(res["true_l0"])
    report = (tmp_path / "report.md").read_text()
    assert "random@L0" in report
    enc_row = next(line for line in report.splitlines() if line.startswith("| encoder |"))
    assert enc_row.split(" | ")[3] == "-"  # no encoder rows to score: "-", not "nan [nan, nan]"
    assert "nan" not in report
    assert "## Verdict" in report and "**Best SAE baseline:** `topk` (SAE)" in report
    with pytest.raises(FileExistsError):
        run(opts)


def _scored(variant, seed, mcc, enc_rows=None):
    trained = {"mcc": mcc, "l0": 24.96, "dead_latents": 7, "f1": 0.6417, "features_covered": 300,
               "features_cos_0.9": 12, "precision": 0.5, "random_at_l0": {"mcc": 0.14824,
               "f1": 0.00626, "l0": 25.0}}  # fmt: skip
    if enc_rows is not None:
        trained["mcc_encoder_rows"] = enc_rows
    return {"variant": variant, "seed": seed, "steps_done": 90, "trained": trained,
            "untrained": {"mcc": 0.14836}, "history": [{"step": 90}]}  # fmt: skip


def test_rows_from_report_reads_back_the_printed_numbers_of_a_one_seed_report(tmp_path):
    opts = {"recipe": "tiny", "steps": 100, "batch_size": 64, "lr": 3e-4, "seeds": (2,),
            "eval_samples": 1000, "plot": False}  # fmt: skip
    rows = [_scored("topk", 2, 0.77856, enc_rows=0.69839), _scored("tied-topk", 2, 0.7549)]
    write_report({"options": opts, "true_l0": 3.2, "rows": rows}, tmp_path, plot=False)
    back = rows_from_report((tmp_path / "report.md").read_text(), "r.md")
    assert [(r["variant"], r["seed"], r["steps"], r["reconstructed_from"]) for r in back] == [
        ("topk", 2, 100, "r.md"), ("tied-topk", 2, 100, "r.md")]  # fmt: skip
    assert back[0]["trained"] == {"mcc": 0.779, "mcc_encoder_rows": 0.698, "l0": 25.0,
                                  "dead_latents": 7, "f1": 0.642, "features_covered": 300,
                                  "features_cos_0.9": 12,
                                  "random_at_l0": {"mcc": 0.148, "f1": 0.006}}  # fmt: skip
    assert back[0]["untrained"] == {"mcc": 0.148}
    assert "mcc_encoder_rows" not in back[1]["trained"]  # "-" in the table: not measured
    # the rows stopped at 90 of the planned 100 steps: the report says so, and reads back
    assert "Steps done: 90 (a time limit stopped training before the planned 100)." in (
        tmp_path / "report.md").read_text()
    assert back[0]["steps_done"] == back[1]["steps_done"] == 90
    full = {"options": opts, "true_l0": 3.2,
            "rows": [{**r, "steps_done": 100} for r in rows]}  # fmt: skip
    write_report(full, tmp_path / "full", plot=False)
    text = (tmp_path / "full" / "report.md").read_text()
    assert "Steps done" not in text and "steps_done" not in rows_from_report(text)[0]
    two = {"options": {**opts, "seeds": (0, 1)}, "true_l0": 3.2,
           "rows": [_scored("topk", 0, 0.7), _scored("topk", 1, 0.8)]}  # fmt: skip
    write_report(two, tmp_path / "two", plot=False)
    with pytest.raises(ValueError, match="only a one-seed report"):
        rows_from_report((tmp_path / "two" / "report.md").read_text())


def test_recipe_help_names_every_recipe():
    from implicit_em.eval.synthetic import RECIPES
    from implicit_em.options import field_docs

    doc = field_docs(SyntheticEvalOptions)["recipe"]
    assert [r for r in RECIPES if r not in doc] == []


def test_unknown_variant_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown variants"):
        SyntheticEvalOptions(variants=("nope",))


def test_init_at_truth_puts_encoder_and_decoder_on_the_features(synth):
    from sae_lens.synthetic import mean_correlation_coefficient

    from implicit_em.eval.synthetic import directions, init_at_truth_
    from implicit_em.models import TopKSAE

    gt = synth.feature_dict.feature_vectors.detach()
    sae = TopKSAE(gt.shape[1], gt.shape[0], k=3)
    init_at_truth_(sae, gt, 2.5)
    dec, enc = directions(sae)
    assert mean_correlation_coefficient(dec, gt) > 0.999
    assert mean_correlation_coefficient(enc, gt) > 0.999
    assert torch.allclose(sae.encoder.bias, torch.full_like(sae.encoder.bias, -2.5))
    with pytest.raises(ValueError, match="K = N"):
        init_at_truth_(TopKSAE(gt.shape[1], 8, k=3), gt, 2.5)


def test_device_shim_builds_the_same_model_as_sae_lens(synth):
    """scripts/synthetic_eval.py --sae-lens-src (the GPU path) loads sae-lens's synthetic
    modules without its package __init__: same recipe and seed -> the same dictionary."""
    import subprocess
    import sys
    from pathlib import Path

    import sae_lens

    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys, torch; sys.path.insert(0, 'scripts');"
        "import synthetic_eval as se;"
        f"se.install_sae_lens_shim({str(Path(sae_lens.__file__).parents[1])!r});"
        "assert 'transformer_lens' not in sys.modules;"
        "from implicit_em.eval.synthetic import build_synthetic_model;"
        "torch.manual_seed(0);"
        "m = build_synthetic_model('tiny', seed=42);"
        "print(float(m.feature_dict.feature_vectors.sum()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    expected = float(synth.feature_dict.feature_vectors.sum())
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(expected, abs=1e-4)


def test_sae_baseline_rows_train_with_their_family_and_keep_the_controls():
    """batchtopk and jumprelu rows (issue 18 baselines): the family's model and objective,
    BatchTopK's threshold learned in training and used in the scored read-out, JumpReLU's
    L0 term in the history; both controls beside each row."""
    from implicit_em.families.batchtopk_sae import BatchTopKSAE
    from implicit_em.families.jumprelu_sae import JumpReLUSAE

    res = run(SyntheticEvalOptions(recipe="tiny", variants=("batchtopk", "jumprelu-0.01-centred"),
                                   steps=6, batch_size=64, eval_samples=1000, log_every=3))  # fmt: skip
    bt, jr = res["rows"]
    assert bt["variant"] == "batchtopk" and jr["variant"] == "jumprelu-0.01-centred"
    for row in res["rows"]:
        assert 0 < row["trained"]["mcc"] <= 1 and 0 < row["untrained"]["mcc"] <= 1
        assert 0 < row["trained"]["random_at_l0"]["mcc"] <= 1
        assert "mcc_encoder_rows" in row["trained"]
    assert set(bt["history"][-1]) >= {"mse", "aux"} and "l0" in jr["history"][-1]
    k = max(1, round(res["true_l0"]))
    assert 0.2 * k < bt["trained"]["l0"] < 5 * k  # the learned threshold, not a dense read-out
    from implicit_em.eval.synthetic import VARIANTS, make_model

    assert isinstance(make_model(VARIANTS["batchtopk"], 48, 256, res["true_l0"]), BatchTopKSAE)
    assert isinstance(make_model(VARIANTS["jumprelu-0.01"], 48, 256, 3.0), JumpReLUSAE)


def test_v2_recipe_matches_the_published_build_settings():
    """SynthSAEBench-16k v2 (SAELens docs/synth_sae_bench.md): children scaled by their
    parent, dictionary bias of norm 0.5, compensated probabilities; v1 settings unchanged."""
    from implicit_em.eval.synthetic import recipe_config

    v2 = recipe_config("synthsaebench-16k-v2")
    assert v2.hierarchy.scale_children_by_parent and v2.hierarchy.compensate_probabilities
    assert v2.bias == 0.5 and (v2.num_features, v2.hidden_dim) == (16384, 768)
    v1 = recipe_config("synthsaebench-16k")
    assert not v1.hierarchy.scale_children_by_parent and v1.bias == 1.0


def test_num_features_overrides_n_and_keeps_d(synth):
    """The overcompleteness parameter: N changes, D and the rest stay; the true L0 the run
    reports is the one measured on the built model, and TopK's k follows it."""
    small = build_synthetic_model("tiny", seed=42, num_features=64)
    assert tuple(small.feature_dict.feature_vectors.shape) == (64, 48)  # tiny: D = 48
    assert tuple(synth.feature_dict.feature_vectors.shape) == (256, 48)
    assert small.cfg.hidden_dim == synth.cfg.hidden_dim == 48
    torch.manual_seed(0)
    _, f = small.sample_with_features(20_000)  # (n, 64)
    l0_64 = float((f > 0).float().sum(dim=1).mean())
    torch.manual_seed(0)
    _, f = synth.sample_with_features(20_000)  # (n, 256)
    assert l0_64 < float((f > 0).float().sum(dim=1).mean())  # fewer Zipf features fire less
    res = run(SyntheticEvalOptions(recipe="tiny", num_features=64, variants=("encoder", "topk"),
                                   steps=2, batch_size=64, eval_samples=2000))  # fmt: skip
    assert res["true_l0"] == pytest.approx(l0_64, rel=0.05)
    topk = res["rows"][1]["trained"]
    assert topk["l0"] == pytest.approx(max(1, round(res["true_l0"])))
    assert res["options"]["num_features"] == 64
    assert res["rows"][0]["trained"]["dead_latents"] <= 64


def test_num_features_below_one_is_one_clear_error():
    with pytest.raises(ValueError, match="num_features must be >= 1"):
        SyntheticEvalOptions(recipe="tiny", num_features=0)


def test_chunked_sampler_serves_each_sample_once_in_order(synth):
    """Batches sliced from chunks are the chunk's rows in order, none reused; a chunk's
    statistics match per-batch sampling (same distribution)."""
    from implicit_em.eval.synthetic import ChunkedSampler

    torch.manual_seed(5)
    ref = synth.sample(100)  # (100, D): the first chunk, drawn directly
    torch.manual_seed(5)
    cs = ChunkedSampler(synth, 100)
    parts = [cs(30), cs(30), cs(30)]  # 90 of the first chunk's 100 rows
    assert torch.equal(torch.cat(parts), ref[:90])
    nxt = cs(30)  # does not fit in the 10 left: a new chunk
    assert nxt.shape == (30, ref.shape[1]) and not torch.equal(nxt[:10], ref[90:])
    with pytest.raises(ValueError, match="chunk"):
        ChunkedSampler(synth, 0)
    torch.manual_seed(6)
    a = torch.cat([ChunkedSampler(synth, 2000)(100) for _ in range(20)])  # 20 chunks' heads
    b = torch.cat([synth.sample(100) for _ in range(20)])
    assert (a.mean(0) - b.mean(0)).abs().max() < 0.35  # same distribution, per dimension


def test_background_sampler_serves_the_chunked_samplers_batches(synth):
    """The thread draws the same chunks in the same order as ChunkedSampler (same RNG state),
    serves them in order, raises a failure of the thread in the caller, and stops."""
    from implicit_em.eval.synthetic import BackgroundSampler, ChunkedSampler

    torch.manual_seed(7)
    cs = ChunkedSampler(synth, 64)
    want = [cs(16) for _ in range(13)]  # 3 chunks and a bit
    torch.manual_seed(7)
    bs = BackgroundSampler(synth, 64, "cpu", depth=2)
    got = [bs(16) for _ in range(13)]
    bs.close()
    assert not bs.thread.is_alive()
    for w, g in zip(want, got, strict=True):
        assert torch.equal(w, g)
    small = BackgroundSampler(synth, 8, "cpu")
    with pytest.raises(ValueError, match="larger than"):
        small(9)
    small.close()

    class Broken:
        feature_dict = synth.feature_dict

        def sample(self, n):
            raise OSError("disk on fire")

    broken = BackgroundSampler(Broken(), 8, "cpu")
    with pytest.raises(RuntimeError, match="background sampler failed.*disk on fire"):
        broken(4)
    broken.close()
    with pytest.raises(ValueError, match="depth"):
        BackgroundSampler(synth, 8, "cpu", depth=0)


def test_mcc_plain_equals_sae_lens(synth):
    from sae_lens.synthetic import mean_correlation_coefficient

    from implicit_em.eval.synthetic import mcc_plain

    gt = synth.feature_dict.feature_vectors.detach()
    g = torch.Generator().manual_seed(3)
    for dirs in (
        torch.randn(40, gt.shape[1], generator=g),
        gt[:40] + 0.3 * torch.randn(40, gt.shape[1], generator=g),
    ):
        assert mcc_plain(dirs, gt) == pytest.approx(
            mean_correlation_coefficient(dirs, gt), abs=1e-6
        )


def test_shared_stream_trains_all_models_in_lockstep_with_worker_mccs(tmp_path):
    """shared_stream: every model at the same step count; the MCCs from worker processes
    equal the in-process ones; the untrained control is scored at init."""
    opts = SyntheticEvalOptions(recipe="tiny", variants=("encoder", "topk-pretrained"),
                                seeds=(0, 1), steps=30, batch_size=64, latents=32, k=4,
                                eval_samples=1000, untrained_samples=500, log_every=10,
                                plot=False, sample_chunk=256, shared_stream=True, lstsq=False,
                                gradient_shares=False, mcc_workers=1)  # fmt: skip
    res = run(opts)
    assert [r["steps_done"] for r in res["rows"]] == [30] * 4
    assert [(r["variant"], r["seed"]) for r in res["rows"]] == [
        ("encoder", 0),
        ("topk-pretrained", 0),
        ("encoder", 1),
        ("topk-pretrained", 1),
    ]
    assert all(isinstance(r["trained"]["mcc"], float) for r in res["rows"])
    tp = res["rows"][1]
    assert tp["trained"]["mcc"] != tp["untrained"]["mcc"]  # pre-trained, switched, trained
    assert [h["step"] for h in tp["history"]] == [10, 15, 20, 30]  # encoder to 15, then TopK
    local = run(SyntheticEvalOptions(**{**opts.__dict__, "mcc_workers": 0}))
    for a, b in zip(res["rows"], local["rows"], strict=True):
        assert a["trained"]["mcc"] == pytest.approx(b["trained"]["mcc"], abs=1e-6)
        assert a["untrained"]["mcc"] == pytest.approx(b["untrained"]["mcc"], abs=1e-6)


FAST_VARIANTS = ("batchtopk", "batchtopk-sl-all", "topk", "tied-topk", "tied-topk-im-3.0",
                 "encoder", "matryoshka", "jumprelu-0.01", "standard-l1-3.0",
                 "encoder-wr-softplus", "encoder-wr-unit-rows")  # fmt: skip


@pytest.mark.parametrize("name", FAST_VARIANTS)
def test_fast_step_equals_the_plain_step(synth, name):
    """fast_step (fused Adam, in-place trainer state; the CUDA graph replays this same code)
    gives the plain step's weights, buffers, dead-latent counters and logged terms after 25
    steps on the same batches, for every family the converged 16k run uses it with."""
    from dataclasses import replace

    from implicit_em.eval.synthetic import VARIANTS, VariantTrainer

    opts = SyntheticEvalOptions(recipe="tiny", steps=25, batch_size=64, latents=32, k=4,
                                lr=3e-3, log_every=10, gradient_shares=False)  # fmt: skip
    torch.manual_seed(3)
    xs = [synth.sample(64) for _ in range(25)]
    out = []
    for fast in (False, True):
        tr = VariantTrainer(VARIANTS[name], synth, replace(opts, fast_step=fast), 0, None)
        for x in xs:
            tr.step(x)
        out.append(tr)
    plain, fast = out
    assert type(fast.opt.defaults.get("fused")) is bool and fast.opt.defaults["fused"]
    sp, sf = plain.model.state_dict(), fast.model.state_dict()
    assert sp.keys() == sf.keys()
    for key in sp:
        assert torch.allclose(sp[key].double(), sf[key].double(), rtol=1e-5, atol=1e-6), key
    init = VariantTrainer(VARIANTS[name], synth, opts, 0, None).model
    moved = max(float((p - q).detach().abs().max())
                for p, q in zip(plain.model.parameters(), init.parameters(), strict=True))  # fmt: skip
    assert moved > 1e-3  # the models trained (the comparison is not between two inits)
    assert torch.equal(plain.since_fired, fast.since_fired)
    assert [h["step"] for h in plain.history] == [h["step"] for h in fast.history] == [10, 20, 25]
    for hp, hf in zip(plain.history, fast.history, strict=True):
        for t, v in hp.items():
            assert hf[t] == pytest.approx(v, rel=1e-4, abs=1e-6), t


def test_fast_step_refuses_what_it_does_not_cover():
    with pytest.raises(ValueError, match="gradient_shares=False"):
        SyntheticEvalOptions(recipe="tiny", fast_step=True)
    with pytest.raises(ValueError, match="seed_variants"):
        SyntheticEvalOptions(recipe="tiny", variants=("topk",), seed_variants=("encoder",))


def test_one_stream_with_seed_variants_trains_later_seeds_on_the_first_stream(tmp_path):
    """one_stream + seed_variants: later seeds only for the named variants, every model on
    the same batches (seed 1's TopK ends where it ends without the BatchTopK beside it; the
    two SAEs draw no random numbers while training, so the stream is the same)."""
    opts = SyntheticEvalOptions(recipe="tiny", variants=("topk", "batchtopk"), seeds=(0, 1),
                                seed_variants=("topk",), one_stream=True, steps=20,
                                batch_size=64, latents=32, k=4, eval_samples=500,
                                untrained_samples=200, log_every=10, plot=False,
                                sample_chunk=128, shared_stream=True, lstsq=False,
                                gradient_shares=False, fast_step=True)  # fmt: skip
    res = run(opts)
    assert [(r["variant"], r["seed"]) for r in res["rows"]] == [
        ("topk", 0), ("batchtopk", 0), ("topk", 1)]  # fmt: skip
    alone = run(SyntheticEvalOptions(**{**opts.__dict__, "seeds": (1,), "variants": ("topk",),
                                        "seed_variants": None}))  # fmt: skip
    # seed 1 alone draws its stream from seed 1; in the run above it used seed 0's stream
    assert alone["rows"][0]["trained"]["mcc"] != res["rows"][2]["trained"]["mcc"]
    first = run(SyntheticEvalOptions(**{**opts.__dict__, "variants": ("topk",),
                                        "seed_variants": None}))  # fmt: skip
    assert first["rows"][1]["trained"]["mcc"] == pytest.approx(res["rows"][2]["trained"]["mcc"])


def test_shared_stream_with_a_background_sampler_trains_the_same_models(synth):
    """sampler_device: the same recipe built again there, drawn by a thread, gives the same
    batches, so the same rows as sampling on `device` (two SAEs: they draw no random numbers
    while training, and on the CPU both samplers share torch's one generator); a model that
    is another draw, or a setting the sampler cannot serve, is refused with one line."""
    from implicit_em.eval.synthetic import background_sampler_model

    opts = SyntheticEvalOptions(recipe="tiny", variants=("topk", "batchtopk"), seeds=(0,),
                                one_stream=True, steps=20, batch_size=64, latents=32, k=4,
                                eval_samples=500, untrained_samples=200, log_every=10,
                                plot=False, sample_chunk=128, shared_stream=True, lstsq=False,
                                gradient_shares=False, fast_step=True)  # fmt: skip
    plain = run(opts)
    background = run(SyntheticEvalOptions(**{**opts.__dict__, "sampler_device": "cpu"}))
    for a, b in zip(plain["rows"], background["rows"], strict=True):
        assert a["trained"]["mcc"] == b["trained"]["mcc"]
        assert a["trained"]["l0"] == b["trained"]["l0"]
    other = SyntheticEvalOptions(**{**opts.__dict__, "model_seed": 7})
    with pytest.raises(ValueError, match="differs from the one on cpu"):
        background_sampler_model(other, synth, "cpu")
    with pytest.raises(ValueError, match="needs one_stream"):
        run(SyntheticEvalOptions(**{**opts.__dict__, "sampler_device": "cpu",
                                    "one_stream": False}))  # fmt: skip


def test_gpu16k_rows_centred_variants_need_plain_step_and_run_with_it(tmp_path):
    """scripts/synthetic_gpu16k_converged.py --role rows: a centred variant without
    --plain-step stops at the argument check with one line (before any model is built); with
    it, the rows run on the CPU (tiny recipe) and the centred row is scored beside its
    controls (docs/eval/synthetic/gpu16k-variants-PLAN.md ran it so on the GPU)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "TQDM_DISABLE": "1"}
    base = [sys.executable, "scripts/synthetic_gpu16k_converged.py", str(tmp_path / "o"),
            "--role", "rows", "--tiny", "--device", "cpu", "--seed-list", "0",
            "--steps", "20", "--variants", "encoder-centred"]  # fmt: skip
    bad = subprocess.run(base, cwd=root, capture_output=True, text=True, env=env)
    assert bad.returncode == 2
    last = bad.stderr.strip().splitlines()[-1]
    assert last.endswith(
        "encoder-centred: centred or pre-trained, which the fast step does not cover; add "
        "--plain-step (or run them in a process of their own with it)"
    )
    assert not (tmp_path / "o").exists()  # stopped before any output
    good = subprocess.run(base + ["--plain-step"], cwd=root, capture_output=True, text=True,
                          env=env)  # fmt: skip
    assert good.returncode == 0, good.stderr[-2000:]
    (row,) = json.loads((tmp_path / "o" / "rows" / "results.json").read_text())["rows"]
    assert row["variant"] == "encoder-centred" and row["steps_done"] == 20
    assert 0 < row["trained"]["mcc"] <= 1 and "random_at_l0" in row["trained"]


def test_gpu16k_rows_take_another_width(tmp_path):
    """scripts/synthetic_gpu16k_converged.py --role rows --latents K: the rows train and score
    at width K (the issue asks K = 4096 and 16384); a width below 1, or --latents outside the
    rows role, or a --reserve outside [0, --budget), stops at the argument check with one
    line."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "TQDM_DISABLE": "1"}
    base = [sys.executable, "scripts/synthetic_gpu16k_converged.py", str(tmp_path / "o"),
            "--role", "rows", "--tiny", "--device", "cpu", "--seed-list", "0",
            "--steps", "20", "--variants", "encoder"]  # fmt: skip
    for extra in (["--latents", "0"], ["--latents", "32", "--role", "check"]):
        bad = subprocess.run(base + extra, cwd=root, capture_output=True, text=True, env=env)
        assert bad.returncode == 2
        last = bad.stderr.strip().splitlines()[-1]
        assert last.endswith("a positive width, for --role rows only")
    for extra in (["--reserve", "-1"], ["--reserve", "600"],  # in [0, --budget), rows only
                  ["--reserve", "30", "--role", "check"]):  # fmt: skip
        bad = subprocess.run(base + extra, cwd=root, capture_output=True, text=True, env=env)
        assert bad.returncode == 2
        assert "seconds kept for scoring, >= 0 and below --budget" in bad.stderr
    # a reserve that leaves no training time stops before training, in one line
    cmd = [*base[:2], str(tmp_path / "n"), *base[3:], "--budget", "100", "--reserve", "99.9"]
    none = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)
    assert none.returncode == 1
    assert none.stderr.strip().splitlines()[-1].endswith("raise --budget or lower --reserve")
    assert not (tmp_path / "n" / "rows" / "results.json").exists()
    assert not (tmp_path / "o").exists()
    good = subprocess.run(base + ["--latents", "32", "--reserve", "90"], cwd=root, capture_output=True, text=True,
                          env=env)  # fmt: skip
    assert good.returncode == 0, good.stderr[-2000:]
    # the log says when training ended and when each row was scored (the run's clock)
    assert "trained 20 steps in " in good.stdout and "s after the run's start" in good.stdout
    assert " [scored by " in good.stdout
    res = json.loads((tmp_path / "o" / "rows" / "results.json").read_text())
    assert res["options"]["latents"] == 32
    (row,) = res["rows"]
    t = row["trained"]  # sae-lens's uniqueness = distinct best-matched features / width
    assert row["steps_done"] == 20
    assert t["uniqueness"] * 32 == pytest.approx(t["features_covered"])


def test_matched_readout_keeps_the_k_largest_codes_or_every_positive_one(synth):
    """`matched_readout`: per sample, the k largest of the variant's codes; a ReLU encoder
    keeps min(k, its positive energies) (fewer than k where fewer are positive), softplus and
    a TopK SAE at its own k keep exactly k, and the tied TopK read-out at its k is unchanged."""
    from implicit_em.eval.options import VARIANTS
    from implicit_em.eval.synthetic import matched_readout, readout
    from implicit_em.models import TopKSAE

    torch.manual_seed(3)
    x = synth.sample(512)  # (B, D)
    d = x.shape[1]
    enc = Encoder(d, 64)
    with torch.no_grad():
        enc.linear.bias.sub_(1.0)  # about half the samples with fewer than k positive energies
    a = enc.encode(x).detach()  # (B, K) energies = the encoder's codes
    codes = matched_readout(enc, VARIANTS["encoder"], 5).encode(x).detach()
    positive = (a > 0).sum(dim=1)  # (B,)
    assert ((codes != 0).sum(dim=1) == positive.clamp(max=5)).all()
    assert (positive < 5).any() and (positive > 5).any()  # both cases are exercised
    kept = codes.sort(dim=1, descending=True).values[:, :5]
    assert torch.equal(kept, a.sort(dim=1, descending=True).values[:, :5])  # the 5 largest a
    soft = Encoder(d, 64, "softplus")
    codes = matched_readout(soft, VARIANTS["encoder-softplus"], 5).encode(x)
    assert ((codes != 0).sum(dim=1) == 5).all()
    sae = TopKSAE(d, 64, 4)
    assert torch.equal(matched_readout(sae, VARIANTS["topk"], 4).encode(x), sae.encode(x))
    tied = Encoder(d, 64)
    tied.tied_k = 4
    v = VARIANTS["tied-topk-im-3.0"]
    assert torch.equal(matched_readout(tied, v, 4).encode(x), readout(tied, v)(x))
    for bad in (0, 65, 2.0):
        with pytest.raises(ValueError):
            matched_readout(enc, VARIANTS["encoder"], bad)


def test_run_with_readout_k_scores_every_row_at_the_matched_l0(tmp_path):
    """readout_k: each row gains "matched" (trained, untrained, random at k), the report a
    matched-L0 table; the native numbers are those of a run without it; a TopK SAE read out
    at its own k scores exactly its native precision / recall / F1."""
    from dataclasses import replace

    opts = SyntheticEvalOptions(recipe="tiny", variants=("encoder", "topk"), steps=4,
                                batch_size=64, eval_samples=1000, log_every=2, k=3,
                                readout_k=3, plot=False, out_dir=str(tmp_path))  # fmt: skip
    res = run(opts)
    plain = run(replace(opts, readout_k=None, out_dir=None))
    for row, ref in zip(res["rows"], plain["rows"], strict=True):
        assert "matched" not in ref
        assert row["trained"] == ref["trained"] and row["untrained"] == ref["untrained"]
        m = row["matched"]
        assert m["k"] == 3
        for part in ("trained", "untrained", "random"):
            assert set(m[part]) == {"l0", "dead_latents", "precision", "recall", "f1",
                                    "feature_f1", "features_f1_0.5", "features_firing"}
            assert 0 < m[part]["l0"] <= 3
        assert m["random"]["l0"] == pytest.approx(3.0)  # the random read-out keeps exactly k
    enc, topk = res["rows"]
    assert enc["trained"]["l0"] > 3 and enc["matched"]["trained"]["l0"] <= 3
    for key in ("precision", "recall", "f1", "l0", "feature_f1", "features_f1_0.5"):
        assert topk["matched"]["trained"][key] == topk["trained"][key]
    assert 0 < enc["matched"]["trained"]["feature_f1"] <= 1
    report = (tmp_path / "report.md").read_text()
    assert "## Read out at k = 3 (matched L0)" in report
    head = next(ln for ln in report.splitlines() if ln.startswith("| variant | seeds | k |"))
    for col in ("F1@k", "precision@k", "recall@k", "F1 untrained@k", "F1 random@k",
                "feature F1@k", "feature F1 untrained@k", "feature F1 random@k"):
        assert f" {col} |" in head
    enc_line = next(ln for ln in report.splitlines() if ln.startswith("| encoder | 1 | 3 |"))
    assert f"{enc['matched']['trained']['f1']:.3f}" in enc_line
    back = rows_from_report(report)  # the first table only
    assert [r["variant"] for r in back] == ["encoder", "topk"]
    with pytest.raises(ValueError, match="readout_k 300 exceeds the 256 latents"):
        run(replace(opts, readout_k=300, out_dir=None))


def test_lse_ref_batch_keeps_the_lse_balance_of_its_batch(synth):
    """encoder-lse-b1024: LSE weight 1024 / B (4 at B = 256, 1/4 at B = 4096), InfoMax weights
    as the plain encoder's; lse_mean with lse_ref_batch is refused."""
    from dataclasses import replace

    from implicit_em.eval.options import VARIANTS, Variant
    from implicit_em.eval.synthetic import VariantTrainer, _loss_config

    assert _loss_config(VARIANTS["encoder"], 4096).lambda_lse == 1.0
    assert _loss_config(VARIANTS["encoder-lse-b1024"], 4096).lambda_lse == 0.25
    assert _loss_config(VARIANTS["encoder-lse-b1024"], 1024).lambda_lse == 1.0
    opts = SyntheticEvalOptions(recipe="tiny", steps=1, batch_size=256, plot=False)
    plain = VariantTrainer(VARIANTS["encoder"], synth, opts, 0, None).weights
    ref = VariantTrainer(VARIANTS["encoder-lse-b1024"], synth, opts, 0, None).weights
    assert ref["lse"] == 4.0 and plain["lse"] == 1.0
    assert ref["var"] == plain["var"] == 64 / 256 and ref["tc"] == plain["tc"]
    with pytest.raises(ValueError, match="lse_ref_batch"):
        _loss_config(replace(Variant(), lse_mean=True, lse_ref_batch=1024), 256)


def test_im_weight_variants_scale_both_infomax_terms_at_any_k(synth):
    """encoder-im0.1 / 0.01 / 0.001: variance and decorrelation at a tenth / a hundredth / a
    thousandth of the plain encoder's reference-K weights (whatever K), the LSE unchanged;
    their from-filters rows differ only in the start."""
    from implicit_em.eval.options import VARIANTS
    from implicit_em.eval.synthetic import VariantTrainer

    opts = SyntheticEvalOptions(recipe="tiny", steps=1, batch_size=256, plot=False)
    plain = VariantTrainer(VARIANTS["encoder"], synth, opts, 0, None).weights
    for f in (0.1, 0.01, 0.001):
        w = VariantTrainer(VARIANTS[f"encoder-im{f}"], synth, opts, 0, None).weights
        assert w["lse"] == plain["lse"] == 1.0
        assert w["var"] == pytest.approx(f * plain["var"], rel=1e-12)
        assert w["tc"] == pytest.approx(f * plain["tc"], rel=1e-12) and w["tc"] > 0
        ff = VARIANTS[f"encoder-im{f}-from-filters-rate"]
        assert ff.filters_at_rate and ff.init_at_filters == 0.0
        assert (ff.lambda_var, ff.lambda_tc) == (f, f)


def test_gpu16k_script_variant_keeps_a_fixed_k_on_the_full_recipe():
    """scripts/synthetic_gpu16k_converged.py `variant`: on the full recipe a variant's own k is
    kept (topk-k214 -> 214, topk-k25 -> 25); under --tiny an explicit k follows the tiny k (6)
    and a variant with no k (the true L0's) stays without one."""
    import importlib.util
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    from implicit_em.eval import synthetic as S

    path = Path(__file__).resolve().parents[1] / "scripts" / "synthetic_gpu16k_converged.py"
    spec = importlib.util.spec_from_file_location("synthetic_gpu16k_converged", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    full = mod.base_options(SimpleNamespace(recipe="synthsaebench-16k-v2", tiny=False,
                                            device="cpu"), S)  # fmt: skip
    tiny = mod.base_options(SimpleNamespace(recipe="synthsaebench-16k-v2", tiny=True,
                                            device="cpu"), S)  # fmt: skip
    assert (full.recipe, full.k, tiny.recipe, tiny.k) == ("synthsaebench-16k-v2", 25, "tiny", 6)
    assert mod.variant(S, "topk-k214", full).k == 214
    assert mod.variant(S, "tied-topk-k214", full).k == 214
    assert mod.variant(S, "topk-k214", tiny).k == 6
    assert mod.variant(S, "topk-k304", full).k == 304 and mod.variant(S, "topk-k304", tiny).k == 6
    assert mod.variant(S, "topk-k25", tiny).k == 6 and mod.variant(S, "topk-k25", full).k == 25
    assert mod.variant(S, "encoder", tiny) == S.VARIANTS["encoder"]  # no k: unchanged
    assert mod.variant(S, "tied-topk", full).k is None


def test_matched_l0_variants_take_the_encoders_l0_as_k():
    """topk-k214 and tied-topk-k214 (docs/eval/synthetic/gpu16k-matched-l0-PLAN.md): the SAEs
    at the decoder-free encoder's L0 on the 16k recipe keep k = 214 whatever the true L0 and
    whatever --k the run sets for the other rows; topk-k304 (gpu16k-k304-PLAN.md, encoder-wr's
    L0) keeps k = 304 and is TopK otherwise."""
    from dataclasses import replace

    from implicit_em.eval.options import VARIANTS, SyntheticEvalOptions
    from implicit_em.eval.synthetic import make_model, with_opts_k

    opts = SyntheticEvalOptions(recipe="tiny", k=25)
    topk = make_model(with_opts_k(VARIANTS["topk-k214"], opts), 16, 512, true_l0=34.3)
    tied = make_model(with_opts_k(VARIANTS["tied-topk-k214"], opts), 16, 512, true_l0=34.3)
    assert topk.k == 214 and tied.tied_k == 214
    assert make_model(with_opts_k(VARIANTS["tied-topk"], opts), 16, 512, 34.3).tied_k == 25
    assert make_model(with_opts_k(VARIANTS["topk-k304"], opts), 16, 512, 34.3).k == 304
    assert VARIANTS["topk-k304"] == replace(VARIANTS["topk-k214"], k=304)


def test_topk_init_does_not_depend_on_k(synth):
    """gpu16k-k304-PLAN.md rule 1: a TopK row's untrained model (`untrained_model`, the start
    its trainer draws) is the same at k = 304, 214 and 25 for each seed, so topk-k304's init
    check takes the committed TopK values of its seed."""
    from implicit_em.eval.options import VARIANTS
    from implicit_em.eval.synthetic import untrained_model

    opts = SyntheticEvalOptions(recipe="tiny", latents=512, k=6)
    for seed in (0, 1, 2):
        ref = untrained_model(VARIANTS["topk-k304"], synth, opts, seed).state_dict()
        for name in ("topk-k214", "topk-k25"):
            got = untrained_model(VARIANTS[name], synth, opts, seed).state_dict()
            assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)


def test_the_im_sweep_rows_and_topk_k12(synth):
    """gpu16k-im-sweep-PLAN.md: encoder-im{0.02,0.03,0.05} scale both InfoMax weights (the LSE
    and everything else as encoder-im0.01), topk-k12 is TopK with k = 12, and each starts from
    its family's init of the seed (the encoder's; TopK's), so the plan's exact init values hold."""
    from dataclasses import replace

    from implicit_em.eval.options import VARIANTS
    from implicit_em.eval.synthetic import untrained_model

    # 0.003, 0.001, 0.0: gpu16k-im-low-PLAN.md; 0.005, 0.007: gpu16k-im-cliff-PLAN.md
    for f in (0.02, 0.03, 0.05, 0.003, 0.001, 0.0, 0.005, 0.007):
        assert VARIANTS[f"encoder-im{f:g}"] == replace(VARIANTS["encoder-im0.01"], lambda_var=f,
                                                       lambda_tc=f)  # fmt: skip
    assert VARIANTS["topk-k12"] == replace(VARIANTS["topk-k304"], k=12)
    opts = SyntheticEvalOptions(recipe="tiny", latents=256, k=6)
    low = ("encoder-im0.003", "encoder-im0.001", "encoder-im0", "encoder-im0.005",
           "encoder-im0.007")
    for seed in (0, 1, 2):
        for ref_name, names in (("encoder", ("encoder-im0.02", "encoder-im0.03", "encoder-im0.05")
                                 + low),
                                ("topk-k25", ("topk-k12",))):  # fmt: skip
            ref = untrained_model(VARIANTS[ref_name], synth, opts, seed).state_dict()
            for name in names:
                got = untrained_model(VARIANTS[name], synth, opts, seed).state_dict()
                assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)


def test_the_width16k_rows_share_their_seeds_init(synth):
    """gpu16k-width16k-4-PLAN.md rule 2: encoder, encoder-wr, tied-topk and tied-topk-im-3.0
    start from one init per seed (the same Encoder drawn after torch.manual_seed(seed); the
    tied rows' b_dec is zeros added by the trainer), so seed 1's committed untrained MCC holds
    for all four."""
    from implicit_em.eval.options import VARIANTS
    from implicit_em.eval.synthetic import VariantTrainer, untrained_model

    opts = SyntheticEvalOptions(recipe="tiny", latents=256, steps=1, batch_size=64)
    names = ("encoder-wr", "tied-topk", "tied-topk-im-3.0")
    for seed in (0, 1, 2):
        ref = untrained_model(VARIANTS["encoder"], synth, opts, seed).state_dict()
        for name in names:
            got = untrained_model(VARIANTS[name], synth, opts, seed).state_dict()
            assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
            tr = VariantTrainer(VARIANTS[name], synth, opts, seed, None)
            assert torch.equal(tr.model.W, ref["linear.weight"])
            if VARIANTS[name].tied_recon:
                assert torch.equal(tr.model.b_dec, torch.zeros_like(tr.model.b_dec))


def test_building_the_model_draws_no_progress_bar(capfd):
    """sae-lens's orthogonalisation bar (show_progress fixed on) is kept out of stderr;
    anything else written there passes through."""
    from implicit_em.eval.synthetic import _WithoutLines

    build_synthetic_model("tiny", seed=7)
    assert "Orthogonalizing" not in capfd.readouterr().err
    out = io.StringIO()
    w = _WithoutLines(out, "Orthogonalizing vectors")
    for chunk in ("\rOrthogonalizing vectors: 1%", "\n", "a warning\n", "\n"):
        w.write(chunk)
    assert out.getvalue() == "a warning\n\n"
