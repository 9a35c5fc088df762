"""Our models in the field's tools: the SAELens and sparsify on-disk formats, both ways.

`export_saelens` / `load_saelens` / `load_native` (implicit_em.interop.saelens),
`export_sparsify` / `load_sparsify` (implicit_em.interop.sparsify), `SAELensModel` (a published
SAE as a model of ours), and `export_run` / `ExportOptions` / `ImportOptions` (the CLI layer,
implicit_em.interop.commands; the options in implicit_em.interop.options). See docs/interop.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from implicit_em._lazy import lazy_exports

_EXPORTS = {
    "SAELensModel": "implicit_em.interop.imported",
    **dict.fromkeys(("export_saelens", "exported_tensors", "load_native", "load_saelens",
                     "readout_auroc"), "implicit_em.interop.saelens"),
    **dict.fromkeys(("export_sparsify", "load_sparsify", "sparsify_hookpoint"),
                    "implicit_em.interop.sparsify"),
}  # fmt: skip

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)  # PEP 562: --help stays light

if TYPE_CHECKING:  # static analysers see the names
    from implicit_em.interop.imported import SAELensModel  # noqa: F401
    from implicit_em.interop.saelens import (  # noqa: F401
        export_saelens,
        exported_tensors,
        load_native,
        load_saelens,
        readout_auroc,
    )
    from implicit_em.interop.sparsify import (  # noqa: F401
        export_sparsify,
        load_sparsify,
        sparsify_hookpoint,
    )
