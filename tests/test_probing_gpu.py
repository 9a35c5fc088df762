"""The GPU probing study (`implicit_em.eval.probing_study`, moved from scripts/probing_gpu.py)
end to end at toy size on CPU (the GPU study's code path)."""

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_sparse_probing import ByteTokenizer, tiny_corpora

from implicit_em.eval.verdict import OLD_RAW_ROW, RAW_ROW, ceiling_label

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "probing_gpu.py"


def _script():
    """The study's functions (the script's names before the move)."""
    import implicit_em.eval.probing_study as mod

    return mod


def _tiny_lm():
    """The tests' tiny Llama (3 layers, width 32, byte vocabulary), seeded."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=258, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=3, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    return transformers.LlamaForCausalLM(cfg).eval()


TOY_BASELINE = {"K16": {"verdict": {"best_baseline": "l1", "best_mean_k": 0.5}}}
"""A compare-study baseline at toy size (the gpu2_compare.json shape the compare scripts read)."""


def _same_encoder_init(plan, K: int, seed: int, rows: dict, x: str, y: str) -> bool:
    """Whether the plan rows labelled x and y (encoder family, D = 32) build the same weights
    at init for this K and seed: the twin check of the variant rows that change only the loss."""
    from implicit_em import runs
    from implicit_em.eval.probing_study.plan import run_config

    a, b = (runs.build_model(run_config("encoder", K, 32, plan, seed, row=rows[n]), seed=seed)
            for n in (x, y))  # fmt: skip
    return all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def _check_against_gpu3(mod, plan, gpu3: dict, meta, arrays, tmp_path, res: dict):
    """(lines, word) of gpu6's check_repro: `res` (a toy run of a later plan) against gpu3's
    plan run at the same toy size (K = 16, seed 0), as the gpu6-gpu8 plans check their
    re-trained rows against gpu3's."""
    plan3 = replace(plan, rows=tuple(gpu3["rows"]), Ks=(16,), seeds=(0,))
    res3 = mod.main_run(plan3, meta, arrays, _tiny_lm(), tmp_path / "out3", "cpu")
    return _load(PLAN6 / "check_repro.py", "check_repro6").check(res, res3)


def test_prepare_and_run_on_a_tiny_llama(tmp_path):
    mod = _script()
    plan = mod.Plan(**mod.TINY)
    meta = mod.prepare(plan, tiny_corpora(), ByteTokenizer(), tmp_path / "data")
    meta, arrays = mod.load_data(tmp_path / "data")
    assert arrays["train_ctx"].shape[1] == plan.ctx_len and (arrays["train_ctx"][:, 0] == 256).all()
    assert arrays["held_ctx"].shape == (plan.held_contexts, plan.ctx_len)
    lm = _tiny_lm()
    res = mod.main_run(plan, meta, arrays, lm, tmp_path / "out", "cpu")
    assert res["blocks_done"] == ["K16-s0", "K32-s0", "K16-s1", "K32-s1"]
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["l0"] == res["l0"]
    # the L0 rule: every k-family takes k = round(L0 of the same block's encoder)
    for block in res["blocks_done"]:
        K, s = block.split("-")
        enc = res["l0"][f"encoder-{K}-{s}"]
        k = int(min(int(K[1:]), max(1, round(enc))))
        for fam in ("topk", "batchtopk", "matryoshka"):
            assert f"{fam}-{K}-k{k}-{s}" in res["l0"]
        assert 0.5 * k <= res["l0"][f"topk-{K}-k{k}-{s}"] <= k  # TopK keeps k (ties at 0 aside)
        ce = res["downstream"][block]
        assert ce["orig"]["kl"] == pytest.approx(0.0, abs=1e-6)
        r = ce[f"topk-{K}-k{k}-{s} | own decoder"]
        assert r["ce_loss_recovered"] == pytest.approx(
            (ce["zero"]["ce"] - r["ce"]) / (ce["zero"]["ce"] - ce["orig"]["ce"])
        )
        assert f"encoder-{K}-{s} | post-hoc least squares" in ce
        assert any(key.startswith("random dirs") for key in ce)
    probes = res["probing"]["saebench"]
    # every row probed on every task: raw + 2 blocks-worth of (trained, untrained, random)
    assert len(probes) == 1 + 4 * 6 * 3
    # a fresh run names the raw row the k-sparse baseline (never "(ceiling)"), and only that
    # row carries the full probe on all D dimensions (the ceiling)
    assert res["kinds"][RAW_ROW] == "raw" and OLD_RAW_ROW not in res["kinds"]
    assert "(ceiling)" not in (tmp_path / "out" / "results.json").read_text()
    raw = probes[RAW_ROW]
    assert set(raw) == {t["name"] for t in meta["tasks"]}
    assert np.mean([r["full"] for r in raw.values()]) > 0.8  # byte statistics separate corpora
    assert all(r["full"] is None for n, row in probes.items() if n != RAW_ROW for r in row.values())
    assert all(set(r["k"]) == {"1", "2"} for row in probes.values() for r in row.values())


def test_probe_fit_selects_by_rank_and_matches_the_library(tmp_path):
    """fit_task on pre-ranked columns equals sparse_probing.k_sparse_probe on all columns."""
    from implicit_em.eval.sparse_probing import k_sparse_probe, mean_difference_ranking

    mod = _script()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    z = rng.normal(size=(120, 40)) + np.outer(y, rng.normal(size=40)) * 0.3
    tr, te = slice(0, 80), slice(80, 120)
    order = mean_difference_ranking(z[tr], y[tr])[:5]
    got = mod.fit_task(z[tr][:, order], y[tr], z[te][:, order], y[te], (1, 2, 5), None)
    want = k_sparse_probe(z[tr], y[tr], z[te], y[te], (1, 2, 5), full=False)
    assert got["saebench"]["k"] == {str(k): v for k, v in want["k"].items()}


def test_rows_tied_models_sweep_and_responsibilities_on_a_tiny_llama(tmp_path):
    """Plan.rows (issue 18, gpu2): the tied TopK models at the encoder's L0, a JumpReLU / L1
    sweep row without its untrained twin, the encoder also read out as r = softmax(-a); two
    processes' results merge into one report."""
    mod = _script()
    rows = (
        {"family": "encoder", "untrained": False},
        {"family": "topk_sae", "untrained": False},
        {"family": "tied_topk_sae"},
        {"family": "tied_topk_hybrid", "label": "tied-topk-im-3.0",
         "loss": {"lambda_lse": 1 / 3, "lambda_var": 1 / 3, "lambda_tc": 1 / 3}},
        {"family": "jumprelu_sae", "label": "jumprelu(l0_coef=0.01)", "loss": {"l0_coef": 0.01},
         "untrained": False},
        {"family": "standard_sae", "label": "l1(l1_c=2.0)", "l1_c": 2.0, "untrained": False},
    )  # fmt: skip
    tiny = {**mod.TINY, "seeds": (0,)}
    plan = mod.Plan(**tiny, rows=rows, resp_families=("encoder",))
    mod.prepare(plan, tiny_corpora(), ByteTokenizer(), tmp_path / "data")
    meta, arrays = mod.load_data(tmp_path / "data")
    lm = _tiny_lm()
    parts = []
    for K in (16, 32):
        p = replace(plan, Ks=(K,))
        parts.append(mod.main_run(p, meta, arrays, lm, tmp_path / f"out{K}", "cpu"))
    res = mod.merge_results(parts)
    assert res["blocks_done"] == ["K16-s0", "K32-s0"] and res["plan"]["Ks"] == [16, 32]
    probes = res["probing"]["saebench"]
    for K in (16, 32):
        k = int(min(K, max(1, round(res["l0"][f"encoder-K{K}-s0"]))))
        tied, hyb = f"tied-topk-K{K}-k{k}-s0", f"tied-topk-im-3.0-K{K}-k{k}-s0"
        for name in (tied, hyb):
            assert 0.5 * k <= res["l0"][name] <= k  # TopK keeps k (ties at 0 aside)
            assert f"{name} (untrained)" in probes
            assert f"{name} | own decoder" in res["downstream"][f"K{K}-s0"]
            assert res["rows"][name]["config"]["model"]["centre"] is True
        assert res["rows"][hyb]["config"]["loss"]["lambda_lse"] == pytest.approx(1 / 3)
        assert res["rows"][hyb]["config"]["loss"]["tc_probes"] == plan.tc_probes
        for name in (f"encoder-K{K}-s0", f"jumprelu(l0_coef=0.01)-K{K}-s0",
                     f"l1(l1_c=2.0)-K{K}-s0"):  # fmt: skip
            assert name in probes and f"{name} (untrained)" not in probes
            assert any(r.startswith("random dirs") and r.endswith(f"({name})") for r in probes)
        assert res["rows"][f"l1(l1_c=2.0)-K{K}-s0"]["config"]["loss"]["l1_weight"] == (
            pytest.approx(2.0 * K / 32)
        )
        assert f"encoder[r]-K{K}-s0" in probes and f"encoder[r]-K{K}-s0 (untrained)" in probes
    summ = mod.summarize(res)
    assert {"encoder[r]-K16", "tied-topk-im-3.0-K32", "jumprelu(l0_coef=0.01)-K16",
            "random dirs @ L0 of jumprelu(l0_coef=0.01)-K16"} <= set(summ["probing"])  # fmt: skip
    old = mod.main_run(mod.Plan(**tiny), meta, arrays, lm, tmp_path / "old", "cpu")
    md, nums = mod.compare(res, old)
    for K in (16, 32):
        v = nums[f"K{K}"]["verdict"]
        assert set(v["models"]) == {"tied-topk", "tied-topk-im-3.0"}
        assert v["best_baseline"] in nums[f"K{K}"]["rows"]
        for mv in v["models"].values():
            assert mv["target_met"] == (mv["probe_met"] and mv["ce_met"] and mv["dead_met"])
            assert mv["ce_gap"] == pytest.approx(mv["ce"] - v["topk_ce"])
        assert set(v["matched_sweep"]) == {"jumprelu", "l1"}
    assert "tied-topk-im-3.0" in md and "batchtopk-K16 (gpu.md)" in md
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "t.md").write_text(mod.render(res, summ))
    mod.plot(res, summ, tmp_path / "rep" / "p.png")
    assert (tmp_path / "rep" / "p.png").stat().st_size > 0


def test_merge_results_keeps_the_first_entry_and_the_files_order():
    """merge_results: a name in two parts keeps the first part's entry, and later parts'
    names come after the earlier ones (seed 2 of a second file after seeds 0-1), so the
    report's per-seed lists (dead latents) read in seed order."""
    mod = _script()

    def part(seeds, dead, raw):
        names = [f"l1-K8-s{s}" for s in seeds]
        return {"plan": {"Ks": [8]}, "dead_fraction": dict(zip(names, dead, strict=True)),
                "l0": {n: 1.0 for n in names}, "blocks_done": [f"K8-s{s}" for s in seeds],
                "not_run": [],
                "probing": {"saebench": {RAW_ROW: raw, **{n: {} for n in names}}}}  # fmt: skip

    res = mod.merge_results([part([0, 1], [0.25, 0.5], "first"), part([2], [0.125], "second")])
    assert list(res["dead_fraction"]) == ["l1-K8-s0", "l1-K8-s1", "l1-K8-s2"]
    assert list(res["dead_fraction"].values()) == [0.25, 0.5, 0.125]
    assert list(res["probing"]["saebench"]) == [RAW_ROW, "l1-K8-s0", "l1-K8-s1", "l1-K8-s2"]
    assert res["probing"]["saebench"][RAW_ROW] == "first"
    assert res["blocks_done"] == ["K8-s0", "K8-s1", "K8-s2"]


PLAN3 = Path(__file__).resolve().parents[1] / "docs" / "eval" / "probing" / "gpu3"


def test_gpu3_plan_runs_every_row_and_compare3_reads_it(tmp_path):
    """The committed gpu3 plan (docs/eval/probing/gpu3_plan.md) at toy size: every variant row
    trains and is scored with its controls, pre-training splits the one pass in two, and the
    report / compare3 commands accept the results."""
    import subprocess

    mod = _script()
    tiny = {**mod.TINY, "seeds": (0, 1)}
    mod.prepare(mod.Plan(**tiny), tiny_corpora(), ByteTokenizer(), tmp_path / "data")
    meta, arrays = mod.load_data(tmp_path / "data")
    lm = _tiny_lm()
    files = []
    for K, name in ((16, "plan_K4096.json"), (32, "plan_K16384.json")):
        over = json.loads((PLAN3 / name).read_text())
        over["Ks"] = [K]
        plan = replace(mod.Plan(**tiny), **{k: tuple(v) if isinstance(v, list) else v
                                               for k, v in over.items()})  # fmt: skip
        res = mod.main_run(plan, meta, arrays, lm, tmp_path / f"out{K}", "cpu")
        assert not res.get("errors"), res.get("errors")
        files.append(str(tmp_path / f"out{K}" / "results.json"))
        probes = res["probing"]["saebench"]
        for s in (0, 1):
            k = int(min(K, max(1, round(res["l0"][f"encoder-K{K}-s{s}"]))))
            rows = res["rows"]
            cfgs = {
                n.rsplit("-s", 1)[0]: r["config"] for n, r in rows.items() if n.endswith(f"-s{s}")
            }
            assert cfgs[f"encoder-K{K}"]["model"]["centre"] is False  # the reference, as gpu.md
            assert cfgs[f"encoder-wr-K{K}"]["loss"]["lambda_wr"] == 1.0
            assert cfgs[f"encoder-softplus-K{K}"]["model"]["activation"] == "softplus"
            assert cfgs[f"encoder-unit-rows-K{K}"]["model"]["unit_norm_rows"] is True
            assert cfgs[f"encoder-wr-centred-K{K}"]["model"]["centre"] is True
            assert res["l0"][f"encoder-softplus-K{K}-s{s}"] == K  # softplus never hits zero
            # the L0 rule reads the first encoder row only (the softplus row's L0 is K)
            for lab in ("topk", "topk-pretrained", "topk-half"):
                assert f"{lab}-K{K}-k{k}-s{s}" in res["l0"]
            n = res["tokens"]["train"]
            half = (n - round(n * 0.5)) // plan.batch_size
            pre = res["train"][f"topk-pretrained-K{K}-k{k}-s{s}"]
            assert [st["steps"] for st in pre["stages"]] == [
                round(n * 0.5) // plan.batch_size,
                half,
            ]
            assert [st["steps"] for st in res["train"][f"topk-half-K{K}-k{k}-s{s}"]["stages"]] == [
                half
            ]
            assert res["train"][f"encoder-K{K}-s{s}"]["steps"] == n // plan.batch_size
            for lab in (
                "encoder",
                "encoder-softplus",
                "encoder-unit-rows",
                "encoder-centred",
                "topk",
            ):
                name = f"{lab}-K{K}" + (f"-k{k}" if lab == "topk" else "") + f"-s{s}"
                assert f"{name} (untrained)" in probes
            for lab in ("encoder-wr", "encoder-wr-centred"):
                assert f"{lab}-K{K}-s{s} (untrained)" not in probes
            # twin_mean: the centred row's twin sees the trained mean (with x_mean = 0 it would
            # be the reference encoder's twin exactly: same init)
            twins = [
                res["l0"][f"{lab}-K{K}-s{s} (untrained)"] for lab in ("encoder", "encoder-centred")
            ]
            assert twins[0] != twins[1]
            ce = res["downstream"][f"K{K}-s{s}"]
            assert f"topk-pretrained-K{K}-k{k}-s{s} | own decoder" in ce
            assert f"encoder-centred-K{K}-s{s} (untrained) | post-hoc least squares" in ce
    out = tmp_path / "rep"
    out.mkdir()
    script = [sys.executable, str(SCRIPT)]
    subprocess.run([*script, "report", "--results", *files, "--out", str(out)], check=True)
    baseline = json.dumps({"K16": {"verdict": {"best_baseline": "l1", "best_mean_k": 0.5}}})
    (tmp_path / "b.json").write_text(baseline)
    subprocess.run([*script, "compare3", "--results", *files, "--baseline",
                    str(tmp_path / "b.json"), "--out", str(out)], check=True)  # fmt: skip
    nums = json.loads((out / "gpu3_compare.json").read_text())
    for K in (16, 32):
        rows = nums[f"K{K}"]["rows"]
        assert set(rows) == {"encoder", "topk", "encoder-wr", "encoder-softplus",
                             "encoder-unit-rows", "encoder-centred", "encoder-wr-centred",
                             "topk-pretrained", "topk-half"}  # fmt: skip
        assert rows["encoder-wr"]["twin_mean_k"] == rows["encoder"]["twin_mean_k"]
        assert {lab for lab, v in rows.items() if "target" in v} == {
            "encoder",
            "encoder-wr",
            "encoder-softplus",
            "encoder-unit-rows",
            "encoder-centred",
            "encoder-wr-centred",
            "topk-pretrained",
        }  # decoder-free and hybrid rows only
        assert rows["topk-pretrained"]["kind"] == "hybrid" and rows["topk-half"]["kind"] == "SAE"
        for v in rows.values():
            assert "target" not in v or v["target_met"] == all(v["target"].values())
            lo, hi = v["mean_k_range"]
            assert lo <= v["mean_k"] <= hi
        assert nums[f"K{K}"]["pretrain"]["topk-pretrained"]["control"] == "topk-half"
    assert nums["K16"]["best_baseline_mean_k"] >= 0.5
    assert "encoder-wr-centred" in (out / "gpu3_compare.md").read_text()
    again = subprocess.run([*script, "compare3", "--results", *files, "--baseline",
                            str(tmp_path / "b.json"), "--out", str(out)], capture_output=True)  # fmt: skip
    assert again.returncode == 2 and b"exists" in again.stderr  # nothing silently overwritten


def test_cli_runs_the_gpu3_plan_end_to_end(tmp_path, monkeypatch, capsys):
    """`implicit-em eval-suite probing-study prepare / run / report / compare3` on the committed
    gpu3 plans at toy size (the tests' tiny Llama, byte tokenizer and corpora in place of
    SmolLM2 and the offline corpora): the report holds the tables with the controls beside
    each row, the plot and the verdict, and the two outputs agree on the numbers."""
    import implicit_em.data.lm
    import implicit_em.data.lm.corpus
    from implicit_em.cli import main

    lm = _tiny_lm()
    monkeypatch.setattr(implicit_em.data.lm, "load_lm",
                        lambda model, progress=True: (lm, ByteTokenizer(), {"model_id": model}))  # fmt: skip
    monkeypatch.setattr(implicit_em.data.lm.corpus, "load_corpus", lambda c: tiny_corpora()[c])
    mod = _script()
    tiny = json.dumps({**mod.TINY, "seeds": [0, 1]})
    study = ["eval-suite", "probing-study"]
    data = tmp_path / "data"
    assert (
        main([*study, "prepare", "--model", "tiny", "--out", str(data), "--plan-json", tiny]) == 0
    )
    assert json.loads(capsys.readouterr().out)["plan"]["seeds"] == [0, 1]
    files = []
    for K, name in ((16, "plan_K4096.json"), (32, "plan_K16384.json")):
        plan = tmp_path / f"plan{K}.json"
        plan.write_text(json.dumps({**json.loads((PLAN3 / name).read_text()), "Ks": [K]}))
        out = tmp_path / f"out{K}"
        assert main([*study, "run", "--data", str(data), "--model", "tiny", "--out", str(out),
                     "--device", "cpu", "--workers", "0", "--threads", "1", "--seeds", "0", "1",
                     "--plan-json", f"@{plan}"]) == 0  # fmt: skip
        files.append(str(out / "results.json"))
        res = json.loads((out / "results.json").read_text())
        assert res["blocks_done"] == [f"K{K}-s0", f"K{K}-s1"] and not res.get("errors")
        assert res["plan"]["rows"] == json.loads(plan.read_text())["rows"]
    rep = tmp_path / "rep"
    assert main([*study, "report", "--results", *files, "--out", str(rep)]) == 0
    tables = (rep / "gpu_tables.md").read_text()
    assert "### Probing accuracy, mean over datasets: SAEBench probe" in tables
    assert "### Downstream loss" in tables
    for row in ("| encoder-wr-K16 | trained | 2 |", "| encoder-K16 (untrained) | untrained | 2 |",
                "| random dirs @ L0 of encoder-K16 | random | 2 |",
                f"| {RAW_ROW} | raw | 1 | - |", f"| {ceiling_label(32)} | raw | 1 | - |"):  # fmt: skip
        assert row in tables, row
    assert OLD_RAW_ROW not in tables
    png = (rep / "gpu_probing_vs_k.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    summ = json.loads((rep / "gpu_summary.json").read_text())
    base = tmp_path / "b.json"
    base.write_text(json.dumps({"K16": {"verdict": {"best_baseline": "l1", "best_mean_k": 0.5}}}))
    capsys.readouterr()
    assert main([*study, "compare3", "--results", *files, "--baseline", str(base),
                 "--out", str(rep)]) == 0  # fmt: skip
    verdict = (rep / "gpu3_compare.md").read_text()
    assert capsys.readouterr().out.strip() == verdict.strip()
    assert "### K = 16" in verdict and "### K = 32" in verdict
    assert "- Best decoder-free row: **" in verdict and "target met: **" in verdict
    nums = json.loads((rep / "gpu3_compare.json").read_text())
    ks = summ["ks"]
    for K in (16, 32):
        for lab, v in nums[f"K{K}"]["rows"].items():
            # the verdict's probing number is the report's: mean over seeds of the mean over k
            acc = summ["probing"][f"{lab}-K{K}"]["acc"]["saebench"]
            assert v["mean_k"] == pytest.approx(np.mean([np.mean(acc[k]) for k in ks]), abs=1e-12)
            assert v["mean_k_range"][0] <= v["mean_k"] <= v["mean_k_range"][1]
    # nothing silently overwritten; a file that is not this study's results: one line, exit 2
    assert main([*study, "report", "--results", *files, "--out", str(rep)]) == 2
    assert "gpu_tables.md exists" in capsys.readouterr().err
    assert main([*study, "report", "--results", *files, "--out", str(rep), "--overwrite"]) == 0
    assert (rep / "gpu_tables.md").read_text() == tables
    capsys.readouterr()
    assert main([*study, "compare3", "--results", str(base), "--baseline", str(base),
                 "--out", str(tmp_path / "x")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a results.json of the probing study" in err


PLAN4 = Path(__file__).resolve().parents[1] / "docs" / "eval" / "probing" / "gpu4"


def test_gpu4_plan_runs_every_row_and_compare3_reads_it(tmp_path):
    """The committed gpu4 plan (docs/eval/probing/gpu4_plan.md) at toy size, both K in one
    process as on the device: the centred SAEs beside their uncentred twins (same k, same
    init), the weight-redundancy encoder and its TopK read-out at the block's k (training
    unchanged: the same loss history as encoder-wr), its untrained init read out at the same
    k; report and compare3 accept the results; an unknown read-out stops the run first."""
    import subprocess

    mod = _script()
    tiny = {**mod.TINY, "seeds": (0, 1)}
    mod.prepare(mod.Plan(**tiny), tiny_corpora(), ByteTokenizer(), tmp_path / "data")
    meta, arrays = mod.load_data(tmp_path / "data")
    lm = _tiny_lm()
    over = json.loads((PLAN4 / "plan.json").read_text())
    assert over["Ks"] == [4096, 16384]
    over["Ks"] = [16, 32]
    plan = replace(mod.Plan(**tiny), **mod.plan_fields(over))
    res = mod.main_run(plan, meta, arrays, lm, tmp_path / "out", "cpu")
    assert not res.get("errors"), res.get("errors")
    assert res["blocks_done"] == ["K16-s0", "K32-s0", "K16-s1", "K32-s1"]
    probes = res["probing"]["saebench"]
    for block in res["blocks_done"]:
        K, s = (int(block.split("-")[0][1:]), int(block.split("-s")[1]))
        k = int(min(K, max(1, round(res["l0"][f"encoder-K{K}-s{s}"]))))
        cfgs = {n.rsplit("-s", 1)[0]: r["config"] for n, r in res["rows"].items()
                if n.endswith(f"-s{s}") and f"-K{K}" in n}  # fmt: skip
        for fam in ("topk", "batchtopk", "matryoshka"):
            c, u = f"{fam}-K{K}-k{k}", f"{fam}-uncentred-K{K}-k{k}"
            assert cfgs[c]["model"]["centre"] is True and cfgs[u]["model"]["centre"] is False
            assert cfgs[c]["model"]["k"] == cfgs[u]["model"]["k"] == k
            for n in (c, u):
                assert f"{n}-s{s} (untrained)" in probes
                assert res["downstream"][block][f"{n}-s{s} | own decoder"]["kind"] == "trained"
                for tag in ("", " (untrained)"):  # dead latents of the init too
                    assert 0.0 <= res["dead_fraction"][f"{n}-s{s}{tag}"] <= 1.0
        wr, wrk = (
            res["train"][f"encoder-wr-K{K}-s{s}"],
            res["train"][f"encoder-wr-topk-K{K}-k{k}-s{s}"],
        )
        assert wr["last"] == wrk["last"] and wr["steps"] == wrk["steps"]  # same training
        assert (
            res["train"][f"encoder-topk-K{K}-k{k}-s{s}"]["last"]
            == res["train"][f"encoder-K{K}-s{s}"]["last"]
        )
        for n in (f"encoder-wr-topk-K{K}-k{k}-s{s}", f"encoder-topk-K{K}-k{k}-s{s}"):
            assert res["l0"][n] <= k + 1e-9  # random directions at the row's own L0, as every row
            assert f"random dirs @ L0 {max(1, round(res['l0'][n]))} ({n})" in res["l0"]
            assert res["rows"][n]["row"]["readout"] == "topk"
        assert res["l0"][f"encoder-wr-topk-K{K}-k{k}-s{s} (untrained)"] <= k + 1e-9
        assert res["l0"][f"encoder-wr-topk-K{K}-k{k}-s{s}"] <= res["l0"][f"encoder-wr-K{K}-s{s}"]
        assert f"encoder-topk-K{K}-k{k}-s{s} (untrained)" not in probes  # twin_of wr-topk
        assert f"encoder-wr-K{K}-s{s} (untrained)" not in probes  # twin_of encoder
        ce = res["downstream"][block]
        assert f"encoder-wr-topk-K{K}-k{k}-s{s} | post-hoc least squares" in ce
        assert f"encoder-wr-topk-K{K}-k{k}-s{s} (untrained) | post-hoc least squares" in ce
        assert f"encoder-wr-topk-K{K}-k{k}-s{s} | W^T, scalar + offset" not in ce
    out = tmp_path / "rep"
    out.mkdir()
    script = [sys.executable, str(SCRIPT)]
    files = [str(tmp_path / "out" / "results.json")]
    subprocess.run([*script, "report", "--results", *files, "--out", str(out)], check=True)
    (tmp_path / "b.json").write_text(json.dumps({"K16": {"verdict": {"best_baseline": "l1",
                                                                     "best_mean_k": 0.5}}}))  # fmt: skip
    subprocess.run([*script, "compare3", "--results", *files, "--baseline",
                    str(tmp_path / "b.json"), "--out", str(out)], check=True)  # fmt: skip
    nums = json.loads((out / "gpu3_compare.json").read_text())
    subprocess.run([*script, "compare4", "--results", *files, "--baseline",
                    str(tmp_path / "b.json"), "--out", str(out)], check=True)  # fmt: skip
    n4 = json.loads((out / "gpu4_compare.json").read_text())
    for K in (16, 32):
        assert set(n4[f"K{K}"]["centring"]) == {"topk", "batchtopk", "matryoshka"}
        assert n4[f"K{K}"]["wr"]["row"] == "encoder-wr-topk"
        assert n4[f"K{K}"]["wr"]["readout_control"] == "encoder-topk"
    assert n4["K16"]["baseline_candidates"][0]["matched"] is False  # b.json has no L0 for it
    labels = {r.get("label") or mod.SHORT[r["family"]] for r in over["rows"]}
    for K in (16, 32):
        rows = nums[f"K{K}"]["rows"]
        assert set(rows) == labels
        assert rows["encoder-topk"]["twin_mean_k"] == rows["encoder-wr-topk"]["twin_mean_k"]
        assert rows["encoder-wr"]["twin_mean_k"] == rows["encoder"]["twin_mean_k"]
        assert rows["topk-uncentred"]["kind"] == "SAE" and "target" not in rows["topk-uncentred"]
    bad = replace(plan, rows=({"family": "encoder", "readout": "top-k"},))
    with pytest.raises(ValueError, match="readout 'top-k' is not known"):
        mod.main_run(bad, meta, arrays, lm, tmp_path / "bad", "cpu")
    assert not (tmp_path / "bad").exists()


def test_gpu4_centred_and_uncentred_twins_start_from_the_same_weights():
    """gpu4_plan.md: each SAE row and its uncentred twin differ only in the centring (the
    buffer draws no random numbers), so their inits, and the inits' controls, are equal."""
    from implicit_em import runs

    mod = _script()
    rows = json.loads((PLAN4 / "plan.json").read_text())["rows"]
    plan = mod.Plan(**mod.TINY)
    for fam in ("topk_sae", "batchtopk_sae", "matryoshka_batchtopk_sae"):
        (c,) = [r for r in rows if r["family"] == fam and "model" not in r]
        (u,) = [r for r in rows if r["family"] == fam and r.get("model") == {"centre": False}]
        a = runs.build_model(mod.run_config(fam, 32, 16, plan, 1, k=8, row=c), seed=1)
        b = runs.build_model(mod.run_config(fam, 32, 16, plan, 1, k=8, row=u), seed=1)
        assert a.centre and not b.centre
        sa, sb = a.state_dict(), b.state_dict()
        assert set(sa) - set(sb) == {"x_mean", "x_mean_rows", "x_mean_batches"}
        assert all(torch.equal(sa[k], sb[k]) for k in sb)


PROBING = Path(__file__).resolve().parents[1] / "docs" / "eval" / "probing"


def test_every_committed_plan_parses_with_its_rows_checked():
    """The plan files of gpu2-gpu8 and the plans stored in every committed
    results.json (gpu's run 1 and gpu5's included) pass `read_plan_json` / `plan_fields` with the row
    check (`plan.check_rows`), and give a Plan with the same rows."""
    mod = _script()
    from implicit_em.eval.probing_study.plan import read_plan_json

    files = sorted(PROBING.glob("gpu*/plan*.json"))
    assert {f.parent.name for f in files} == {"gpu2", "gpu3", "gpu4", "gpu5", "gpu6", "gpu7",
                                              "gpu8"}  # fmt: skip
    assert len(files) == 11
    for f in files:
        over = read_plan_json(f"@{f}")
        plan = mod.Plan(**mod.plan_fields(over, str(f)))
        assert [dict(r) for r in plan.rows] == over["rows"]
    stored = sorted(PROBING.glob("gpu*/results*.json"))
    assert {f.parent.name for f in stored} == {"gpu", "gpu2", "gpu3", "gpu4", "gpu5"}
    for f in stored:
        plan = json.loads(f.read_text())["plan"]
        assert mod.Plan(**mod.plan_fields(plan, str(f))).Ks == tuple(plan["Ks"])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"family": "encoder", "label": "encoder-wr-topk", "read_out": "topk"},
            "plan file P: row 2 (encoder-wr-topk) has unknown key(s) read_out: choose from family, "
            "label, loss, model, l1_c, untrained, pretrain, pretrain_fraction, readout, twin_of",
        ),
        (
            {"family": "encoder", "readout": "top-k"},
            "plan file P: row 2 (encoder): readout 'top-k' is not known: use \"topk\"",
        ),
        ({"family": "encoder", "readout": None, "label": "e2"}, None),
        ({"family": "encodr"}, "plan file P: row 2 has family 'encodr': choose from encoder, "),
        (
            {"family": "encoder", "loss": {"lambda_w": 1.0}},
            "plan file P: row 2 (encoder): loss sets unknown LossConfig field(s) lambda_w: choose "
            "from ",
        ),
        (
            {"family": "encoder", "model": {"centred": True}},
            "row 2 (encoder): model sets unknown ModelConfig field(s) centred",
        ),
        ({"family": "encoder", "model": [1]}, "row 2 (encoder): model must be a JSON object"),
        (
            {"family": "encoder", "untrained": "false"},
            "row 2 (encoder): untrained must be true or false, got 'false'",
        ),
        (
            {"family": "encoder", "label": "x", "twin_of": "encoder-wr"},
            "row 2 (x): twin_of 'encoder-wr' is not the label of another row: choose from "
            "encoder, x",
        ),
        ({"family": "encoder", "label": "x", "twin_of": "encoder"}, None),
        (
            {"family": "topk_sae", "pretrain": {"family": "encoder", "readout": "topk"}},
            "row 2 (topk): pretrain has unknown key(s) readout: choose from family, label, loss, "
            "model, l1_c",
        ),
        ({"family": "topk_sae", "pretrain": "all"}, 'pretrain must be a row dict or "none"'),
        (
            {"family": "topk_sae", "pretrain": "none", "pretrain_fraction": 1.5},
            "pretrain_fraction must be a number in (0, 1), got 1.5",
        ),
        ("encoder", "row 2 must be a JSON object with a \"family\", got 'encoder'"),
        (
            {"family": "encoder", "label": "e2", "readout": "topk", "weights_of": "encoder"},
            None,
        ),
        (
            {"family": "encoder", "label": "e2", "weights_of": "e3"},
            "row 2 (e2): weights_of 'e3' is not the label of an earlier row: choose from encoder",
        ),
        (
            {
                "family": "encoder",
                "label": "e2",
                "loss": {"lambda_wr": 1.0},
                "weights_of": "encoder",
            },
            "row 2 (e2): weights_of 'encoder': this row differs from it in loss; a row takes",
        ),
        (
            {"family": "topk_sae", "weights_of": "encoder"},
            "row 2 (topk): weights_of 'encoder': this row differs from it in family",
        ),
        ({"family": "topk_sae", "label": "t2", "k_of": "encoder"}, None),
        ({"family": "encoder", "label": "e2", "readout": "topk", "k_of": "encoder"}, None),
        (
            {"family": "topk_sae", "label": "t2", "k_of": "encoder-im0.01"},
            "row 2 (t2): k_of 'encoder-im0.01' is not the label of an earlier row: choose from "
            "encoder",
        ),
        (
            {"family": "encoder", "label": "e2", "k_of": "encoder"},
            "row 2 (e2): k_of sets k, which family 'encoder' does not use: give it to a family "
            "that uses k",
        ),
    ],
)
def test_plan_rows_are_checked_when_the_plan_is_read(tmp_path, row, message):
    """A bad row of a plan file (an unknown key such as "read_out", an unknown read-out,
    family, loss or model field, a twin_of naming no row, ...) stops `read_plan_json` with one
    line naming the row, the bad key or value and the allowed ones; before this check an
    unknown key was ignored ({"read_out": "topk"} trained a plain encoder) and a bad read-out
    stopped the run only after the language model had loaded."""
    from implicit_em.eval.probing_study.plan import read_plan_json

    f = tmp_path / "P"
    f.write_text(json.dumps({"rows": [{"family": "encoder"}, row]}))
    if message is None:
        assert read_plan_json(f"@{f}")["rows"][1] == row
        return
    with pytest.raises(ValueError) as e:
        read_plan_json(f"@{f}")
    text = str(e.value).replace(str(tmp_path) + "/", "")
    assert message in text and "\n" not in text, text
    with pytest.raises(ValueError, match="rows must be a list of row dicts"):
        read_plan_json('{"rows": {"family": "encoder"}}')


def test_w3_word_covers_every_case():
    """gpu4_plan.md rule W3: three words covering every pair of apart() outcomes, and W1's
    "L0 not matched" in place of them."""
    from implicit_em.eval.probing_study.compare import W3_WORDS, w3_word

    for ro in ("above", "level", "below"):
        for enc in ("level", "below"):
            assert w3_word(enc, ro) == "it was the L0"
        assert w3_word("above", ro) == ("survives the L0 match" if ro == "above"
                                        else "the read-out, not wr")  # fmt: skip
        assert w3_word("above", ro, l0_matched=False) == W3_WORDS["unmatched"]


def test_compare4_on_the_committed_gpu4_results(tmp_path, capsys):
    """`eval-suite probing-study compare4` on gpu4's committed results writes the committed
    gpu4_compare.md / .json, with the rules' outcomes of docs/eval/probing/gpu4.md."""
    from implicit_em.cli import main

    root = Path(__file__).resolve().parents[1]
    argv = ["eval-suite", "probing-study", "compare4", "--results",
            str(PLAN4 / "results_r4.json"), "--baseline",
            str(root / "docs/eval/probing/gpu2/gpu2_compare.json"), "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    nums = json.loads((tmp_path / "gpu4_compare.json").read_text())
    assert nums == json.loads((PLAN4 / "gpu4_compare.json").read_text())
    assert (tmp_path / "gpu4_compare.md").read_text() == (PLAN4 / "gpu4_compare.md").read_text()
    for K in ("K4096", "K16384"):
        e = nums[K]
        for fam, c in e["centring"].items():  # C1: every uncentred seed has more dead
            assert c["c1"] == "centring removes dead latents", (K, fam)
            assert max(c["dead"]) < min(c["dead_uncentred"]) and c["c2_vs_uncentred"]
        assert (
            e["centring"]["topk"]["dead"] == [0, 0, 0]
            and not e["centring"]["topk"]["c2_vs_centred"]
        )
        assert e["rows"]["encoder"]["dead"] == [0, 0, 0]
        w = e["wr"]
        assert w["w1_matched_l0"] and w["w2_beats_controls"] is False
        assert w["w3"] == "it was the L0" and w["w3_probe_vs_encoder"] == "level"
        assert not any(t["met"] for t in w["w4"].values())
    assert nums["K4096"]["centring"]["matryoshka"]["dead"] == [4, 2, 7]
    assert nums["K4096"]["centring"]["matryoshka"]["c2_vs_centred"]
    assert nums["K16384"]["centring"]["batchtopk"]["dead"] == [115, 153, 133]
    assert nums["K16384"]["centring"]["topk"]["dead_uncentred"] == [1885, 1821, 1887]
    assert nums["K4096"]["best_baseline"] == "l1(l1_c=2)-K4096 (gpu2's best baseline)"
    assert nums["K16384"]["best_baseline"] == "topk-uncentred (this run)"
    assert nums["K16384"]["best_baseline_mean_k"] == pytest.approx(0.7550, abs=5e-5)
    t = nums["K16384"]["wr"]["w4"]["encoder-wr-topk"]["target"]
    assert t == {"matched_l0": True, "probe_met": False, "ce_met": True, "dead_met": True,
                 "beats_controls": False}  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 2  # nothing silently overwritten
    assert "gpu4_compare.md exists" in capsys.readouterr().err


@pytest.mark.parametrize("epochs", [0, -1, 1.5, True, "2", None])
def test_bad_epochs_are_refused_when_the_plan_is_read(tmp_path, epochs):
    """Plan.epochs (gpu5_plan.md) must be a whole number >= 1: one line, before any work."""
    from implicit_em.eval.probing_study.plan import read_plan_json

    f = tmp_path / "P"
    f.write_text(json.dumps({"epochs": epochs}))
    with pytest.raises(ValueError) as e:
        read_plan_json(f"@{f}")
    assert str(e.value).startswith(f"plan file {f}: epochs must be a whole number of passes >= 1")
    assert str(e.value).endswith(f"got {epochs!r}") and "\n" not in str(e.value)
    f.write_text(json.dumps({"epochs": 3}))
    assert read_plan_json(f"@{f}") == {"epochs": 3}
    mod = _script()
    with pytest.raises(ValueError, match="epochs must be a whole number"):  # a Plan built in code
        mod.main_run(mod.Plan(**{**mod.TINY, "epochs": 0}), {}, {}, None, tmp_path / "o", "cpu")
    assert not (tmp_path / "o").exists()


PLAN5 = PROBING / "gpu5"


def test_gpu5_plan_trains_two_passes_and_its_read_outs_reuse_the_trained_weights(tmp_path):
    """The committed gpu5 plan (docs/eval/probing/gpu5_plan.md) at toy size: every trained row
    takes 2 * (N // B) steps (N // B for a plan without "epochs", the one pass of gpu.md -
    gpu4), and the read-out rows that take "weights_of" an earlier row give exactly the numbers
    of gpu4's way, training that row again with the same seed (L0, dead latents, every probe,
    every splice, the last training record)."""
    mod = _script()
    from implicit_em.eval.probing_study.plan import read_plan_json

    tiny = {**mod.TINY, "seeds": (0,)}
    mod.prepare(mod.Plan(**tiny), tiny_corpora(), ByteTokenizer(), tmp_path / "data")
    meta, arrays = mod.load_data(tmp_path / "data")
    plans = {n: read_plan_json(f"@{PLAN5 / f'plan_{n}.json'}") for n in ("K16384", "K4096")}
    assert plans["K16384"] == {**plans["K4096"], "Ks": [16384]} and plans["K4096"]["Ks"] == [4096]
    over = {**plans["K16384"], "Ks": [32], "seeds": [0]}
    assert over["epochs"] == 2
    plan = replace(mod.Plan(**tiny), **mod.plan_fields(over))
    res = mod.main_run(plan, meta, arrays, _tiny_lm(), tmp_path / "out", "cpu")
    assert not res.get("errors"), res.get("errors")
    n, B = res["tokens"]["train"], plan.batch_size
    k = int(round(res["l0"]["encoder-K32-s0"]))
    wr, wrk, ek = "encoder-wr-K32-s0", f"encoder-wr-topk-K32-k{k}-s0", f"encoder-topk-K32-k{k}-s0"
    assert {r["steps"] for r in res["train"].values()} == {2 * (n // B)}
    assert (
        res["train"][wrk]["weights_of"] == "encoder-wr"
        and res["train"][ek]["weights_of"] == "encoder"
    )
    assert res["train"][wrk]["last"] == res["train"][wr]["last"]
    assert res["rows"][wrk]["config"]["training"]["epochs"] == 2
    # gpu4's way: the read-out rows trained again from the same seed
    again = tuple({k: v for k, v in r.items() if k != "weights_of"} for r in over["rows"])
    res2 = mod.main_run(replace(plan, rows=again), meta, arrays, _tiny_lm(), tmp_path / "o2", "cpu")
    assert "weights_of" not in res2["train"][wrk]
    for part in ("l0", "dead_fraction", "kinds"):
        assert res[part] == res2[part]
    assert res["probing"] == res2["probing"] and res["downstream"] == res2["downstream"]
    assert {n: r["last"] for n, r in res["train"].items()} == {
        n: r["last"] for n, r in res2["train"].items()
    }
    one = mod.main_run(replace(plan, epochs=1, rows=plan.rows[:2]), meta, arrays, _tiny_lm(),
                       tmp_path / "o1", "cpu")  # fmt: skip
    assert {r["steps"] for r in one["train"].values()} == {n // B}
    assert one["l0"]["encoder-K32-s0"] != res["l0"]["encoder-K32-s0"]  # the second pass counts


def test_gpu5_reproduction_check_reads_gpu4_results():
    """docs/eval/probing/gpu5/check_repro.py: gpu4's own rows of the repro plan (encoder and
    topk, seed 0) against gpu4 are bit-identical; an L0 off by 1 is not comparable; a probe
    accuracy off by 1e-6 is comparable, not bit-identical."""
    import copy
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_repro", PLAN5 / "check_repro.py")
    cr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cr)
    old = json.loads((PLAN4 / "results_r4.json").read_text())
    new = copy.deepcopy(old)
    keep = ("encoder-K4096-s0", "topk-K4096-k81-s0", "encoder-K16384-s0", "topk-K16384-k380-s0")
    new["kinds"] = {n: v for n, v in old["kinds"].items() if v != "trained" or n in keep}
    lines, word = cr.check(new, old)
    assert word == "bit-identical", lines
    assert sum(x.startswith("rule 1:") for x in lines) == 4 and lines[-1].endswith("equal gpu4's")
    assert "rule 3: raw residual: 108 of 108" in lines[-1]
    renamed = copy.deepcopy(new)  # a run of this session names the raw row RAW_ROW
    for rows in renamed["probing"].values():
        rows[RAW_ROW] = rows.pop(OLD_RAW_ROW)
    lines, word = cr.check(renamed, old)
    assert word == "bit-identical" and "rule 3: raw residual: 108 of 108" in lines[-1], lines
    new["probing"]["saebench"]["topk-K16384-k380-s0"]["sotu_party"]["k"]["1"] += 1e-6
    assert cr.check(new, old)[1] == "comparable"
    new["l0"]["encoder-K4096-s0"] += 1.0
    lines, word = cr.check(new, old)
    assert word == "NOT comparable" and any("NOT within 0.5" in x for x in lines)


def test_gpu5_compare_reads_gpu4_by_the_same_words():
    """docs/eval/probing/gpu5/compare5.py (gpu5_plan.md's verdict rules as code): gpu4 against
    itself changes no word; dead TopK latents in every seed turn "no win" into a "win" for the
    encoder, and the change is listed."""
    import copy
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare5", PLAN5 / "compare5.py")
    c5 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(c5)
    old = json.loads((PLAN4 / "results_r4.json").read_text())
    md, nums = c5.compare5(old, old)
    assert nums["changes"] == {"4096": {}, "16384": {}} and "- none" in md
    r = nums["gpu4"]["16384"]
    assert set(r["rows"]) == set(c5.ROWS) and len(c5.words(r)) == 33
    assert r["dead"]["encoder vs matryoshka"] == "win"  # 2,617-2,722 dead at K = 16384
    for K in ("4096", "16384"):  # R4 = gpu4's W3, as compare4 reads it (gpu4_compare.json)
        assert nums["gpu4"][K]["w3"] == "it was the L0"
    assert r["dead"]["encoder vs topk"] == "no win (the SAE has 0 dead in some seed)"
    assert (
        r["rows"]["encoder"]["margin_over_controls"] < 0 < r["rows"]["encoder-wr"]["minus_ceiling"]
    )
    new = copy.deepcopy(old)
    for n in new["dead_fraction"]:
        if n.startswith("topk-K16384") and not n.endswith("(untrained)"):
            new["dead_fraction"][n] = 0.01
    changes = c5.compare5(new, old)[1]["changes"]
    assert changes == {"4096": {}, "16384": {"dead latents, encoder vs topk": [
        "no win (the SAE has 0 dead in some seed)", "win"]}}  # fmt: skip


def test_reports_read_an_old_named_raw_row_as_the_k_sparse_baseline_beside_the_ceiling():
    """The committed results name the raw residual's k-sparse row OLD_RAW_ROW ("(ceiling)"):
    `render` and `compare` show it as RAW_ROW, never as a ceiling, and show as the ceiling the
    probe on all 576 dimensions (0.853 with the SAEBench probe, 0.856 standardized), which is
    above the k-sparse row at every k and above the best trained row's mean over k."""
    mod = _script()
    res = mod.merge_results([json.loads((PLAN4 / "results_r4.json").read_text())])
    assert res["kinds"][OLD_RAW_ROW] == "raw"  # the committed name, read as it is
    summ = mod.summarize(res)
    assert RAW_ROW in summ["probing"] and OLD_RAW_ROW not in summ["probing"]
    tables = mod.render(res, summ)
    assert OLD_RAW_ROW not in tables
    ceiling = ceiling_label(576)
    lines = tables.splitlines()
    raw_rows = [x for x in lines if x.startswith(f"| {RAW_ROW} |")]
    ceil_rows = [x for x in lines if x.startswith(f"| {ceiling} |")]
    assert raw_rows == ["| raw residual (k-sparse baseline) | raw | 1 | - | 0.677 | 0.695 | "
                        "0.777 | 0.812 | 0.825 |",
                        "| raw residual (k-sparse baseline) | raw | 1 | - | 0.677 | 0.696 | "
                        "0.778 | 0.813 | 0.826 |"]  # fmt: skip
    assert ceil_rows == [f"| {ceiling} | raw | 1 | - |" + " 0.853 |" * 5,
                         f"| {ceiling} | raw | 1 | - |" + " 0.856 |" * 5]  # fmt: skip
    assert [x for x in lines if "(ceiling)" in x and x.startswith("|")] == ceil_rows
    # compare (gpu2's verdict) on the committed run 2 and run 1 files, both with the old name
    g2 = PROBING / "gpu2"
    new = mod.merge_results([json.loads((g2 / f).read_text()) for f in (
        "results_r4.json", "results_r16a.json", "results_r16b.json", "results_r4s2.json")])  # fmt: skip
    old = mod.merge_results([json.loads((PROBING / "gpu" / "results.json").read_text())])
    md, nums = mod.compare(new, old)
    assert OLD_RAW_ROW not in md
    for K in ("K4096", "K16384"):
        rows = nums[K]["rows"]
        assert OLD_RAW_ROW not in rows and rows[RAW_ROW]["mean_k"] == pytest.approx(0.757, abs=5e-4)
        c = nums[K]["ceiling"]
        assert c["row"] == ceiling and c["full"] == pytest.approx(0.853, abs=5e-4)
        assert c["full"] > max(r["mean_k"] for r in rows.values())
    assert md.count(f"| {ceiling} | run 2 | - | - |" + " 0.853 |" * 6) == 2
    assert md.count(f"| {RAW_ROW} | run 2 | - | - | 0.677 |") == 2


def test_ceiling_values_are_the_raw_rows_finite_full_probes():
    """`report.ceiling_values`: the raw row's full probes of one probe variant, NaNs dropped;
    [] without a raw row or without a full probe (the plot and the tables read it alike)."""
    from implicit_em.eval.probing_study.report import ceiling_values

    acc = {"saebench": {"full": [0.85, float("nan"), 0.86]}, "standardized": {"full": []}}
    summ = {"probing": {RAW_ROW: {"acc": acc}, "encoder-K64": {"acc": {}}}}
    assert ceiling_values(summ) == [0.85, 0.86]
    assert ceiling_values(summ, "standardized") == []
    assert ceiling_values({"probing": {"encoder-K64": {"acc": {}}}}) == []


PLAN6 = PROBING / "gpu6"


def _load(path: Path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def test_gpu6_plan_runs_every_row_repeats_gpu3_and_compare6_reads_it(tmp_path):
    """The committed gpu6 plan (docs/eval/probing/gpu6_plan.md) at toy size: the two wr
    combinations train with both options, take their base row's untrained twin (the same init:
    wr changes only the loss), and get random directions at their own L0; the five rows shared
    with gpu3's plan sit at gpu3's positions, so run 6 repeats them bit for bit, controls
    included (check_repro.py on a toy gpu3 run); compare6.py reads the results by rules
    (a)-(c), and its file has what the cross-study verdict reads of a compare3 file."""
    from implicit_em.eval.probing_study.plan import label_of, read_plan_json
    from implicit_em.eval.summary import load_studies

    mod = _script()
    tiny = {**mod.TINY, "seeds": (0, 1)}
    mod.prepare(mod.Plan(**tiny), tiny_corpora(), ByteTokenizer(), tmp_path / "data")
    meta, arrays = mod.load_data(tmp_path / "data")
    over = read_plan_json(f"@{PLAN6 / 'plan.json'}")
    assert over["Ks"] == [4096, 16384] and over["seeds"] == [0, 1, 2]
    gpu3 = read_plan_json(f"@{PLAN3 / 'plan_K4096.json'}")
    assert over["rows"][:5] == gpu3["rows"][:5] and over["twin_mean"] == gpu3["twin_mean"]
    plan = replace(mod.Plan(**tiny), **mod.plan_fields({**over, "Ks": [16, 32], "seeds": [0, 1]}))
    res = mod.main_run(plan, meta, arrays, _tiny_lm(), tmp_path / "out", "cpu")
    assert not res.get("errors"), res.get("errors")
    assert res["blocks_done"] == ["K16-s0", "K32-s0", "K16-s1", "K32-s1"]
    probes = res["probing"]["saebench"]
    for K in (16, 32):
        for s in (0, 1):
            cfg = {n.rsplit("-s", 1)[0]: r["config"] for n, r in res["rows"].items()
                   if n.endswith(f"-s{s}")}  # fmt: skip
            ws, wu = cfg[f"encoder-wr-softplus-K{K}"], cfg[f"encoder-wr-unit-rows-K{K}"]
            assert ws["loss"]["lambda_wr"] == wu["loss"]["lambda_wr"] == 1.0
            assert ws["model"]["activation"] == "softplus" and ws["model"]["centre"] is False
            assert wu["model"]["unit_norm_rows"] is True and wu["model"]["activation"] == "relu"
            assert res["l0"][f"encoder-wr-softplus-K{K}-s{s}"] == K  # softplus: never zero
            for combo, base in (("encoder-wr-softplus", "encoder-softplus"),
                                ("encoder-wr-unit-rows", "encoder-unit-rows")):  # fmt: skip
                name = f"{combo}-K{K}-s{s}"
                assert (
                    f"{name} (untrained)" not in probes
                    and f"{base}-K{K}-s{s} (untrained)" in probes
                )
                assert any(r.startswith("random dirs @ L0 ") and r.endswith(f"({name})")
                           for r in probes)  # fmt: skip
                assert res["train"][name]["steps"] == res["tokens"]["train"] // plan.batch_size
                # the base's twin is the combination's: the same weights at init
                rows = {label: row for row in plan.rows if (label := row.get("label"))}
                assert _same_encoder_init(plan, K, s, rows, combo, base)
    # gpu3's plan at the same toy size: its first five rows and their controls, bit for bit
    lines, word = _check_against_gpu3(mod, plan, gpu3, meta, arrays, tmp_path, res)
    assert word == "bit-identical", lines
    assert lines[0].startswith("5 trained rows in both runs (23 new)")
    assert "encoder-softplus" in lines[1] and "encoder-wr-softplus" not in lines[1]
    # compare6: rules (a)-(c) per combination and K; the compare3 shape the verdict reads
    c6 = _load(PLAN6 / "compare6.py", "compare6")
    base = TOY_BASELINE
    md, nums = c6.compare6(res, base)
    for K in (16, 32):
        e = nums[f"K{K}"]
        assert set(e["rows"]) == {label_of(r) for r in plan.rows}
        assert {"encoder-wr-softplus", "encoder-wr-unit-rows", "encoder-wr vs encoder"} == set(
            e["combinations"]
        )
        for combo, v in e["combinations"].items():
            if combo not in c6.COMBINATIONS:
                continue
            assert v["measured"] and v["seeds"] == 2
            assert v["vs_wr"]["probing"] in ("above", "level", "below")
            assert v["vs_base"]["ce"] in ("above", "level", "below")
            assert v["beats_controls"] == (v["vs_twin"] == v["vs_random"] == "above")
            assert v["twin_probing"] == e["rows"][c6.COMBINATIONS[combo]]["twin_mean_k"]
            assert v["probing"] == pytest.approx(e["rows"][combo]["mean_k"])
            assert len(v["words"]) == 4 and v["words"][-1].endswith(("synthetic model",
                                                                     "its base)"))  # fmt: skip
    assert "| encoder-wr-softplus | 2 | 16.0 |" in md
    path = tmp_path / "gpu6_compare.json"
    path.write_text(json.dumps(nums))
    studies = load_studies(None, None, str(path))  # read as a compare3 file: "K<latents>" + rows
    assert studies["probing3"][1]["K16"]["rows"]["encoder-wr-unit-rows"]["kind"] == "decoder-free"


def test_gpu6_reproduction_check_reads_gpu3_results():
    """docs/eval/probing/gpu6/check_repro.py on gpu3's committed results: gpu3's five rows of
    run 6 against gpu3 are bit-identical (rows of gpu3 not in run 6 are left out, rows of run 6
    not in gpu3 are new); an L0 off by 1 is not comparable; a probe accuracy off by 1e-6 is
    comparable, not bit-identical."""
    import copy

    cr = _load(PLAN6 / "check_repro.py", "check_repro6")
    mod = _script()
    old = mod.merge_results([json.loads((PLAN3 / f).read_text()) for f in (
        "results_r4.json", "results_r16a.json", "results_r16b.json")])  # fmt: skip
    shared = ("encoder", "topk", "encoder-wr", "encoder-softplus", "encoder-unit-rows")
    new = copy.deepcopy(old)
    new["kinds"] = {n: v for n, v in old["kinds"].items()
                    if v != "trained" or n.split("-K")[0] in shared}  # fmt: skip
    new["kinds"]["encoder-wr-softplus-K4096-s0"] = "trained"  # a row gpu3 does not have
    lines, word = cr.check(new, old)
    assert word == "bit-identical", lines
    assert lines[0].startswith("30 trained rows in both runs (1 new)")
    assert "encoder-centred" not in lines[1] and "encoder-unit-rows" in lines[1]
    assert sum(x.startswith("rule 1:") for x in lines) == 12  # encoder, topk: 2 K x 3 seeds
    assert sum(x.startswith("moved: ") and "| " not in x for x in lines) == 18
    assert lines[-1] == "rule 3: raw residual: 108 of 108 probe accuracies equal gpu3's"
    new["probing"]["saebench"]["encoder-softplus-K16384-s2"]["sotu_party"]["k"]["1"] += 1e-6
    assert cr.check(new, old)[1] == "comparable"
    new["l0"]["encoder-unit-rows-K4096-s1"] += 1.0  # a variant row moved: reported, not a rule
    lines, word = cr.check(new, old)
    assert (
        word == "comparable"
        and "moved: encoder-unit-rows-K4096-s1: L0 93.83 (gpu3 92.83, +1.00)" in lines
    ), [x for x in lines if "unit-rows-K4096-s1" in x]
    new["l0"]["encoder-K4096-s1"] += 1.0
    lines, word = cr.check(new, old)
    assert word == "NOT comparable" and any("NOT within 0.5" in x for x in lines)
    moved = copy.deepcopy(old)  # TopK trained at another k: named apart, said, not checked
    moved["kinds"] = {n.replace("topk-K4096-k82-s1", "topk-K4096-k83-s1"): v
                      for n, v in new["kinds"].items()}  # fmt: skip
    moved["l0"]["topk-K4096-k83-s1"] = 83.0
    lines = cr.check(moved, old)[0]
    assert (
        "rules 1-2: 1 reference row(s) not in gpu3's results under their name (a TopK row's "
        "name carries its k, which moves with the encoder's L0), not checked: topk-K4096-k83-s1"
        in lines
    )


def test_repro_numbers_keys_every_part_and_reads_the_old_raw_name_as_the_new():
    """`probing_study.repro.numbers`: one flat entry per number of the rows `mine` accepts; the
    model's own and the zero splice always; a None L0 left out; the raw residual keyed by its
    current name (RAW_ROW) when the file names it OLD_RAW_ROW."""
    from implicit_em.eval.probing_study.repro import numbers

    ce = {"ce": 1.0, "kl": 0.5, "ce_loss_recovered": 0.9}
    res = {"l0": {"a-K8-s0": 3.0, "b-K8-s0": 4.0, "a-K8-s1": None},
           "dead_fraction": {"a-K8-s0": 0.0},
           "downstream": {"K8": {"orig": ce, "zero": ce, "a-K8-s0 | own": ce, "b-K8-s0 | own": ce}},
           "probing": {"saebench": {OLD_RAW_ROW: {"t": {"k": {"1": 0.6}, "full": 0.8}},
                                    "b-K8-s0": {"t": {"k": {"1": 0.7}, "full": None}}}},
           "train": {"a-K8-s0": {"last": {"loss": 2.0}}, "b-K8-s0": {"last": {}}}}  # fmt: skip
    got = numbers(res, lambda k: k.startswith("a-") or k == RAW_ROW)
    assert got == {
        "l0 :: a-K8-s0": 3.0, "dead_fraction :: a-K8-s0": 0.0,
        **{f"ce :: K8 :: {s} :: {m}": v for s in ("orig", "zero", "a-K8-s0 | own")
           for m, v in ce.items()},
        f"probe :: saebench :: {RAW_ROW} :: t :: 1": 0.6,
        f"probe :: saebench :: {RAW_ROW} :: t :: full": 0.8,
        "train :: a-K8-s0 :: loss": 2.0}  # fmt: skip


def test_repro_raw_rule_and_word():
    """`repro.raw_probes_equal` counts only the raw residual's probe entries, within tol;
    `repro.repro_word`: failed rules -> NOT comparable whatever is equal; passed rules ->
    bit-identical only when every shared number is equal."""
    from implicit_em.eval.probing_study.repro import raw_probes_equal, repro_word

    raw = f"probe :: saebench :: {RAW_ROW} :: t :: "
    a = {raw + "1": 0.6, raw + "2": 0.7, "probe :: saebench :: enc :: t :: 1": 0.5}
    b = {raw + "1": 0.6, raw + "2": 0.71, "probe :: saebench :: enc :: t :: 1": 0.9}
    assert raw_probes_equal(a, b, sorted(a), 0.0) == (1, 2)
    assert raw_probes_equal(a, b, sorted(a), 0.02) == (2, 2)
    assert raw_probes_equal(a, b, [], 0.0) == (0, 0)
    assert repro_word(False, 3, 3) == "NOT comparable"
    assert repro_word(True, 3, 3) == "bit-identical"
    assert repro_word(True, 2, 3) == "comparable"


PLAN7 = PROBING / "gpu7"
PLAN2 = PROBING / "gpu2"


def test_gpu7_plan_runs_every_row_repeats_gpu2_and_compare7_reads_it(tmp_path):
    """The committed gpu7 plan (docs/eval/probing/gpu7_plan.md) at toy size: the hybrid with wr
    trains with lambda_wr = 1/3 (the harness's lambda_wr = 1 in the family's units) and the
    hybrid's other lambdas, takes tied-topk's untrained twin (the same init: wr changes only the
    loss) and gets random directions at its own L0; the four rows shared with gpu2's plan sit at
    gpu2's positions, so run 7 repeats them bit for bit, controls included (check_repro.py on a
    toy run of gpu2's plan; on the CPU the hybrid takes the plain formulas in both); compare7.py
    reads the results by rules (a)-(d), and its file has what the cross-study verdict reads of
    a compare3 file."""
    from implicit_em import runs
    from implicit_em.eval.probing_study.plan import label_of, read_plan_json, run_config
    from implicit_em.eval.summary import load_studies
    from implicit_em.families import family

    mod = _script()
    tiny = {**mod.TINY, "seeds": (0, 1)}
    mod.prepare(mod.Plan(**tiny), tiny_corpora(), ByteTokenizer(), tmp_path / "data")
    meta, arrays = mod.load_data(tmp_path / "data")
    over = read_plan_json(f"@{PLAN7 / 'plan.json'}")
    assert over["Ks"] == [4096, 16384] and over["seeds"] == [0, 1, 2]
    gpu2 = read_plan_json(f"@{PLAN2 / 'plan_K4096.json'}")
    assert gpu2["rows"][:4] == read_plan_json(f"@{PLAN2 / 'plan_K16384.json'}")["rows"][:4]
    # gpu2's first four rows entry for entry; twin_of only tells compare3 the hybrid's control
    assert [{k: v for k, v in r.items() if k != "twin_of"} for r in over["rows"][:4]] == (
        gpu2["rows"][:4]
    )
    hyb, wr = over["rows"][3], over["rows"][4]
    assert wr["loss"] == {**hyb["loss"], "lambda_wr": 1 / 3} and wr["family"] == hyb["family"]
    assert hyb["twin_of"] == wr["twin_of"] == "tied-topk" and wr["untrained"] is False
    assert over["twin_mean"] is False and over["resp_families"] == []
    plan = replace(mod.Plan(**tiny), **mod.plan_fields({**over, "Ks": [16, 32], "seeds": [0, 1]}))
    res = mod.main_run(plan, meta, arrays, _tiny_lm(), tmp_path / "out", "cpu")
    assert not res.get("errors"), res.get("errors")
    assert res["blocks_done"] == ["K16-s0", "K32-s0", "K16-s1", "K32-s1"]
    probes = res["probing"]["saebench"]
    rows = {label_of(r): r for r in plan.rows}
    fam = family("tied_topk_hybrid")
    for K in (16, 32):
        for s in (0, 1):
            k = int(min(K, max(1, round(res["l0"][f"encoder-K{K}-s{s}"]))))
            names = {lab: f"{lab}-K{K}-k{k}-s{s}" for lab in ("tied-topk", "tied-topk-im-3.0",
                                                              "tied-topk-im-3.0-wr")}  # fmt: skip
            cfg = res["rows"][names["tied-topk-im-3.0-wr"]]["config"]
            assert cfg["loss"]["lambda_wr"] == cfg["loss"]["lambda_lse"] == 1 / 3
            assert cfg["model"]["centre"] is True and cfg["model"]["k"] == k
            name = names["tied-topk-im-3.0-wr"]
            assert f"{name} (untrained)" not in probes
            assert f"{names['tied-topk']} (untrained)" in probes
            assert any(r.startswith("random dirs @ L0 ") and r.endswith(f"({name})")
                       for r in probes)  # fmt: skip
            assert res["train"][name]["steps"] == res["tokens"]["train"] // plan.batch_size
            # wr is in the trained objective: the last record's total carries it at 1/3
            last = res["train"][name]["last"]
            weights = fam.weights(replace(plan_cfg := run_config(
                "tied_topk_hybrid", K, 32, plan, s, k=k, row=rows["tied-topk-im-3.0-wr"]).loss),
                K)  # fmt: skip
            assert weights["wr"] == plan_cfg.lambda_wr == 1 / 3
            assert last["total"] == pytest.approx(sum(weights[t] * last[t] for t in weights))
            assert last["wr"] != res["train"][names["tied-topk-im-3.0"]]["last"]["wr"]
            # tied-topk's twin is both hybrids': the same weights at init
            a, b, c = (runs.build_model(run_config(rows[x]["family"], K, 32, plan, s, k=k,
                                                   row=rows[x]), seed=s)
                       for x in ("tied-topk-im-3.0-wr", "tied-topk-im-3.0", "tied-topk"))  # fmt: skip
            for m in (b, c):
                assert all(torch.equal(a.state_dict()[n], v) for n, v in m.state_dict().items())
    # gpu2's plan at the same toy size: its first four rows and their controls, bit for bit
    plan2 = replace(plan, rows=tuple(gpu2["rows"]), resp_families=tuple(gpu2["resp_families"]),
                    Ks=(16,), seeds=(0,))  # fmt: skip
    res2 = mod.main_run(plan2, meta, arrays, _tiny_lm(), tmp_path / "out2", "cpu")
    cr = _load(PLAN7 / "check_repro.py", "check_repro7")
    lines, ref_word, h_word = cr.check(res, res2)
    assert (ref_word, h_word) == ("bit-identical", "bit-identical"), lines
    assert lines[1].startswith("3 trained rows in both runs (")
    assert ", tied-topk " in lines[2] and "tied-topk-im-3.0" not in lines[2]
    assert any(x.startswith("hybrid: 1 tied-topk-im-3.0 rows in both runs; not in") for x in lines)
    # compare7: rules (a)-(d) per K; the compare3 shape the verdict reads
    c7 = _load(PLAN7 / "compare7.py", "compare7")
    base = TOY_BASELINE
    md, nums = c7.compare7(res, base)
    for K in (16, 32):
        e = nums[f"K{K}"]
        assert set(e["rows"]) == set(rows)
        assert e["rows"]["tied-topk-im-3.0-wr"]["kind"] == "hybrid"
        w = e["wr_hybrid"]
        assert set(w) == {"tied-topk-im-3.0-wr", "tied-topk-im-3.0", "hybrid vs tied-topk"}
        v = w["tied-topk-im-3.0-wr"]
        assert v["measured"] and v["seeds"] == 2
        assert v["vs_base"]["probing"] in ("above", "level", "below")
        assert v["vs_tied"]["ce"] in ("above", "level", "below")
        assert v["beats_controls"] == (v["vs_twin"] == v["vs_random"] == "above")
        assert v["twin_probing"] == e["rows"]["tied-topk"]["twin_mean_k"]
        assert v["probing"] == pytest.approx(e["rows"]["tied-topk-im-3.0-wr"]["mean_k"])
        assert v["ce"] == pytest.approx(e["rows"]["tied-topk-im-3.0-wr"]["ce"])
        assert len(v["words"]) == 4 and v["words"][-1].endswith(("synthetic model",
                                                                 "with the hybrid)"))  # fmt: skip
        assert "words" not in w["tied-topk-im-3.0"] and "vs_twin" in w["tied-topk-im-3.0"]
    assert "| tied-topk-im-3.0-wr | 2 |" in md
    path = tmp_path / "gpu7_compare.json"
    path.write_text(json.dumps(nums))
    studies = load_studies(None, None, str(path))  # read as a compare3 file: "K<latents>" + rows
    assert studies["probing3"][1]["K16"]["rows"]["tied-topk-im-3.0-wr"]["kind"] == "hybrid"


def test_gpu7_reproduction_check_reads_gpu2_results():
    """docs/eval/probing/gpu7/check_repro.py on gpu2's committed results: gpu2's four rows of
    run 7 against gpu2 are bit-identical in both parts; the hybrid moved within H1-H3 is
    comparable while the reference rows stay bit-identical; a hybrid CE-loss recovered off by
    more than 0.002, or its seed-mean probing by more than 0.01, is not comparable."""
    import copy

    cr = _load(PLAN7 / "check_repro.py", "check_repro7")
    mod = _script()
    old = mod.merge_results([json.loads((PLAN2 / f).read_text()) for f in (
        "results_r4.json", "results_r16a.json", "results_r16b.json", "results_r4s2.json")])  # fmt: skip
    shared = ("encoder", "topk", "tied-topk", "tied-topk-im-3.0")
    new = copy.deepcopy(old)
    new["kinds"] = {n: v for n, v in old["kinds"].items()
                    if v != "trained" or n.split("-K")[0] in shared}  # fmt: skip
    new["kinds"]["tied-topk-im-3.0-wr-K4096-k81-s0"] = "trained"  # a row gpu2 does not have
    lines, ref_word, h_word = cr.check(new, old)
    assert (ref_word, h_word) == ("bit-identical", "bit-identical"), lines
    assert lines[1].startswith("18 trained rows in both runs (1 new)")
    assert "l1(" not in lines[2] and "tied-topk 1716/1716" in lines[2]
    assert "hybrid: 6 tied-topk-im-3.0 rows in both runs" in lines
    assert sum(x.startswith(("H1:", "H2:")) for x in lines) == 12
    assert sum(x.startswith("H3:") for x in lines) == 2
    key = "tied-topk-im-3.0-K16384-k386-s1 | own decoder"
    new["downstream"]["K16384-s1"][key]["ce_loss_recovered"] += 0.0015
    for task in new["probing"]["saebench"]["tied-topk-im-3.0-K4096-k82-s2"].values():
        task["k"] = {k: v + 0.009 for k, v in task["k"].items()}
    lines, ref_word, h_word = cr.check(new, old)
    assert (ref_word, h_word) == ("bit-identical", "comparable"), lines
    new["downstream"]["K16384-s1"][key]["ce_loss_recovered"] += 0.001
    assert cr.check(new, old)[1:] == ("bit-identical", "NOT comparable")
    new["downstream"]["K16384-s1"][key]["ce_loss_recovered"] -= 0.0025
    for s in ("k81-s0", "k82-s1"):  # with seed 2's +0.009: the seed mean +0.012 at K = 4096
        for task in new["probing"]["saebench"][f"tied-topk-im-3.0-K4096-{s}"].values():
            task["k"] = {k: v + 0.0135 for k, v in task["k"].items()}
    lines, ref_word, h_word = cr.check(new, old)
    assert h_word == "NOT comparable" and any(
        x.startswith("H3: tied-topk-im-3.0-K4096") and "NOT within 0.01" in x for x in lines
    ), lines
    new["l0"]["encoder-K4096-s1"] += 1.0
    assert cr.check(new, old)[1] == "NOT comparable"


PLAN8 = PROBING / "gpu8"


def test_gpu8_plan_runs_every_row_repeats_gpu3_and_compare8_reads_it(tmp_path):
    """The committed gpu8 plan (docs/eval/probing/gpu8_plan.md) at toy size: encoder-im0.01
    trains with the registry row's loss (lambda_var = lambda_tc = 0.01, the rest as the
    reference encoder's), takes the encoder's untrained twin (the same init: the weights change
    only the loss) and gets random directions at its own L0; topk-at-im0.01 is trained at k =
    encoder-im0.01's held-out L0 in the same block ("k_of"), topk at the encoder's; the three
    rows shared with gpu3's plan sit at gpu3's positions, so run 8 repeats them bit for bit,
    controls included (gpu6/check_repro.py on a toy gpu3 run); compare8.py reads the results by
    rules (a)-(e), and its file has what the cross-study verdict reads of a compare3 file."""
    from implicit_em.eval.options import VARIANTS
    from implicit_em.eval.probing_study.plan import label_of, read_plan_json
    from implicit_em.eval.summary import load_studies

    mod = _script()
    tiny = {**mod.TINY, "seeds": (0, 1)}
    mod.prepare(mod.Plan(**tiny), tiny_corpora(), ByteTokenizer(), tmp_path / "data")
    meta, arrays = mod.load_data(tmp_path / "data")
    over = read_plan_json(f"@{PLAN8 / 'plan.json'}")
    assert over["Ks"] == [4096, 16384] and over["seeds"] == [0, 1, 2]
    gpu3 = read_plan_json(f"@{PLAN3 / 'plan_K4096.json'}")
    assert over["rows"][:3] == gpu3["rows"][:3] and over["twin_mean"] == gpu3["twin_mean"]
    assert over["resp_families"] == gpu3["resp_families"] == []
    im, at = over["rows"][3], over["rows"][4]
    spec = VARIANTS["encoder-im0.01"]
    assert im["loss"] == {"lambda_var": spec.lambda_var, "lambda_tc": spec.lambda_tc}
    assert (spec.lambda_var, spec.lambda_tc, spec.lambda_wr) == (0.01, 0.01, 0.0)
    assert spec.reference_k == 64 and not spec.lse_mean and spec.lse_ref_batch is None
    assert im["twin_of"] == "encoder" and im["untrained"] is False
    assert at == {"family": "topk_sae", "label": "topk-at-im0.01", "k_of": "encoder-im0.01"}
    plan = replace(mod.Plan(**tiny), **mod.plan_fields({**over, "Ks": [16, 32], "seeds": [0, 1]}))
    res = mod.main_run(plan, meta, arrays, _tiny_lm(), tmp_path / "out", "cpu")
    assert not res.get("errors"), res.get("errors")
    assert res["blocks_done"] == ["K16-s0", "K32-s0", "K16-s1", "K32-s1"]
    probes = res["probing"]["saebench"]
    rows = {label_of(r): r for r in plan.rows}
    for K in (16, 32):
        for s in (0, 1):
            k_enc = int(min(K, max(1, round(res["l0"][f"encoder-K{K}-s{s}"]))))
            name = f"encoder-im0.01-K{K}-s{s}"
            k_im = int(min(K, max(1, round(res["l0"][name]))))
            cfg = res["rows"][name]["config"]
            ref = res["rows"][f"encoder-K{K}-s{s}"]["config"]
            assert cfg["loss"] == {**ref["loss"], "lambda_var": 0.01, "lambda_tc": 0.01}
            # the same model (k is not read by the encoder: 16 before the block's k is known)
            assert {**cfg["model"], "k": 0} == {**ref["model"], "k": 0}
            assert cfg["model"]["centre"] is False
            assert f"{name} (untrained)" not in probes
            assert f"encoder-K{K}-s{s} (untrained)" in probes
            assert any(r.startswith(f"random dirs @ L0 {k_im} ") and r.endswith(f"({name})")
                       for r in probes)  # fmt: skip
            assert res["train"][name]["steps"] == res["tokens"]["train"] // plan.batch_size
            # the weights change the objective: the last record differs from the encoder's
            assert res["train"][name]["last"] != res["train"][f"encoder-K{K}-s{s}"]["last"]
            # TopK at encoder-im0.01's L0 ("k_of") beside TopK at the encoder's
            sae = f"topk-at-im0.01-K{K}-k{k_im}-s{s}"
            assert res["rows"][sae]["config"]["model"]["k"] == k_im
            assert 0 < res["l0"][sae] <= k_im  # TopK: at most k codes above 0 per token
            assert res["rows"][f"topk-K{K}-k{k_enc}-s{s}"]["config"]["model"]["k"] == k_enc
            assert f"{sae} (untrained)" in probes
            # the encoder's twin is encoder-im0.01's: the same weights at init
            assert _same_encoder_init(plan, K, s, rows, "encoder-im0.01", "encoder")
    # gpu3's plan at the same toy size: its first three rows and their controls, bit for bit
    lines, word = _check_against_gpu3(mod, plan, gpu3, meta, arrays, tmp_path, res)
    assert word == "bit-identical", lines
    assert lines[0].startswith("3 trained rows in both runs (17 new)")
    assert "encoder-wr " in lines[1] and "encoder-im0.01" not in lines[1]
    # compare8: rules (a)-(e) per K; the compare3 shape the verdict reads
    c8 = _load(PLAN8 / "compare8.py", "compare8")
    base = TOY_BASELINE
    md, nums = c8.compare8(res, base)
    for K in (16, 32):
        e = nums[f"K{K}"]
        assert set(e["rows"]) == set(rows)
        assert e["rows"]["encoder-im0.01"]["kind"] == "decoder-free"
        assert e["rows"]["topk-at-im0.01"]["kind"] == "SAE"
        assert e["topk_ce"] == e["rows"]["topk"]["ce"]  # the target's CE reference: topk's
        w = e["im001"]
        assert set(w) == {"encoder-im0.01", "topk-at-im0.01", "encoder-wr vs encoder"}
        v = w["encoder-im0.01"]
        assert v["measured"] and v["seeds"] == 2
        for rule in ("vs_reference", "vs_wr", "vs_sae", "vs_topk_at_reference_l0"):
            assert v[rule]["probing"] in ("above", "level", "below")
            assert v[rule]["ce"] in ("above", "level", "below")
        assert v["beats_controls"] == (v["vs_twin"] == v["vs_random"] == "above")
        assert v["twin_probing"] == e["rows"]["encoder"]["twin_mean_k"]
        assert v["probing"] == pytest.approx(e["rows"]["encoder-im0.01"]["mean_k"])
        assert v["ce"] == pytest.approx(e["rows"]["encoder-im0.01"]["ce"])
        assert v["l0_matched_to_sae"] is True  # TopK at k = its L0, rounded
        assert len(v["words"]) == 5 and v["words"][-1].startswith(("as on the synthetic model",
                                                                   "unlike the synthetic model ("))  # fmt: skip
        assert w["topk-at-im0.01"]["measured"] and "vs_topk" in w["topk-at-im0.01"]
    assert "| encoder-im0.01 | 2 |" in md
    path = tmp_path / "gpu8_compare.json"
    path.write_text(json.dumps(nums))
    studies = load_studies(None, None, str(path))  # read as a compare3 file: "K<latents>" + rows
    assert studies["probing3"][1]["K16"]["rows"]["encoder-im0.01"]["kind"] == "decoder-free"


def test_gpu8_synthetic_pattern_words():
    """compare8.py rule (e): "as on the synthetic model" only when the row is above the encoder,
    above encoder-wr and beats its controls (gpu16k-im001.md rules 3-5); otherwise the words
    that differ, with the synthetic model's."""
    c8 = _load(PLAN8 / "compare8.py", "compare8")

    def v(ref: str, wr: str, beats: bool) -> dict:
        return {"vs_reference": {"probing": ref}, "vs_wr": {"probing": wr},
                "vs_sae": {"probing": "below"}, "beats_controls": beats}  # fmt: skip

    assert c8.words(v("above", "above", True)) == [
        "the InfoMax weights at 1/100 lift the encoder", "above encoder-wr",
        "below TopK at its own L0", "beats its controls", "as on the synthetic model"]  # fmt: skip
    last = c8.words(v("level", "above", False))[-1]
    want = "vs_reference: level (there: above); beats_controls: False (there: True)"
    assert last == f"unlike the synthetic model ({want})"


def test_rule_table_helpers_shared_by_compare6_to_8(tmp_path, capsys):
    """compare.py's helpers of gpu6-8/compareN.py: a pair's words and deltas (margin 0.01 on
    probing, 0 on CE seeds), the controls rule, the table cells, and commands.write_compare
    (md + JSON at indent 1, the markdown printed, neither file replaced)."""
    from implicit_em.eval.probing_study.commands import write_compare
    from implicit_em.eval.probing_study.compare import (
        ce_cell,
        controls,
        controls_cells,
        entry,
        entry_cells,
        pair_cell,
        pair_words,
        rule_row,
        unmeasured_row,
    )

    def st(lo: float, hi: float, ce: list[float]) -> dict:
        return {"seeds": 2, "l0": 10.0, "dead": [0, 1], "mean_k": (lo + hi) / 2,
                "mean_k_range": [lo, hi], "ce": sum(ce) / len(ce) if ce else None,
                "ce_seeds": ce}  # fmt: skip

    a, b = st(0.80, 0.82, [0.9, 0.92]), st(0.70, 0.78, [0.95, 0.96])
    p = pair_words(a, b)
    assert (p["probing"], p["ce"]) == ("above", "below")
    assert p["probing_delta"] == pytest.approx(0.07) and p["ce_delta"] == pytest.approx(-0.045)
    assert pair_words(st(0.80, 0.82, []), b)["ce"] == "not measured"
    assert pair_words(a, st(0.795, 0.80, [0.9]))["probing"] == "level"  # 0.005 < the margin
    assert pair_cell(p) == "above (+0.070)" and pair_cell(p, "ce") == "below (-0.045)"
    assert pair_cell(None) == "-" and pair_cell({"ce": "not measured"}, "ce") == "not measured"
    c = controls(a, b, None)
    assert c == {"twin_probing": b["mean_k"], "twin_range": [0.70, 0.78], "vs_twin": "above",
                 "vs_random": "not measured", "beats_controls": False,
                 "margin_over_controls": pytest.approx(0.02)}  # fmt: skip
    v = {**entry(a), **controls(a, b, st(0.5, 0.6, []))}
    assert v["beats_controls"] and v["margin_over_controls"] == pytest.approx(0.02)
    assert entry_cells("r", v) == "| r | 2 | 10.0 | 0/1 | 0.810 [0.800, 0.820] | "
    assert controls_cells(v) == "above | above | +0.020"
    assert ce_cell(v) == "0.9100 [0.9000, 0.9200]" and ce_cell(entry(st(0, 1, []))) == "-"
    assert unmeasured_row("r", 5) == "| r | 0 | not measured | | |"
    assert rule_row("r", v, [p, None]) == ("| r | 2 | 10.0 | 0/1 | 0.810 [0.800, 0.820] | "
        "above (+0.070) | - | above | above | +0.020 | 0.9100 [0.9000, 0.9200] | "
        "below (-0.045) / - | (rule c only) |")  # fmt: skip
    files = ("x.md", "x.json")
    assert write_compare(tmp_path, files, lambda: ("# md\n", {"K16": [1]})) == 0
    assert (tmp_path / "x.md").read_text() == "# md\n" and capsys.readouterr().out == "# md\n\n"
    assert (tmp_path / "x.json").read_text() == '{\n "K16": [\n  1\n ]\n}'
    with pytest.raises(FileExistsError, match="x.md exists"):
        write_compare(tmp_path, files, lambda: pytest.fail("computed before refusing"))


def test_a_harvest_passed_in_gives_the_same_run_and_models_are_kept(tmp_path):
    """main_run with `harvested` = run.harvest's residuals (computed once, as
    docs/eval/probing/why-im001/why_run.py passes them to several runs) repeats the run that
    harvests itself, bit for bit (L0, dead fractions, probes, FVU, CE); `models` receives every
    trained row's model, whose codes give the recorded held-out L0."""
    from implicit_em.eval.probing_study.run import harvest, l0_and_dead
    from implicit_em.lm_eval import encode

    mod = _script()
    tiny = {**mod.TINY, "seeds": (0,), "Ks": (16,)}
    plan = mod.Plan(**tiny)
    mod.prepare(plan, tiny_corpora(), ByteTokenizer(), tmp_path / "data")
    meta, arrays = mod.load_data(tmp_path / "data")
    rows = ({"family": "encoder"},
            {"family": "encoder", "label": "encoder-im0.01", "untrained": False,
             "twin_of": "encoder", "loss": {"lambda_var": 0.01, "lambda_tc": 0.01}})  # fmt: skip
    plan = replace(plan, rows=rows, twin_mean=True)
    lm = _tiny_lm()
    own = mod.main_run(plan, meta, arrays, lm, tmp_path / "own", "cpu")
    given = harvest(lm, arrays, plan, torch.device("cpu"))
    x, acts, held = given
    assert x.dtype == torch.float16 and x.shape[1] == acts.shape[2] == held.shape[1]
    assert acts.shape[:2] == (arrays["pool_tokens"].shape[0], arrays["pool_tokens"].shape[1] - 1)
    models: dict = {}
    res = mod.main_run(plan, meta, arrays, lm, tmp_path / "given", "cpu", harvested=given,
                       models=models)  # fmt: skip
    assert res["harvest_given"] is True and "harvest_given" not in own
    for key in ("l0", "dead_fraction", "probing", "fvu", "downstream", "tokens", "kinds"):
        assert res[key] == own[key], key
    assert set(models) == {"encoder-K16-s0", "encoder-im0.01-K16-s0"}
    scale = res["tokens"]["norm_scale"]
    for name, m in models.items():
        assert l0_and_dead(encode(m, held.float() * scale))[0] == res["l0"][name]
