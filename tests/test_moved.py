"""Old import paths keep working after the redesign (issue 14), with a DeprecationWarning that
names the new home; every public name of the package still resolves."""

from __future__ import annotations

import importlib
import sys
import warnings

import pytest

import implicit_em

MOVED = {
    "implicit_em.training": "implicit_em.train.loop",
    "implicit_em.stacked": "implicit_em.train.stacked",
    "implicit_em.distributed": "implicit_em.train.distributed",
    "implicit_em.experiments.workers": "implicit_em.train.workers",
    "implicit_em.data.mnist": "implicit_em.data.images.mnist",
    "implicit_em.data.idx": "implicit_em.data.images.idx",
    "implicit_em.data.digits": "implicit_em.data.images.digits",
    "implicit_em.data.sources": "implicit_em.data.images.sources",
    "implicit_em.data.corpus": "implicit_em.data.lm.corpus",
    "implicit_em.data.activations": "implicit_em.data.lm.activations",
}


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_old_paths_are_the_new_modules(old, new):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message)
               for w in caught)  # fmt: skip


def test_every_public_name_resolves():
    for name in implicit_em.__all__:
        assert getattr(implicit_em, name) is not None, name


def test_importing_the_lm_metrics_module_keeps_the_evaluate_function():
    """`import implicit_em.evaluate` used to shadow the function implicit_em.evaluate."""
    import torch

    from implicit_em.models import Encoder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import implicit_em.evaluate as old  # noqa: F401
    from implicit_em.lm_eval import evaluate_model

    assert old.evaluate_model is evaluate_model
    torch.manual_seed(0)
    model, x = Encoder(6, 4), torch.rand(20, 6)
    from implicit_em.train.loop import evaluate

    assert implicit_em.evaluate(model, x) == evaluate(model, x)
