"""Evaluations that do not presuppose a decoder (issue 18): ground truth on synthetic data."""

from implicit_em.eval.synthetic import (
    RECIPES,
    SyntheticEvalOptions,
    Variant,
    build_synthetic_model,
    evaluate_latents,
    run,
)

__all__ = [
    "RECIPES",
    "SyntheticEvalOptions",
    "Variant",
    "build_synthetic_model",
    "evaluate_latents",
    "run",
]
