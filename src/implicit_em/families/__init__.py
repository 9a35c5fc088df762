"""Model families behind one registry: the trainers, the run store and the stack planner ask
the family, never the family's name, what to build, which terms to minimise with which
weights, what to do around each optimizer step, how to read a model out, and what a step costs.

    from implicit_em.families import family
    fam = family(cfg.model.type)          # or family_of(model)
    model = fam.build(cfg.model)

A family module holds one `Family` subclass (see `families.base`); `families.registry` maps
names to them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from implicit_em.families.registry import FAMILIES

if TYPE_CHECKING:
    from torch import nn

    from implicit_em.families.base import Family

__all__ = ["FAMILIES", "family", "family_of", "names"]


def names() -> list[str]:
    """The registered family names, in registry order."""
    return list(FAMILIES)


_LOADED: dict[str, Family] = {}


def family(name: str) -> Family:
    """The family registered as `name` (one instance per name); ValueError naming the choices
    if there is none."""
    if name not in _LOADED:
        if name not in FAMILIES:
            raise ValueError(
                f"unknown model family {name!r}: choose one of {', '.join(FAMILIES)}"
            )
        module, _, cls = FAMILIES[name].target.partition(":")
        _LOADED[name] = getattr(importlib.import_module(module), cls)()
    return _LOADED[name]


def family_of(model: nn.Module) -> Family:
    """The family whose models are instances of type(model) (exact class, then subclasses)."""
    fams = [family(n) for n in FAMILIES]
    for fam in fams:
        if type(model) is fam.model_class:
            return fam
    for fam in fams:
        if isinstance(model, fam.model_class):
            return fam
    raise TypeError(f"{type(model).__name__} belongs to no registered model family")
