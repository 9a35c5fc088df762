"""Evaluations that do not presuppose a decoder (issue 18), each beside its controls.

- `implicit_em.eval.synthetic`: ground truth on sae-lens SynthSAEBench recipes (MCC,
  per-latent precision / recall / F1, L0, dead latents); `SyntheticEvalOptions`, `run`.
- `implicit_em.eval.sparse_probing`: the SAEBench k-sparse probing protocol.
- `implicit_em.eval.probing_tasks`: labelled passages from the offline corpora.
- `implicit_em.eval.selected_redundancy`: how redundant the latents a k-sparse probe selects
  are (|cos|, |corr|, distinct directions) and the de-duplicated selection (pure numpy).
- `implicit_em.eval.probing_suite`: probing + CE-loss recovered on LM activations;
  `ProbingOptions`, `run`.

Submodules are imported on use: each pulls in optional dependencies (sae-lens, transformers).
"""
