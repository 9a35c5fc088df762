"""eval.verdict_figures: the verdict's figures hold every row of the study files, by kind, with
their controls (issue 18's plots beside the verdict)."""

import json

import pytest

from implicit_em.eval import verdict_figures as vf
from implicit_em.eval.verdict import DECODER_FREE, HYBRID, OLD_RAW_ROW, RAW_ROW, SAE


def _stat(v):
    return {"mean": v, "min": v, "max": v}


def _gt_row(name, mcc, l0, enc_rows=float("nan")):
    return {"variant": name, "seeds": 3, "mcc": _stat(mcc), "mcc_encoder_rows": _stat(enc_rows),
            "mcc_untrained": _stat(0.15), "mcc_random_at_l0": _stat(0.16), "l0": _stat(l0),
            "dead_latents": _stat(0), "f1": _stat(0.5)}  # fmt: skip


def test_mcc_vs_l0_draws_every_row_with_its_control(tmp_path):
    table = {"target_l0": 25, "summary": [_gt_row("topk-k25", 0.72, 25.0),
                                          _gt_row("encoder", 0.21, 214.0),
                                          _gt_row("encoder-wr", 0.31, 304.0)]}  # fmt: skip
    pts = vf.mcc_vs_l0(table, tmp_path / "gt.png")
    assert (tmp_path / "gt.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pts[SAE] == [(25.0, 0.72)]
    assert sorted(pts[DECODER_FREE]) == [(214.0, 0.21), (304.0, 0.31)]
    assert pts["untrained"] == [(25.0, 0.16), (214.0, 0.16), (304.0, 0.16)]  # best control seed


def test_probing_vs_l0_sorts_rows_into_kinds_controls_and_the_raw_baseline(tmp_path):
    p2 = {"K64": {"verdict": {"models": {"tied-topk-im-3.0": {"kind": HYBRID}}},
                  "rows": {OLD_RAW_ROW: {"l0": None, "mean_k": 0.8},  # as gpu2_compare.json
                           "topk-K64": {"l0": 8.0, "mean_k": 0.70},
                           "tied-topk-im-3.0-K64": {"l0": 8.0, "mean_k": 0.71},
                           "encoder-K64 (untrained)": {"l0": 40.0, "mean_k": 0.66},
                           "random dirs @ L0 of topk-K64": {"l0": 8.0, "mean_k": 0.65}}}}  # fmt: skip
    p2["K64"]["rows"]["encoder[r]-K64"] = {"l0": 64.0, "mean_k": 0.5}  # chance: left out
    p3 = {"K64": {"rows": {"encoder-wr": {"kind": DECODER_FREE, "l0": 30.0, "mean_k": 0.69,
                                          "random_mean_k": 0.68, "twin_mean_k": 0.67}}},
          "K256": {"rows": {"encoder": {"kind": DECODER_FREE, "l0": 90.0, "mean_k": 0.6,
                                        "random_mean_k": None}}}}  # fmt: skip
    p4 = {"K64": {"rows": {"encoder-wr": {"kind": DECODER_FREE, "l0": 31.0, "mean_k": 0.70,
                                          "random_mean_k": None}}}}  # fmt: skip
    got = vf.probing_vs_l0({"probing2": p2, "probing3": p3, "probing4": p4}, tmp_path / "p.png")
    assert list(got) == ["K64", "K256"]  # both K, in order of K
    k64 = got["K64"]
    assert k64["raw"] == [(None, 0.8)] and "ceiling" not in k64  # a baseline, not a ceiling
    assert k64[SAE] == [(8.0, 0.70)] and k64[HYBRID] == [(8.0, 0.71)]
    assert k64["untrained"] == [(40.0, 0.66)]
    assert k64["random"] == [(8.0, 0.65)]  # gpu3's encoder-wr is drawn from gpu4, once
    assert k64[DECODER_FREE] == [(31.0, 0.70)] and "twin" not in k64
    assert got["K256"][DECODER_FREE] == [(90.0, 0.6)] and "random" not in got["K256"]
    p2["K64"]["rows"][RAW_ROW] = p2["K64"]["rows"].pop(OLD_RAW_ROW)  # a file of this session
    assert vf.probing_vs_l0({"probing2": p2}, tmp_path / "p2.png")["K64"]["raw"] == [(None, 0.8)]
    alone = vf.probing_vs_l0({"probing3": p3}, tmp_path / "p3.png")["K64"]
    assert alone["twin"] == [(30.0, 0.67)] and alone["random"] == [(30.0, 0.68)]
    with pytest.raises(ValueError, match="no probing study to plot"):
        vf.probing_vs_l0({"probing2": None}, tmp_path / "q.png")


def test_the_verdict_command_writes_its_figures_and_links_them(tmp_path):
    """`eval-suite verdict` on the committed study files: both PNGs beside verdict.md, linked
    from it; a second run without --overwrite refuses (nothing replaced silently)."""
    from implicit_em.eval import summary
    from implicit_em.eval.options import VerdictOptions

    opts = VerdictOptions(out=str(tmp_path))
    summary.run(opts)
    md = (tmp_path / "verdict.md").read_text()
    for f in vf.FIGURES:
        assert (tmp_path / f).stat().st_size > 10_000
        assert f"![{f}]({f})" in md
    assert json.loads((tmp_path / "verdict.json").read_text())["candidates"]
    with pytest.raises(FileExistsError, match="--overwrite"):
        summary.run(opts)


def test_probing_vs_l0_draws_gpu5_rows_apart_from_gpu4s(tmp_path):
    """The longer budget (probing5, as `eval.summary.longer_budget` reads gpu5_compare.json)
    is drawn as series of its own, "<series> (gpu5)", with its controls at each gpu5 row's L0;
    gpu4's row of the same name stays drawn under its own series."""
    p4 = {"K64": {"rows": {"encoder": {"kind": DECODER_FREE, "l0": 30.0, "mean_k": 0.70,
                                       "twin_mean_k": 0.71, "random_mean_k": 0.69},
                           "topk": {"kind": SAE, "l0": 31.0, "mean_k": 0.72}}}}  # fmt: skip
    p5 = {"K64": {"rows": {"encoder": {"kind": DECODER_FREE, "l0": 12.0, "mean_k": 0.66,
                                       "twin_mean_k": 0.68, "random_mean_k": 0.67},
                           "topk": {"kind": SAE, "l0": 12.5, "mean_k": 0.73,
                                    "twin_mean_k": None, "random_mean_k": 0.70}}}}  # fmt: skip
    got = vf.probing_vs_l0({"probing4": p4, "probing5": p5}, tmp_path / "p.png")["K64"]
    assert got[DECODER_FREE] == [(30.0, 0.70)] and got[SAE] == [(31.0, 0.72)]
    assert got["twin"] == [(30.0, 0.71)] and got["random"] == [(30.0, 0.69)]
    assert got[DECODER_FREE + vf.LONGER_TAG] == [(12.0, 0.66)]
    assert got[SAE + vf.LONGER_TAG] == [(12.5, 0.73)]
    assert got["twin" + vf.LONGER_TAG] == [(12.0, 0.68)]
    assert got["random" + vf.LONGER_TAG] == [(12.0, 0.67), (12.5, 0.70)]
    assert all(s in vf.LONGER_STYLE for s in got if s.endswith(vf.LONGER_TAG))
    assert "gpu5" in vf.LONGER_STYLE[DECODER_FREE + vf.LONGER_TAG][2]  # the legend says so


def test_probing_vs_l0_draws_a_row_of_several_one_pass_runs_once_from_the_latest(tmp_path):
    """A row name in gpu3, gpu4 and gpu6 (one-pass runs of compare3's shape) is drawn once,
    from gpu6, the latest, whatever order the studies come in; a row only gpu3 has is drawn."""
    def run(l0, acc, extra=None):
        rows = {"encoder-wr": {"kind": DECODER_FREE, "l0": l0, "mean_k": acc}}
        return {"K64": {"rows": {**rows, **(extra or {})}}}

    only3 = {"centred": {"kind": DECODER_FREE, "l0": 5.0, "mean_k": 0.5}}
    studies = {"probing3": run(10.0, 0.61, only3), "probing6": run(30.0, 0.63),
               "probing4": run(20.0, 0.62)}  # fmt: skip
    got = vf.probing_vs_l0(studies, tmp_path / "p.png")["K64"]
    assert sorted(got[DECODER_FREE]) == [(5.0, 0.5), (30.0, 0.63)]
    assert vf.ONE_PASS_LATEST == ("probing8", "probing7", "probing6", "probing4", "probing3")


def test_the_infomax_curve_orders_the_encoder_rows_by_weight():
    rows = [{"name": n, "l0": 1.0, "mcc": 0.2} for n in
            ("encoder-im0.01", "topk-k12", "encoder", "encoder-im0", "encoder-im0.05",
             "encoder-wr", "tied-topk-im-3.0")]  # fmt: skip
    got = [(w, r["name"]) for w, r in vf.infomax_curve(rows)]
    assert got == [(1.0, "encoder"), (0.05, "encoder-im0.05"), (0.01, "encoder-im0.01"),
                   (0.0, "encoder-im0")]  # fmt: skip
