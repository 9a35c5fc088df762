"""`implicit-em data ...` subcommands; the top-level CLI calls `add_parser`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from implicit_em.data.corpus import CORPORA, PACK_ENV, pack_corpora
from implicit_em.data.errors import DataError
from implicit_em.data.sources import DATASETS, fetch


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `data fetch {mnist,fashion-mnist} [--data-dir DIR]` and
    `data pack-corpora SPEC --out FILE` on `subparsers`."""
    data = subparsers.add_parser("data", help="obtain and verify data sets")
    commands = data.add_subparsers(dest="data_command", required=True)
    fetch_parser = commands.add_parser(
        "fetch",
        help="fill the cache with a verified data set",
        description=(
            "Fill the cache ($IMPLICIT_EM_CACHE, default ~/.cache/implicit_em) with the "
            "SHA-256-verified files of a data set, trying each source in turn."
        ),
    )
    fetch_parser.add_argument("dataset", choices=sorted(DATASETS), help="data set to fetch")
    fetch_parser.add_argument(
        "--data-dir",
        default=None,
        help="directory already holding the IDX files (raw or .gz), tried first "
        "(default: $IMPLICIT_EM_DATA)",
    )
    fetch_parser.set_defaults(func=run_fetch)
    pack_parser = commands.add_parser(
        "pack-corpora",
        help="write text corpora to one tarball for machines without network",
        description=(
            "Fetch (once, into the cache) and clean the named text corpora, then write their "
            f"documents to one .tar.gz. Point ${PACK_ENV} to it, or pass its path as the "
            "corpus, to read them with no network."
        ),
    )
    pack_parser.add_argument(
        "spec", help=f"comma-separated corpora among {', '.join(sorted(CORPORA))}"
    )
    pack_parser.add_argument(
        "--out", default=".carry/corpora.tar.gz", help="tarball to write (default: %(default)s)"
    )
    pack_parser.set_defaults(func=run_pack_corpora)
    return data


def run_fetch(args: argparse.Namespace) -> int:
    """Fetch `args.dataset`, printing each source tried; 0 on success, 1 on failure."""
    start = time.perf_counter()
    try:
        dest = fetch(args.dataset, data_dir=args.data_dir, report=print)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{args.dataset} ready in {dest} ({time.perf_counter() - start:.1f} s)")
    return 0


def run_pack_corpora(args: argparse.Namespace) -> int:
    """Pack `args.spec` into `args.out`, printing one line per corpus; 0 on success, 1 on error."""
    start = time.perf_counter()
    try:
        manifest = pack_corpora(args.spec, args.out)
    except (ValueError, RuntimeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, info in manifest["corpora"].items():
        print(f"{name}: {info['documents']} documents, {info['words']} words ({info['source']})")
    size = Path(args.out).stat().st_size / 2**20
    print(
        f"wrote {args.out} ({size:.1f} MiB) in {time.perf_counter() - start:.1f} s; "
        f"read it offline with {PACK_ENV}={args.out}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry: `python -m implicit_em.data.cli data fetch mnist`."""
    from implicit_em.cli import standalone

    return standalone(add_parser, argv, prog="python -m implicit_em.data.cli")


if __name__ == "__main__":
    sys.exit(main())
