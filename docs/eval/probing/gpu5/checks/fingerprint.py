"""Bitwise check of Plan.epochs and the weights_of row key (docs/eval/probing/gpu5_plan.md,
"Code"): the gpu4 plan and the default plan at toy size on the CPU (the tests' tiny Llama and
corpora), with whatever code is on PYTHONPATH; the results without timings go to
OUT/gpu4.json and OUT/default.json, compared across two commits by bitwise_unchanged.sh.

    PYTHONPATH=src python docs/eval/probing/gpu5/checks/fingerprint.py OUT
"""

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[5] / "tests"))


def main(out: Path) -> None:
    import transformers
    from test_sparse_probing import ByteTokenizer, tiny_corpora

    import implicit_em.eval.probing_study as mod

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=False)

    def lm():
        torch.manual_seed(0)
        cfg = transformers.LlamaConfig(vocab_size=258, hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=3, num_attention_heads=4,
                                       num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
        return transformers.LlamaForCausalLM(cfg).eval()

    tiny = {**mod.TINY, "seeds": (0, 1)}
    mod.prepare(mod.Plan(**tiny), tiny_corpora(), ByteTokenizer(), out / "data")
    meta, arrays = mod.load_data(out / "data")
    over = json.loads((HERE.parents[2] / "gpu4" / "plan.json").read_text())
    over["Ks"] = [16, 32]
    plans = {"gpu4": replace(mod.Plan(**tiny), **mod.plan_fields(over)),
             "default": mod.Plan(**tiny)}  # fmt: skip
    for name, plan in plans.items():
        t = time.time()
        res = mod.main_run(plan, meta, arrays, lm(), out / name, "cpu")
        for k in ("harvest_s", "total_s", "probe_wait_s", "block_seconds", "plan"):
            res.pop(k, None)
        for v in res["train"].values():
            v.pop("seconds", None)
        (out / f"{name}.json").write_text(json.dumps(res, indent=1, sort_keys=True))
        print(name, round(time.time() - t, 1), "s", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
