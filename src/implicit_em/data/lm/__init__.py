"""Language-model data: text corpora (`corpus`), the language model and its residual stream
(`model`), and harvested activations in fp16 shards with their reader (`activations`).

`implicit_em.data.lm` was a module before it became this package; its names (load_lm,
hook_residual, capture_residual, ...) are re-exported here so that old imports keep working.
"""

from implicit_em.data.lm.model import (
    HOOK_POINTS,
    StopForward,
    capture_residual,
    check_layer,
    decoder_layers,
    file_sha256,
    hook_residual,
    load_lm,
    smollm2_gguf_path,
)

__all__ = [
    "HOOK_POINTS", "StopForward", "capture_residual", "check_layer", "decoder_layers",
    "file_sha256", "hook_residual", "load_lm", "smollm2_gguf_path",
]  # fmt: skip
