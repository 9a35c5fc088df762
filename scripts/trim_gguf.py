"""Write a GGUF holding only the first N decoder blocks of a llama-architecture GGUF.

For a harvest at layer L `resid_pre` the forward stops at block L's input
(`implicit_em.data.lm.model.capture_residual`), so blocks L+1.. are never run; block L must
exist for the hook. Keeps every metadata field (tokenizer included) except `llama.block_count`
(set to N) and every tensor that is not `blk.<i>.*` with i >= N, bytes unchanged (quantized
types are copied raw). Used to carry SmolLM2-135M to the GPU machine under its 55 MiB limit.

    python scripts/trim_gguf.py SmolLM2-135M-Instruct.Q4_1.gguf trimmed.gguf --blocks 16
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gguf


def trim(src: Path, dst: Path, blocks: int) -> None:
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch, use_temp_file=False)
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue  # written by the writer itself
        value = field.contents()
        if name == f"{arch}.block_count":
            value = blocks
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, value, vtype, sub_type=sub)
    for t in r.tensors:
        if t.name.startswith("blk.") and int(t.name.split(".")[1]) >= blocks:
            continue
        w.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--blocks", type=int, required=True, help="decoder blocks kept (0..N-1)")
    a = p.parse_args()
    if a.dst.exists():
        raise SystemExit(f"{a.dst} exists: choose another output path")
    trim(a.src, a.dst, a.blocks)
    print(f"wrote {a.dst} ({a.dst.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
