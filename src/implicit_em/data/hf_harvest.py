"""Activations from any Hugging Face causal LM, at several hooks in one forward pass.

Legend: C contexts, T context length, D hidden size, N stored tokens.

    implicit-em harvest --model NAME_OR_DIR --hook blocks.6.hook_resid_post \
        --hook blocks.6.hook_mlp_out --text corpus/*.jsonl --out ACTS

Model: any `AutoModelForCausalLM` by hub id or local directory (`save_pretrained` output),
loaded through `implicit_em.data.lm.load_lm` (the GGUF route of `implicit_em.data.lm.activations`
stays as it is). transformers is imported lazily (the `llm` extra).

Hooks, SAELens / TransformerLens names for decoder block L, or any module name:

- `blocks.L.hook_resid_pre`: input of block L (= HF hidden_states[L]);
- `blocks.L.hook_resid_post`: output of block L;
- `blocks.L.hook_attn_out`: output of block L's attention module (after its output
  projection, before it is added to the residual);
- `blocks.L.hook_mlp_out`: output of block L's MLP;
- any name of `model.named_modules()` (e.g. `model.layers.3.mlp.down_proj`): that module's
  output (its first element when it returns a tuple); its last dimension must be D_hook.

All hooks are captured in one forward pass, which stops as soon as every hook has fired.

Text: local files (`.txt`: one document per file; `.jsonl`: one document per line, field
`text_field`; `.parquet`: one document per row, column `text_field`) or a `datasets` dataset
(`dataset="json"|"parquet"|"text"|hub name` with `data_files`, offline when data_files are
local).

Special tokens, one rule (the same as the GGUF harvest): every document is tokenized WITHOUT
special tokens and followed by EOS; a split's documents are concatenated and cut into
windows of T - 1 tokens, each prefixed with BOS (the tokenizer's BOS, else EOS). The BOS
position is never stored (`drop_bos`, default on); EOS separators inside a window are
stored like any other token. `stride` (default T - 1) is the step between window starts;
with stride < T - 1 windows overlap and every position of every window is stored.

Storage: OUT/<hook>/ is an ordinary harvest directory of `implicit_em.data.lm.activations`
(manifest.json with sha256 per shard, stats.safetensors, train/ and heldout/ shards), so
`read_split`, `ActivationReader` and `implicit-em llm-train --acts OUT/<hook>` read it.
Shards of all hooks are written in lockstep; a stopped harvest resumes from the last shard
present in every hook, and the seeded context order makes the result identical to an
uninterrupted run.
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from implicit_em.data.lm import StopForward, decoder_layers
from implicit_em.data.lm.activations import (
    FORMAT_VERSION,
    MANIFEST,
    SPLITS,
    ManifestMismatchError,
    _corpus_fingerprint,
    _finalize_stats,
    _progress,
    _write_json_atomic,
    _write_shard,
    bos_id,
    keep_verified_shards,
    load_manifest,
    select_contexts,
)
from implicit_em.data.lm.corpus import Document, check_corpus, split_documents
from implicit_em.data.lm.harvest_config import (  # noqa: F401  (HFHarvestOptions: its old home)
    DTYPE_NAMES,
    HFHarvestOptions,
    stored_tokens_note,
)

HOOK_RE = re.compile(r"^blocks\.(\d+)\.hook_(resid_pre|resid_post|attn_out|mlp_out)$")
DTYPES = dict(zip(DTYPE_NAMES, (torch.float32, torch.bfloat16, torch.float16), strict=True))
ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")
MLP_NAMES = ("mlp", "feed_forward", "ffn")


# ---------------------------------------------------------------- text


def load_documents(opts: HFHarvestOptions) -> list[Document]:
    """Documents of --text files or of a --dataset (see the module docstring for the rules)."""
    if opts.dataset:
        try:
            import datasets
        except ImportError as e:
            raise ImportError("--dataset needs the `datasets` package: pip install datasets") from e
        files = list(opts.data_files) or None
        ds = datasets.load_dataset(opts.dataset, data_files=files, split=opts.dataset_split)
        if opts.text_field not in ds.column_names:
            raise ValueError(
                f"dataset has no column {opts.text_field!r} (has {ds.column_names}): "
                "set --text-field"
            )
        docs = [
            Document(f"{opts.dataset}/{i}", t)
            for i, t in enumerate(ds[opts.text_field])
            if t and t.strip()
        ]
        return check_corpus(docs, source=opts.dataset)
    paths: list[Path] = []
    for spec in opts.text:
        hits = sorted(glob.glob(spec)) if any(c in spec for c in "*?[") else [spec]
        if not hits or not all(Path(h).is_file() for h in hits):
            raise FileNotFoundError(f"no text file matches {spec!r}: check the path or glob")
        paths += [Path(h) for h in hits]
    docs: list[Document] = []
    for p in paths:
        docs += _read_file(p, opts.text_field)
    return check_corpus(docs, source=",".join(opts.text))


def _read_file(path: Path, field_name: str) -> list[Document]:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return [Document(str(path), path.read_text(encoding="utf-8"))]
    if suffix == ".jsonl":
        docs = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                row = json.loads(line)
                if field_name not in row:
                    raise ValueError(
                        f"{path}:{i + 1} has no field {field_name!r}: set --text-field"
                    )
                docs.append(Document(f"{path}:{i}", row[field_name]))
        return docs
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ImportError("reading .parquet needs pyarrow: pip install pyarrow") from e
        table = pq.read_table(path)
        if field_name not in table.column_names:
            raise ValueError(f"{path} has no column {field_name!r}: set --text-field")
        return [
            Document(f"{path}:{i}", t)
            for i, t in enumerate(table.column(field_name).to_pylist())
            if t
        ]
    raise ValueError(f"unsupported text file {path}: use .txt, .jsonl or .parquet")


def pack_windows(docs: list[Document], tokenizer: Any, ctx_len: int, stride: int) -> Tensor:
    """(C, ctx_len) int64 windows: BOS + ctx_len - 1 tokens of the EOS-joined stream, starting
    every `stride` tokens; the incomplete tail is dropped."""
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for doc in docs:
        stream.extend(tokenizer.encode(doc.text, add_special_tokens=False))
        if eos is not None:
            stream.append(int(eos))
    body = ctx_len - 1
    if len(stream) < body:
        raise ValueError(
            f"text too small: {len(stream)} tokens do not fill one context of {ctx_len}; "
            "add text or lower --ctx-len"
        )
    s = torch.tensor(stream, dtype=torch.long)
    windows = s.unfold(0, body, stride)  # (C, T-1)
    bos = torch.full((len(windows), 1), bos_id(tokenizer), dtype=torch.long)
    return torch.cat([bos, windows], dim=1)  # (C, T)


# ---------------------------------------------------------------- hooks


def resolve_hook(model: nn.Module, hook: str) -> tuple[nn.Module, str]:
    """(module, "pre" | "out") that a hook name reads. Raises ValueError naming the choices."""
    m = HOOK_RE.match(hook)
    if m:
        layer, point = int(m.group(1)), m.group(2)
        blocks = decoder_layers(model)
        if not 0 <= layer < len(blocks):
            raise ValueError(
                f"hook {hook!r}: layer {layer} out of range, the model has {len(blocks)} "
                f"blocks (0..{len(blocks) - 1})"
            )
        block = blocks[layer]
        if point == "resid_pre":
            return block, "pre"
        if point == "resid_post":
            return block, "out"
        names = ATTN_NAMES if point == "attn_out" else MLP_NAMES
        for name in names:
            sub = getattr(block, name, None)
            if isinstance(sub, nn.Module):
                return sub, "out"
        children = [n for n, _ in block.named_children()]
        raise ValueError(
            f"hook {hook!r}: block {layer} has no submodule named {names} (it has "
            f"{children}): hook the module by name instead"
        )
    modules = dict(model.named_modules())
    if hook in modules and hook:
        return modules[hook], "out"
    raise ValueError(
        f"unknown hook {hook!r}: use blocks.L.hook_{{resid_pre,resid_post,attn_out,mlp_out}} "
        "or a module name from model.named_modules()"
    )


@torch.no_grad()
def capture(model: nn.Module, input_ids: Tensor, hooks: tuple[str, ...]) -> dict[str, Tensor]:
    """{hook: (B, T, D_hook)} for input_ids (B, T), all hooks in one forward pass that stops
    once every hook has fired."""
    out: dict[str, Tensor] = {}
    handles = []

    def grab(name: str, h: Any) -> None:
        h = h[0] if isinstance(h, tuple) else h
        out.setdefault(name, h.detach())
        if len(out) == len(hooks):
            raise StopForward

    for name in hooks:
        module, where = resolve_hook(model, name)
        if where == "pre":

            def pre(mod, args, kwargs, name=name):
                grab(name, args[0] if args else kwargs["hidden_states"])

            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        else:
            handles.append(module.register_forward_hook(lambda mod, a, o, name=name: grab(name, o)))
    try:
        model(input_ids=input_ids, use_cache=False)
    except StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    missing = [h for h in hooks if h not in out]
    if missing:
        raise ValueError(f"hooks {missing} never fired in the forward pass: check their names")
    return out


# ---------------------------------------------------------------- harvest


def model_fingerprint(model_id: str) -> str | None:
    """sha256 over a local model folder's config and weight files (None for hub ids)."""
    path = Path(model_id)
    if not path.is_dir():
        return None
    h = hashlib.sha256()
    for p in sorted(path.iterdir()):
        if p.name == "config.json" or p.suffix in (".safetensors", ".bin"):
            from implicit_em.data.lm import file_sha256

            h.update(p.name.encode() + b"\0" + file_sha256(p).encode())
    return h.hexdigest()


def hook_dir_name(hook: str) -> str:
    """A file-system safe folder name for a hook."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", hook)


@dataclass
class _HookState:
    hook: str
    dir: Path
    manifest: dict = field(default_factory=dict)


def harvest_hf(
    opts: HFHarvestOptions,
    model: nn.Module | None = None,
    tokenizer: Any = None,
    model_info: dict | None = None,
    docs: list[Document] | None = None,
    stop_after_shards: int | None = None,
) -> dict[str, dict]:
    """Harvest every hook of `opts` into OUT/<hook>/; returns {hook: manifest}.

    model/tokenizer/model_info default to `load_lm(opts.model, opts.revision, dtype)`; docs
    to `load_documents(opts)`. stop_after_shards: stop after writing that many new shards
    per hook (to simulate a kill in tests). Raises ManifestMismatchError when OUT/<hook>
    holds a different harvest.
    """
    if model is None:
        from implicit_em.data.lm import load_lm

        model, tokenizer, model_info = load_lm(
            opts.model, opts.revision, DTYPES[opts.dtype], progress=opts.progress
        )
        model_info = {**model_info, "weights_sha256": model_info.get("weights_sha256")}
        model_info["weights_sha256"] = model_info["weights_sha256"] or model_fingerprint(opts.model)
        model.to(opts.device)
    if tokenizer is None or model_info is None:
        raise ValueError("pass tokenizer and model_info together with model")
    for hook in opts.hooks:
        resolve_hook(model, hook)  # fail before any work
    docs = load_documents(opts) if docs is None else docs
    train_docs, held_docs = split_documents(docs, opts.heldout_fraction, opts.seed)
    by_split = {"train": train_docs, "heldout": held_docs}
    plan = {}
    for i, split in enumerate(SPLITS):
        windows = pack_windows(by_split[split], tokenizer, opts.ctx_len, opts.window_stride)
        plan[split] = select_contexts(
            windows, opts.split_tokens(split), opts.tokens_per_context, opts.seed + i
        )

    states = []
    for hook in opts.hooks:
        st = _HookState(hook, Path(opts.out) / hook_dir_name(hook))
        ident = _identity(opts, hook, model_info, docs)
        st.manifest = _start_or_resume(st.dir, ident, model_info, train_docs, held_docs)
        states.append(st)
    if all(st.manifest["complete"] for st in states):
        return {st.hook: st.manifest for st in states}

    total = sum(len(p) for p in plan.values()) * opts.tokens_per_context  # tokens per hook
    done = min(
        sum(e["n_tokens"] for s in SPLITS for e in st.manifest["splits"][s]["shards"])
        for st in states
    )
    bar = _progress(total, done, opts.progress)
    device = next(model.parameters()).device
    t0, fresh, written = time.perf_counter(), 0, 0
    for split in SPLITS:
        contexts = plan[split]
        for st in states:
            (st.dir / split).mkdir(parents=True, exist_ok=True)
        n_shards = -(-len(contexts) // opts.shard_contexts)
        for si in range(n_shards):
            todo = [st for st in states if len(st.manifest["splits"][split]["shards"]) <= si]
            if not todo:
                continue
            if stop_after_shards is not None and written >= stop_after_shards:
                bar.close()
                return {st.hook: st.manifest for st in states}
            chunk = contexts[si * opts.shard_contexts : (si + 1) * opts.shard_contexts]  # (C, T)
            hooks = tuple(st.hook for st in todo)
            acts: dict[str, list[Tensor]] = {h: [] for h in hooks}
            for b0 in range(0, len(chunk), opts.batch_size):
                ids = chunk[b0 : b0 + opts.batch_size].to(device)
                got = capture(model, ids, hooks)
                for h in hooks:
                    x = got[h][:, 1:] if opts.drop_bos else got[h]  # (b, T', D)
                    acts[h].append(x.reshape(-1, x.shape[-1]).to("cpu", torch.float16))
                bar.update(len(ids) * opts.tokens_per_context)
            for st in todo:
                a = torch.cat(acts[st.hook])  # (C * T', D)
                if not torch.isfinite(a).all():
                    raise ValueError(
                        f"activations of {st.hook} overflow float16 (inf or NaN): choose "
                        "another hook, or check the model"
                    )
                shards = st.manifest["splits"][split]["shards"]
                path = st.dir / split / f"shard_{len(shards):05d}.safetensors"
                shards.append(_write_shard(path, a, chunk))
                sp = st.manifest["splits"][split]
                sp["n_tokens"] = sum(e["n_tokens"] for e in shards)
                sp["n_contexts"] = sum(e["n_contexts"] for e in shards)
                _write_json_atomic(st.dir / MANIFEST, st.manifest)
                fresh += a.shape[0]
            written += 1
    bar.close()
    elapsed = time.perf_counter() - t0
    for st in states:
        st.manifest["throughput"] = {
            "tokens": fresh // len(states),
            "seconds": round(elapsed, 2),
            "tokens_per_s": round(fresh / len(states) / elapsed, 1) if elapsed > 0 else None,
            "note": f"one forward pass for {len(states)} hooks, stopped after the last one",
            "torch_threads": torch.get_num_threads(),
        }
        st.manifest["stats"] = _finalize_stats(st.dir, st.manifest)
        st.manifest["complete"] = True
        _write_json_atomic(st.dir / MANIFEST, st.manifest)
    return {st.hook: st.manifest for st in states}


def _identity(opts: HFHarvestOptions, hook: str, info: dict, docs: list[Document]) -> dict:
    cfg = asdict(opts)
    for k in ("out", "hooks", "batch_size", "progress", "device", "text", "data_files"):
        cfg.pop(k)  # do not change what is stored (the text is fingerprinted below)
    m = HOOK_RE.match(hook)
    cfg.update(
        hook=hook,
        layer=int(m.group(1)) if m else None,
        hook_point=m.group(2) if m else None,
        corpus=opts.dataset or ",".join(opts.text),
        window_stride=opts.window_stride,
        revision=opts.revision,
    )
    return {
        "format_version": FORMAT_VERSION,
        "config": cfg,
        "model": {k: info.get(k) for k in ("model_id", "revision", "weights_sha256")},
        "corpus_fingerprint": _corpus_fingerprint(docs),
    }


def _start_or_resume(
    out_dir: Path, identity: dict, info: dict, train: list[Document], held: list[Document]
) -> dict:
    if (out_dir / MANIFEST).is_file():
        manifest = load_manifest(out_dir)
        if manifest.get("identity") != identity:
            old = (manifest.get("identity") or {}).get("config") or {}
            new = identity["config"]
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            if manifest.get("identity", {}).get("model") != identity["model"]:
                diff.append("model")
            raise ManifestMismatchError(
                f"{out_dir} holds activations of a different harvest (differs in {diff or 'text'}): "
                "use a new --out directory, or delete this one to start over"
            )
        return keep_verified_shards(out_dir, manifest)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "identity": identity,
        "model_info": info,
        "complete": False,
        "documents": {"train": [d.name for d in train], "heldout": [d.name for d in held]},
        "bos_token": "BOS prefixed to every context, not stored; see implicit_em.data.hf_harvest",
        "dtype": "float16",
        "splits": {s: {"n_tokens": 0, "n_contexts": 0, "shards": []} for s in SPLITS},
    }
    _write_json_atomic(out_dir / MANIFEST, manifest)
    return manifest


def run(opts: HFHarvestOptions) -> dict:
    """The `implicit-em harvest --model ...` command: harvest and summarise per hook."""
    manifests = harvest_hf(opts)
    return {
        hook: {
            "dir": str(Path(opts.out) / hook_dir_name(hook)),
            "train_tokens": m["splits"]["train"]["n_tokens"],
            "heldout_tokens": m["splits"]["heldout"]["n_tokens"],
            "stored": stored_tokens_note(
                opts.n_tokens,
                m["splits"]["train"]["n_tokens"],
                m["splits"]["heldout"]["n_tokens"],
                opts.tokens_per_context,
            ),
            "throughput": m.get("throughput"),
        }
        for hook, m in manifests.items()
    }
