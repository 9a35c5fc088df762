"""The model-family registry: names live in one place, each family is self-consistent, and
the batched housekeeping of the stacked trainer equals the per-model one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from implicit_em.config import LossConfig, ModelConfig
from implicit_em.families import FAMILIES, family, family_of, names
from implicit_em.families.registry import DEFAULT_FAMILY

PKG = Path(__file__).resolve().parents[2] / "src" / "implicit_em"


def string_constants(path: Path) -> list[tuple[int, str]]:
    return [(n.lineno, n.value) for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Constant) and isinstance(n.value, str)]  # fmt: skip


def test_family_names_appear_only_in_their_module_and_the_registry():
    """No library code below the experiments writes a family's name: it asks the family.
    (Experiments and their YAML choose families by name: that is configuration.)"""
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        if rel.startswith("experiments/") or rel == "families/registry.py":
            continue
        for line, value in string_constants(path):
            if value in FAMILIES and rel != f"families/{value}.py":
                offenders.append(f"{rel}:{line} {value!r}")
    by_file: dict[str, int] = {}
    for o in offenders:
        by_file[o.split(":")[0]] = by_file.get(o.split(":")[0], 0) + 1
    grown = {f: n for f, n in by_file.items() if n > KNOWN_NAME_USES.get(f, 0)}
    assert grown == {}, "branch on the family, not its name: " + ", ".join(offenders)


# Debt, not design: modules merged in the same session as the registry (issues 16-18) still
# name families in these many places (SAELens architecture per family, the synthetic
# harness's variants, the probing suite's model list; the SAELens export now asks
# `Family.saelens_architecture`). A ratchet: the counts may only fall;
# each should become a family attribute (docs/architecture.md, "Known debt").
KNOWN_NAME_USES = {
    "dashboard/run.py": 1,
    "eval/options.py": 12,  # the synthetic harness's variants (moved from eval/synthetic.py)
    "eval/probing_suite.py": 5,
    "eval/synthetic.py": 4,
    "interop/commands.py": 1,
}


def test_config_validates_against_the_registry():
    assert ModelConfig().type == DEFAULT_FAMILY in names()
    with pytest.raises(ValueError, match="model.type must be one of"):
        ModelConfig(type="jumprelu")
    with pytest.raises(ValueError, match="model.k"):  # a family that keeps k checks k <= K
        ModelConfig(type=next(n for n, e in FAMILIES.items() if e.uses_k), hidden_dim=8, k=16)
    ModelConfig(type=next(n for n, e in FAMILIES.items() if not e.uses_k), hidden_dim=8, k=16)
    with pytest.raises(ValueError, match="unknown model family 'jumprelu': choose one of"):
        family("jumprelu")


@pytest.mark.parametrize("name", names())
def test_each_family_builds_reports_and_reads_out(name):
    fam = family(name)
    assert fam.name == name
    torch.manual_seed(0)
    model = fam.build(ModelConfig(type=name, input_dim=12, hidden_dim=8, k=3))
    assert type(model) is fam.model_class and family_of(model) is fam
    assert tuple(fam.weights(LossConfig(), 8)) == fam.term_names
    x = torch.rand(16, 12)
    state = fam.init_state(model)
    dead = fam.dead_mask(state, LossConfig(dead_steps=1)) if state else None
    terms = fam.loss_terms(model, x, LossConfig(), dead)
    a = terms.pop("a")
    assert a.shape == (16, 8) and set(terms) == set(fam.term_names)
    assert all(torch.isfinite(v) for v in terms.values())
    with torch.no_grad():
        out = fam.readout(model, x, model.encode(x))
    assert "recon_mse" in out and out["recon_mse"] >= 0
    assert fam.cost > 0


@pytest.mark.parametrize("name", names())
def test_stacked_housekeeping_equals_the_per_model_one(name):
    """`stacked_before_step` / `stacked_after_step` on N stacked models equal `before_step` /
    `after_step` on each model (the stacked trainer's batched form vs the reference)."""
    fam = family(name)
    torch.manual_seed(1)
    models = [fam.build(ModelConfig(type=name, input_dim=10, hidden_dim=6, k=2))
              for _ in range(3)]  # fmt: skip
    for m in models:
        for p in m.parameters():
            p.grad = torch.randn_like(p)
            p.data.add_(0.3 * torch.randn_like(p))  # off any constraint set
    stacked = {f"model.{k}": torch.stack([dict(m.named_parameters())[k].detach().clone()
                                          for m in models]) for k, _ in models[0].named_parameters()}  # fmt: skip
    for k, v in stacked.items():
        v.grad = torch.stack([dict(m.named_parameters())[k.removeprefix("model.")].grad
                              for m in models])  # fmt: skip
    fam.stacked_before_step(stacked)
    fam.stacked_after_step(stacked)
    for i, m in enumerate(models):
        fam.before_step(m)
        fam.after_step(m)
        for k, p in m.named_parameters():
            torch.testing.assert_close(stacked[f"model.{k}"][i], p.detach(), msg=k)
            torch.testing.assert_close(stacked[f"model.{k}"].grad[i], p.grad, msg=k)


def test_row_labels_name_each_family_once():
    """`registry.row_label` / `family_by_label`: one short report-row name per family, and back
    (the probing study's rows, docs/eval/probing/gpu*.md)."""
    from implicit_em.families.registry import family_by_label, row_label

    labels = [row_label(n) for n in names()]
    assert len(set(labels)) == len(labels)
    assert all(family_by_label(row_label(n)) == n for n in names())
    assert row_label(DEFAULT_FAMILY) == DEFAULT_FAMILY
    with pytest.raises(KeyError, match="no family is labelled 'topk-sae'"):
        family_by_label("topk-sae")
