"""IDX reader on small files written here: raw and gzipped, good and corrupt."""

import gzip
import hashlib
import struct

import numpy as np
import pytest

from implicit_em.data import DataError, read_idx
from implicit_em.data.images.idx import parse_idx


def idx_bytes(array: np.ndarray, type_code: int) -> bytes:
    """IDX encoding of `array`: 00 00 type ndim, big-endian uint32 sizes, big-endian data."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


IMAGES = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)


@pytest.mark.parametrize("compress", [False, True])
def test_reads_raw_and_gzipped(tmp_path, compress):
    data = idx_bytes(IMAGES, 0x08)
    path = tmp_path / ("images.gz" if compress else "images")
    path.write_bytes(gzip.compress(data) if compress else data)
    out = read_idx(path, sha256=hashlib.sha256(data).hexdigest())
    assert out.shape == (3, 4, 5) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, IMAGES)


def test_gzip_is_detected_by_content_not_name(tmp_path):
    path = tmp_path / "images"  # No .gz suffix.
    path.write_bytes(gzip.compress(idx_bytes(IMAGES, 0x08)))
    np.testing.assert_array_equal(read_idx(path), IMAGES)


@pytest.mark.parametrize(
    ("dtype", "code"), [(np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D), (np.float64, 0x0E)]
)
def test_multibyte_types_are_big_endian(dtype, code):
    array = np.array([[1, -2, 300], [70000 % 30000, 5, -6]], dtype=dtype)
    out = parse_idx(idx_bytes(array, code))
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, array)


def test_truncated_file_names_file_expected_and_found(tmp_path):
    data = idx_bytes(IMAGES, 0x08)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(data[:-7])
    with pytest.raises(DataError) as err:
        read_idx(path)
    message = str(err.value)
    assert str(path) in message and "truncated" in message
    assert f"expected {len(data)} bytes, found {len(data) - 7}" in message


def test_oversized_file_is_rejected():
    with pytest.raises(DataError, match="oversized"):
        parse_idx(idx_bytes(IMAGES, 0x08) + b"\x00")


@pytest.mark.parametrize(
    "header", [b"\x01\x00\x08\x03", b"\x00\x00\x07\x03", b"\x00\x00\x08\x00", b"PK\x03\x04"]
)
def test_wrong_magic(header):
    data = header + idx_bytes(IMAGES, 0x08)[4:]
    with pytest.raises(DataError, match=f"name.idx: not an IDX file.*found {header.hex(' ')}"):
        parse_idx(data, "name.idx")


def test_short_header():
    with pytest.raises(DataError, match="truncated IDX header: expected 16 bytes"):
        parse_idx(b"\x00\x00\x08\x03\x00\x00\x00\x01")
    with pytest.raises(DataError, match="expected a 4-byte header, found 2"):
        parse_idx(b"\x00\x00")


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(idx_bytes(IMAGES, 0x08))[:-20])
    with pytest.raises(DataError, match=f"{path}: corrupt gzip stream"):
        read_idx(path)


def test_checksum_mismatch_names_expected_and_found(tmp_path):
    data = idx_bytes(IMAGES, 0x08)
    path = tmp_path / "images"
    path.write_bytes(data)
    wrong = "0" * 64
    with pytest.raises(DataError) as err:
        read_idx(path, sha256=wrong)
    message = str(err.value)
    assert str(path) in message and wrong in message
    assert hashlib.sha256(data).hexdigest() in message


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path / "nope")
