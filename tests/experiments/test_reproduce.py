"""End to end: `reproduce(quick=True)` on a small MNIST subset asserts what the theory predicts.

Budget: 2 epochs on 2,000 MNIST training images (500 test). At 1 epoch on 1,000 images the
ablation's LSE+var+tc run still has dead units (4/64) and at 500 images LSE+var has 2, so 2
epochs on 2,000 is the smallest budget tried at which every asserted prediction holds.
"""

from __future__ import annotations

import json
import math
import re
from concurrent.futures import Future

import pytest

from implicit_em.cli import main
from implicit_em.experiments.reproduce import reproduce

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?")
OVERRIDES = {"training": {"epochs": 2}, "data": {"train_subset": 2000, "test_subset": 500}}


def _reproduce(out, **kw):
    return reproduce(out=out, quick=True, device="cpu", progress=False, probe="torch",
                     overrides=OVERRIDES, **kw)  # fmt: skip


def run_files(out) -> dict:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns
            for p in sorted((out / "runs").rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    report = _reproduce(out)
    FIRST_REPORT[out] = report.read_text()  # later tests replace report.md
    return out, report


FIRST_REPORT: dict = {}


def test_writes_report_html_and_figures(quick_run):
    out, report = quick_run
    assert report == out / "report.md"
    md = report.read_text()
    figures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    expected = {"theorem/fig1_theorem.png", "ablation/fig_ablation_correlation.png",
                "ablation/fig_ablation_bars.png", "benchmark/fig2a_ours_encoder.png",
                "dynamics/fig3_dynamics.png"}  # fmt: skip
    assert expected <= set(figures)
    for f in figures:
        assert (out / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figures)
    assert "<table>" in html
    # the header states the budget actually run, not the quick.yaml defaults
    assert "QUICK" in md
    assert "Training: 2 epochs, batch 128, data subset 2000 / 500" in md
    for name in ("Experiment 1", "Table 5", "Table 7", "Table 8", "Figure 3"):
        assert name in md


def test_ablation_predictions(quick_run):
    out, _ = quick_run
    numbers = json.loads((out / "ablation" / "ablation.json").read_text())
    dead = {v: [s["dead_units"] for s in n["per_seed"]] for v, n in numbers.items()}
    red = {v: n["mean_std"]["redundancy"][0] for v, n in numbers.items()}
    assert dead["lse_only"] == [64]  # LSE alone collapses: every unit dead
    assert math.isnan(red["lse_only"])
    assert dead["lse_var"] == [0]  # the variance barrier keeps every unit alive
    assert red["lse_var_tc"] < red["lse_var"] / 3  # decorrelation lowers redundancy
    # responsibility entropy of the collapsed model is log K (uniform over 64 dead units)
    assert numbers["lse_only"]["mean_std"]["resp_entropy"][0] == pytest.approx(math.log(64))


def test_benchmark_and_dynamics_numbers_are_sane(quick_run):
    out, _ = quick_run
    bench = json.loads((out / "benchmark" / "benchmark.json").read_text())
    for v in ("ours", "standard_sae", "topk_sae"):
        probe = bench[v]["mean_std"]["probe"][0]
        assert 0.5 < probe <= 1.0, (v, probe)
    assert bench["ours"]["params"] == 784 * 64 + 64  # 50,240 as in the paper
    assert bench["standard_sae"]["params"] == 101_200
    assert 0.8 < bench["raw_pixels"]["probe"] <= 1.0
    assert 1 <= bench["topk_k"] <= 64
    dyn = json.loads((out / "dynamics" / "dynamics.json").read_text())
    assert {f"{o}_{lr}" for o in ("sgd", "adam") for lr in (0.0001, 0.001, 0.01, 0.1)} <= set(dyn)
    theorem = json.loads((out / "theorem" / "theorem.json").read_text())
    assert json.dumps(theorem)  # written and parseable


def test_second_call_skips_complete_runs(quick_run):
    out, _ = quick_run
    before = run_files(out)
    assert len([p for p in before if p.endswith("metrics.json")]) >= 12
    # the ablation alone would replace the full report: refused before any work
    report = (out / "report.md").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        _reproduce(out, only=["ablation"])
    assert (out / "report.md").read_bytes() == report
    assert main(["theorem", "--quick", "--out", str(out), "--device", "cpu", "--quiet"]) == 2
    assert (out / "report.md").read_bytes() == report
    # with --overwrite: its runs are reused, none is retrained, and the timings say so
    _reproduce(out, only=["ablation"], overwrite=True)
    assert run_files(out) == before
    md = (out / "report.md").read_text()
    assert "Table 5" in md and json.loads((out / "report.json").read_text()) == {
        "experiments": ["ablation"]
    }
    took = re.search(r"\| training \(stacked runs\) \| ([\d.]+) \| (.*) \|", md)
    assert float(took.group(1)) < 1.0
    assert took.group(2) == "4 finished by an earlier command, loaded"
    assert "| ablation | " in md and "| 4 finished by an earlier command, loaded |" in md
    rows = [line for line in md.split("## ")[1].splitlines() if line.startswith("| ")]
    assert rows and not any("±" in r for r in rows), rows  # one seed: values alone, no ± 0.00
    assert "— (undefined)" in md and "blank" in md  # LSE only: no redundancy, and why


def test_one_experiment_trains_only_its_own_runs(tmp_path):
    _reproduce(tmp_path, only=["ablation"])
    assert len(list((tmp_path / "runs").glob("*/metrics.json"))) == 4  # its 4 variants, 1 seed
    md = (tmp_path / "report.md").read_text()
    assert re.search(r"\| training \(stacked runs\) \| [\d.]+ \| 4 trained now \|", md), md[:2000]
    # the experiment step then loads what the training step trained: said as such
    assert re.search(r"\| ablation \| [\d.]+ \| 4 trained earlier by this command, loaded \|", md)
    assert "(cached)" not in md


@pytest.mark.parametrize("split", ["0", "1"])
def test_topk_trained_in_the_background_gives_the_same_numbers(
    quick_run, tmp_path, monkeypatch, split
):  # fmt: skip
    """The CUDA flow, run on CPU: the training step's stacks train in threads, the TopK SAEs
    start once the decoder-free runs they follow are saved and train while the rest of the
    step, the theorem, the ablation and the benchmark's phase 1 run; every experiment's JSON
    and the report's tables are bitwise those of the plain flow, and each step reports the
    runs it waited for as trained now. With IMPLICIT_EM_SPLIT_URGENT=1 the benchmark's "ours"
    run trains in a stack of its own (4 stacks, not 3): every other run's weights stay bitwise
    the plain flow's, and ours' run, the JSONs and the tables agree with it to float32
    rounding (the one-model stack's matmuls round differently, on the CPU too)."""
    from implicit_em.experiments import benchmark, common, dynamics
    from implicit_em.experiments import reproduce as rep
    from implicit_em.train import stacked

    monkeypatch.setenv(common.SPLIT_URGENT_ENV, split)
    sizes = []
    background = common.train_many_in_background

    def recorded(cfgs, *a, urgent=(), apart=False, **k):
        sizes.append(sorted(len(g) for g in stacked.stack_groups(cfgs, urgent, apart)))
        return background(cfgs, *a, urgent=urgent, apart=apart, **k)

    monkeypatch.setattr(common, "train_many_in_background", recorded)
    monkeypatch.setattr(stacked, "BACKGROUND_DEVICES", ("cuda", "cpu"))
    monkeypatch.setattr(benchmark, "BACKGROUND_DEVICES", ("cuda", "cpu"))
    started = []
    start_runs = common.start_runs

    class Late(Future):  # never done before it is asked for: the benchmark's wait finds work
        def __init__(self, of: Future) -> None:
            super().__init__()
            self.of = of

        def done(self) -> bool:
            return False

        def result(self, timeout=None):
            return self.of.result(timeout)

    def start_topk_runs(*a):
        started.append(start_runs(*a))
        common.PENDING.update({d: Late(f) for d, f in common.PENDING.items()})
        return started[-1]

    monkeypatch.setattr(benchmark, "start_runs", start_topk_runs)
    ahead, probe_ahead = [], dynamics.probe_ahead
    monkeypatch.setattr(dynamics, "probe_ahead", lambda s: ahead.append(1) or probe_ahead(s))
    pretrained = []
    monkeypatch.setattr(
        rep, "start_runs", lambda *a, **k: pretrained.append(start_runs(*a, **k)) or pretrained[-1]
    )
    _reproduce(tmp_path)
    assert started == [True] and pretrained == [True]
    # the training step's stacks (Adam encoders 7, SGD 4, standard SAE 1), then TopK's 1
    assert sizes == ([[1, 4, 7], [1]] if split == "0" else [[1, 1, 4, 6], [1]])
    assert ahead == [1]  # the dynamics step's probes ran while the benchmark waited for TopK
    ref, _ = quick_run
    md = (tmp_path / "report.md").read_text()
    tables = [text.split("## Experiment 1", 1)[1] for text in (FIRST_REPORT[ref], md)]
    if split == "0":
        for f in sorted(ref.glob("*/*.json")):
            assert (tmp_path / f.relative_to(ref)).read_bytes() == f.read_bytes(), f
        assert tables[0] == tables[1]
    else:  # "ours" alone in a stack rounds differently on the CPU too: its run, and what
        # reads it, agree to float32 rounding; every other run's weights are bitwise the plain
        # flow's (an epoch's mean of a term may differ in its last bit: other stack shapes)
        settings = rep._settings("benchmark", out=tmp_path, quick=True, device="cpu",
                                 overrides=OVERRIDES)  # fmt: skip
        ours = {common.run_id(c) for c in benchmark.first_configs(settings)["ours"]}
        for d in sorted((tmp_path / "runs").iterdir()):
            hist = [[{k: v for k, v in json.loads(line).items() if k != "seconds"}
                     for line in (x / "runs" / d.name / "history.jsonl").read_text().splitlines()]
                    for x in (ref, tmp_path)]  # fmt: skip
            weights = [
                (x / "runs" / d.name / "model.safetensors").read_bytes() for x in (ref, tmp_path)
            ]
            if d.name not in ours:
                assert weights[0] == weights[1], d.name
            for ra, rb in zip(*hist, strict=True):  # every term and metric of every epoch
                assert rb == pytest.approx(ra, rel=1e-3, abs=1e-6), d.name
        for f in [*sorted(ref.glob("*/*.json")), None]:
            pair = (
                tables if f is None else [x.read_text() for x in (f, tmp_path / f.relative_to(ref))]
            )
            got, want = (list(map(float, NUMBER.findall(x))) for x in (pair[1], pair[0]))
            assert got == pytest.approx(want, rel=1e-3, abs=1e-6), f
    assert re.search(r"\| benchmark \| [\d.]+ \| 1 trained now; 2 trained earlier", md), md[:2000]
    assert re.search(r"\| training \(stacked runs\) \| [\d.]+ \| 12 trained now \|", md)
