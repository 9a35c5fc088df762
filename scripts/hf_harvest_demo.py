"""Harvest from a model given as a local directory (issue 16 demo), CPU.

    python scripts/hf_harvest_demo.py --text 'TEXT_GLOB' --tokenizer TOKENIZER_DIR --out DIR

1. Builds a tiny randomly initialised Llama (2 blocks, d_model 64) with the vocabulary of
   --tokenizer, writes it with `save_pretrained` to DIR/tiny-llama, and harvests four hooks
   from that folder in one pass (resid_pre, attn_out, mlp_out and a module name).
2. Checks the stored rows against a plain forward with output_hidden_states on the stored
   contexts (max |difference|, float16 storage).
3. With --real DIR2 (e.g. the dequantized SmolLM2 folder in the implicit-em cache), harvests
   two hooks of that real model too, and reports its throughput.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from implicit_em.data.hf_harvest import HFHarvestOptions, hook_dir_name, run
from implicit_em.data.lm.activations import read_split


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", required=True, help="glob of .txt files")
    p.add_argument("--tokenizer", required=True, help="folder with a tokenizer")
    p.add_argument("--out", required=True)
    p.add_argument("--real", default=None, help="a real model folder to harvest as well")
    p.add_argument("--json")
    args = p.parse_args()
    import transformers

    out = Path(args.out)
    tok = transformers.AutoTokenizer.from_pretrained(args.tokenizer)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(cfg).eval()
    folder = out / "tiny-llama"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    hooks = (
        "blocks.1.hook_resid_pre",
        "blocks.1.hook_attn_out",
        "blocks.0.hook_mlp_out",
        "model.layers.1.mlp.down_proj",
    )
    opts = HFHarvestOptions(
        model=str(folder), out=str(out / "acts-tiny"), hooks=hooks, text=(args.text,),
        ctx_len=128, n_tokens=20_000, batch_size=8, progress=False,
    )  # fmt: skip
    t0 = time.perf_counter()
    summary = {"tiny": run(opts), "tiny_seconds": round(time.perf_counter() - t0, 1)}
    x, tokens = read_split(out / "acts-tiny" / hook_dir_name(hooks[0]), "train")
    with torch.no_grad():
        h = model(input_ids=tokens[:32], output_hidden_states=True).hidden_states[1]
    ref = h[:, 1:].reshape(-1, 64)  # (32 * 127, D), BOS dropped
    summary["tiny_check"] = {
        "rows_compared": int(ref.shape[0]),
        "max_abs_diff_vs_hidden_states": float((x[: len(ref)] - ref).abs().max()),
        "max_abs_value": float(ref.abs().max()),
    }
    print(json.dumps(summary, indent=1))
    if args.real:
        opts = HFHarvestOptions(
            model=args.real, out=str(out / "acts-real"),
            hooks=("blocks.3.hook_resid_post", "blocks.3.hook_mlp_out"), text=(args.text,),
            ctx_len=128, n_tokens=5_000, batch_size=8, progress=False,
        )  # fmt: skip
        t0 = time.perf_counter()
        summary["real"] = run(opts)
        summary["real_seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(summary["real"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
