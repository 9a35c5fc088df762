"""The model-family registry: name -> the class that implements the family, as a string.

This table is the only place besides a family's own module where a family's name is written
(`tests/families/test_families.py` checks it). It holds strings so that it imports nothing: the config
validates `model.type` against it without loading torch. A new family is one module in
`implicit_em/families/` and one line here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    target: str
    """"module:Class" of the family (a `families.base.Family` subclass)."""
    uses_k: bool = False
    """model.k is the family's number of active latents (so 1 <= k <= hidden_dim)."""
    centres: bool = False
    """The family can take mean-centred inputs (model.centre)."""
    unit_rows: bool = False
    """The family can keep its weight rows at unit norm (model.unit_norm_rows)."""
    tied: bool = False
    """The decoder is the encoder's own rows (one weight matrix): neither the decoder-free
    encoder nor an SAE with a decoder of its own (`eval.verdict` groups models by this)."""
    em_terms: bool = False
    """A tied model that also carries the decoder-free encoder's LSE + InfoMax terms (a hybrid,
    in `eval.verdict`'s words)."""


DEFAULT_FAMILY = "encoder"
"""model.type when a config names none: the paper's decoder-free encoder."""

FAMILIES: dict[str, Entry] = {
    "encoder": Entry("implicit_em.families.encoder:EncoderFamily", centres=True, unit_rows=True),
    "standard_sae": Entry("implicit_em.families.standard_sae:StandardSAEFamily", centres=True),
    "topk_sae": Entry("implicit_em.families.topk_sae:TopKSAEFamily", uses_k=True, centres=True),
    "batchtopk_sae": Entry(
        "implicit_em.families.batchtopk_sae:BatchTopKSAEFamily", uses_k=True, centres=True
    ),
    "matryoshka_batchtopk_sae": Entry(
        "implicit_em.families.matryoshka_batchtopk_sae:MatryoshkaBatchTopKSAEFamily",
        uses_k=True,
        centres=True,
    ),
    "jumprelu_sae": Entry("implicit_em.families.jumprelu_sae:JumpReLUSAEFamily", centres=True),
    "tied_topk_sae": Entry(
        "implicit_em.families.tied_topk_sae:TiedTopKSAEFamily", uses_k=True, centres=True,
        tied=True,
    ),
    "tied_topk_hybrid": Entry(
        "implicit_em.families.tied_topk_hybrid:TiedTopKHybridFamily", uses_k=True, centres=True,
        tied=True, em_terms=True,
    ),
}

LABELS: dict[str, str] = {
    "standard_sae": "l1",
    "topk_sae": "topk",
    "batchtopk_sae": "batchtopk",
    "matryoshka_batchtopk_sae": "matryoshka",
    "jumprelu_sae": "jumprelu",
    "tied_topk_sae": "tied-topk",
    "tied_topk_hybrid": "tied-topk-im",
}
"""Short names of the families in report rows (the probing study's row names, as
docs/eval/probing/gpu*.md carry them: `topk-K4096-k58-s0`); a family not listed is labelled by
its registry name."""


def row_label(name: str) -> str:
    """The short report-row name of family `name` (LABELS, else the name itself)."""
    return LABELS.get(name, name)


def family_by_label(label: str) -> str:
    """The registry name of the family whose `row_label` is `label`; KeyError when none is."""
    for name in FAMILIES:
        if row_label(name) == label:
            return name
    labels = sorted(map(row_label, FAMILIES))
    raise KeyError(f"no family is labelled {label!r}: choose one of {labels}")
