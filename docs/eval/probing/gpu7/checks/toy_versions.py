"""CPU check of GPU run 7 (docs/eval/probing/gpu7_plan.md, "CPU checks", item 2): the code that
ran gpu2 (commit 8e5c271) and the code run 7 will carry give the same numbers, bit for bit, for
run 7's four shared rows at toy size on the CPU, where every InfoMax term takes the plain
formulas in both (the fused kernels are GPU-only). So on the device the one intended difference
from gpu2 is the hybrid's path (gpu2: fused kernels; run 7: IMPLICIT_EM_FUSED=off).

One run per call, in its own process, with the study's functions from CODE/scripts/probing_gpu.py
(CODE/src first on PYTHONPATH): the tests' tiny Llama and byte tokenizer (tests/test_probing_gpu.py,
tests/test_sparse_probing.py of this checkout), the study's TINY settings at K = 16 and 32,
seeds 0-1, and the rows of gpu2's plan_K4096.json (--plan gpu2) or gpu7/plan.json (--plan gpu7).

    git archive 8e5c271 src scripts | tar -x -C /tmp/g7old
    PYTHONPATH=/tmp/g7old/src python docs/eval/probing/gpu7/checks/toy_versions.py \
        --code /tmp/g7old --plan gpu2 --data /tmp/g7toy/data --out /tmp/g7toy/old
    PYTHONPATH=src python docs/eval/probing/gpu7/checks/toy_versions.py \
        --code . --plan gpu7 --data /tmp/g7toy/data --out /tmp/g7toy/new
    PYTHONPATH=src python docs/eval/probing/gpu7/check_repro.py /tmp/g7toy/new/results.json \
        /tmp/g7toy/old/results.json

The data are prepared once, by the first call (this checkout's `prepare` when --prepare is
given), and read by both.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import fields, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[5]
PROBING = ROOT / "docs" / "eval" / "probing"


def tiny_lm():
    """tests/test_probing_gpu.py's tiny Llama (3 layers, width 32, byte vocabulary), seeded."""
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=258, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=3, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    return transformers.LlamaForCausalLM(cfg).eval()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--code", required=True, help="a checkout holding scripts/probing_gpu.py")
    p.add_argument("--plan", choices=("gpu2", "gpu7"), required=True)
    p.add_argument("--data", required=True, help="data stem (prepared here with --prepare)")
    p.add_argument("--out", required=True)
    p.add_argument("--prepare", action="store_true")
    a = p.parse_args(argv)
    spec = importlib.util.spec_from_file_location("probing_gpu", Path(a.code) / "scripts"
                                                  / "probing_gpu.py")  # fmt: skip
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # the script's dataclasses look their module up
    spec.loader.exec_module(mod)
    known = {f.name for f in fields(mod.Plan)}
    tiny = {k: v for k, v in mod.TINY.items() if k in known}
    data = Path(a.data)
    if a.prepare:  # this checkout's test corpora and tokenizer
        sys.path.insert(0, str(ROOT / "tests"))
        from test_sparse_probing import ByteTokenizer, tiny_corpora

        mod.prepare(mod.Plan(**tiny), tiny_corpora(), ByteTokenizer(), data)
    meta, arrays = mod.load_data(data)
    if a.plan == "gpu2":
        over = json.loads((PROBING / "gpu2" / "plan_K4096.json").read_text())
    else:
        over = json.loads((PROBING / "gpu7" / "plan.json").read_text())
    over = {k: tuple(v) if isinstance(v, list) else v for k, v in over.items() if k in known}
    plan = replace(mod.Plan(**tiny), **{**over, "Ks": (16, 32), "seeds": (0, 1)})
    print(f"code {mod.__file__}; plan {a.plan}: rows "
          f"{[r.get('label') or r['family'] for r in plan.rows]}")  # fmt: skip
    res = mod.main_run(plan, meta, arrays, tiny_lm(), Path(a.out), "cpu")
    print(f"blocks {res['blocks_done']}; errors {res.get('errors')}")
    return 0 if not res.get("errors") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
