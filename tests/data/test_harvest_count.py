"""`--n-tokens` is rounded up to whole contexts per split: the help says so and the harvest
commands print the count actually stored."""

from __future__ import annotations

import re

import pytest

from implicit_em.data.lm.harvest_config import stored_tokens_note

pytest.importorskip("transformers")


def test_harvest_prints_the_tokens_it_stored(tmp_path, monkeypatch, capsys):
    from dashboard_fixtures import make_harvest

    from implicit_em.experiments import llm
    from implicit_em.experiments.options import HarvestOptions

    acts, _, _ = make_harvest(tmp_path, n_tokens=1500)  # ctx_len 24: 23 tokens per context
    manifest = llm.load_manifest(acts)
    train, held = (manifest["splits"][s]["n_tokens"] for s in ("train", "heldout"))
    assert (train, held) == (53 * 23, 14 * 23)  # ceil(1200 / 23), ceil(300 / 23) contexts
    monkeypatch.setattr(llm, "harvest", lambda cfg, out, progress: manifest)
    opts = HarvestOptions(out=str(acts), ctx_len=24, n_tokens=1500, heldout_fraction=0.2,
                          no_progress=True)  # fmt: skip
    assert llm.run_harvest(opts) == 0
    said = ("1541 tokens stored (1219 train + 322 held-out) for --n-tokens 1500: each split "
            "rounded up to whole contexts of 23 tokens")  # fmt: skip
    assert said in capsys.readouterr().out


def test_harvest_hf_summary_gives_the_tokens_it_stored(monkeypatch):
    from implicit_em.data import hf_harvest

    hook = "blocks.0.hook_resid_post"
    m = {"splits": {"train": {"n_tokens": 465}, "heldout": {"n_tokens": 165}}}
    monkeypatch.setattr(hf_harvest, "harvest_hf", lambda opts: {hook: m})
    opts = hf_harvest.HFHarvestOptions(model="m", out="o", text=("t.txt",), ctx_len=16,
                                       n_tokens=610, heldout_fraction=0.25)  # fmt: skip
    assert hf_harvest.run(opts)[hook]["stored"] == (
        "630 tokens stored (465 train + 165 held-out) for --n-tokens 610: each split rounded "
        "up to whole contexts of 15 tokens"
    )


def test_stored_note_exact_and_short():
    assert stored_tokens_note(460, 345, 115, 23) == (
        "460 tokens stored (345 train + 115 held-out) for --n-tokens 460"
    )
    assert stored_tokens_note(10_000, 460, 46, 23).endswith(
        "fewer, the text holds no more contexts of 23 tokens"
    )


@pytest.mark.parametrize("command", ["harvest", "harvest-hf"])
def test_help_says_n_tokens_is_rounded_up(command):
    from implicit_em.cli import COMMANDS, parser_for

    parser = parser_for(next(c for c in COMMANDS if c.name == command))
    text = re.sub(r"\s+", " ", parser.format_help())
    assert "rounded up to whole contexts of ctx_len - 1 tokens" in text


def test_both_harvests_declare_their_common_fields_once():
    """HarvestConfig and HFHarvestOptions derive the fields they share (and their help, checks
    and token budget) from one base; each adds only its own."""
    from dataclasses import fields

    from implicit_em.data.lm.harvest_config import HarvestConfig, HFHarvestOptions, _HarvestBase
    from implicit_em.options import field_docs

    base = {f.name for f in fields(_HarvestBase)}
    assert base <= {f.name for f in fields(HarvestConfig)} & {
        f.name for f in fields(HFHarvestOptions)
    }
    assert set(vars(HarvestConfig)["__annotations__"]) == {"corpus", "layer", "hook_point"}
    own = set(vars(HFHarvestOptions)["__annotations__"])
    assert not (own - {"model"}) & base  # only the model is redeclared (required, hub help)
    hc, hf = field_docs(HarvestConfig), field_docs(HFHarvestOptions)
    assert all(hc[n] == hf[n] for n in base - {"model"})
    opts = HFHarvestOptions(model="m", out="o", text=("t",), n_tokens=610, heldout_fraction=0.25)
    cfg = HarvestConfig(n_tokens=610, heldout_fraction=0.25)
    assert [opts.split_tokens(s) for s in ("train", "heldout")] == [458, 152]
    assert [cfg.split_tokens(s) for s in ("train", "heldout")] == [458, 152]
    with pytest.raises(ValueError, match="ctx_len must be >= 2"):
        HFHarvestOptions(model="m", out="o", text=("t",), ctx_len=1)
