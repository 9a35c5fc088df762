"""Our models in the field's tools: the SAELens and sparsify on-disk formats, both ways.

`export_saelens` / `load_saelens` / `load_native` (implicit_em.interop.saelens),
`export_sparsify` / `load_sparsify` (implicit_em.interop.sparsify), `SAELensModel` (a published
SAE as a model of ours), and `export_run` / `ExportOptions` / `ImportOptions` (the CLI layer,
implicit_em.interop.commands). See docs/interop.md.
"""

from implicit_em.interop.imported import SAELensModel
from implicit_em.interop.saelens import (
    export_saelens,
    exported_tensors,
    load_native,
    load_saelens,
    readout_auroc,
)
from implicit_em.interop.sparsify import export_sparsify, load_sparsify, sparsify_hookpoint

__all__ = [
    "SAELensModel",
    "export_saelens",
    "export_sparsify",
    "exported_tensors",
    "load_native",
    "load_saelens",
    "load_sparsify",
    "readout_auroc",
    "sparsify_hookpoint",
]
