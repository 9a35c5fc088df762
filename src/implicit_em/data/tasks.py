"""`implicit-em data fetch` and `implicit-em data pack-corpora`: options and run functions."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from implicit_em.options import flag


@dataclass(frozen=True)
class FetchOptions:
    """Fill the cache ($IMPLICIT_EM_CACHE, default ~/.cache/implicit_em) with the
    SHA-256-verified files of a data set, trying each source in turn."""

    dataset: Literal["fashion-mnist", "mnist"] = flag(positional=True)
    """data set to fetch"""
    data_dir: str | None = None
    """directory already holding the IDX files (raw or .gz), tried first (default:
    $IMPLICIT_EM_DATA)"""


def run_fetch(opts: FetchOptions) -> int:
    """Fetch the data set, printing each source tried; raises DataError when none serves it."""
    from implicit_em.data.images.sources import fetch

    start = time.perf_counter()
    dest = fetch(opts.dataset, data_dir=opts.data_dir, report=print)
    print(f"{opts.dataset} ready in {dest} ({time.perf_counter() - start:.1f} s)")
    return 0


@dataclass(frozen=True)
class PackCorporaOptions:
    """Fetch (once, into the cache) and clean the named text corpora, then write their
    documents to one .tar.gz. Point $IMPLICIT_EM_CORPORA to it, or pass its path as the
    corpus, to read them with no network."""

    spec: str = flag(positional=True)
    """comma-separated corpora among moby, perldoc, pydoc, sotu, spam"""
    out: str = ".carry/corpora.tar.gz"
    """tarball to write"""


def run_pack_corpora(opts: PackCorporaOptions) -> int:
    """Pack the corpora, printing one line per corpus."""
    from implicit_em.data.lm.corpus import PACK_ENV, pack_corpora

    start = time.perf_counter()
    manifest = pack_corpora(opts.spec, opts.out)
    for name, info in manifest["corpora"].items():
        print(f"{name}: {info['documents']} documents, {info['words']} words ({info['source']})")
    size = Path(opts.out).stat().st_size / 2**20
    print(
        f"wrote {opts.out} ({size:.1f} MiB) in {time.perf_counter() - start:.1f} s; "
        f"read it offline with {PACK_ENV}={opts.out}"
    )
    return 0
