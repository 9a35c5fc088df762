"""Tokens of the study's five offline corpora on each side of prepare's document split
(docs/eval/probing/gpu5_plan.md, "Data"): SmolLM2-135M tokenizer, no special tokens,
test_fraction 0.3, data_seed 0 (`Plan` defaults), as `plan.prepare` splits them.

    PYTHONPATH=src python docs/eval/probing/gpu5/checks/count_tokens.py TOKENIZER_DIR

TOKENIZER_DIR: the dequantized LM's cache folder (tokenizer.json; `data.lm.model`), e.g.
~/.cache/implicit_em/models/SmolLM2-135M-Instruct.Q4_1-b179c9523d0e.
"""

import sys
import time

import torch
import transformers

from implicit_em.data.lm.corpus import load_corpus, split_documents

torch.set_num_threads(1)
t = time.time()
tok = transformers.AutoTokenizer.from_pretrained(sys.argv[1])
sides = {"train": [0, 0], "test": [0, 0]}  # tokens, documents
for c in ("sotu", "moby", "spam", "pydoc", "perldoc"):
    docs = load_corpus(c)
    row = {}
    for side, part in zip(("train", "test"), split_documents(docs, 0.3, 0), strict=True):
        n = sum(map(len, tok([d.text for d in part], add_special_tokens=False)["input_ids"]))
        row[side] = (n, len(part))
        sides[side][0] += n
        sides[side][1] += len(part)
    print(c, {s: f"{n:,} tokens in {d} docs" for s, (n, d) in row.items()}, flush=True)
for side, (n, d) in sides.items():
    print(f"total {side}: {n:,} tokens in {d} docs")
n, d = sides["train"]
print(
    f"train windows of 127 tokens (one EOS per document): {(n + d) // 127:,} = "
    f"{(n + d) // 127 * 127:,} tokens; elapsed {time.time() - t:.1f} s"
)
