"""Language-model data: text corpora (`corpus`), the language model and its residual stream
(`model`), and harvested activations in fp16 shards with their reader (`activations`);
`harvest_config` holds what a harvest is asked for (light: the CLI reads it for --help).

`implicit_em.data.lm` was a module before it became this package; its names (load_lm,
hook_residual, capture_residual, ...) are re-exported here, lazily (PEP 562), so that old
imports keep working and importing a light submodule does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from implicit_em._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("StopForward", "capture_residual", "check_layer", "decoder_layers",
                     "file_sha256", "hook_residual", "load_lm", "load_tokenizer",
                     "smollm2_gguf_path"),
                    "implicit_em.data.lm.model"),
    "HOOK_POINTS": "implicit_em.data.lm.harvest_config",
}  # fmt: skip

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:  # static analysers see the names
    from implicit_em.data.lm.harvest_config import HOOK_POINTS  # noqa: F401
    from implicit_em.data.lm.model import (  # noqa: F401
        StopForward,
        capture_residual,
        check_layer,
        decoder_layers,
        file_sha256,
        hook_residual,
        load_lm,
        load_tokenizer,
        smollm2_gguf_path,
    )
