"""`--threads`: one shared option (`options.ThreadsOption`), validated the same way and applied
by every command that has it, `eval-suite synthetic` included."""

from __future__ import annotations

import pytest
import torch

from implicit_em.cli import COMMANDS, main, parser_for
from implicit_em.options import ThreadsOption

pytest.importorskip("sae_lens")


def test_eval_suite_synthetic_sets_the_threads(capsys):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main(["eval-suite", "synthetic", "--recipe", "tiny", "--variants", "encoder",
                     "--steps", "2", "--batch-size", "64", "--eval-samples", "500",
                     "--threads", "1", "--no-plot"]) == 0  # fmt: skip
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    capsys.readouterr()
    assert main(["eval-suite", "synthetic", "--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--threads must be >= 1, got 0" in err


def test_threads_help_is_the_shared_one():
    from implicit_em.eval.options import SyntheticEvalOptions
    from implicit_em.experiments.options import HarvestOptions

    assert issubclass(SyntheticEvalOptions, ThreadsOption)
    assert issubclass(HarvestOptions, ThreadsOption)
    for name in ("eval-suite synthetic", "harvest", "llm-train"):
        text = parser_for(next(c for c in COMMANDS if c.name == name)).format_help()
        assert "torch CPU threads (default: torch's)" in " ".join(text.split()), name
