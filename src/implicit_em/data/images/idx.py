"""Reader for the IDX format of MNIST-style data sets, raw or gzipped.

IDX layout (big-endian): two zero bytes, a type code, the number of dimensions n, then n
uint32 sizes, then the data, row-major. The file must be exactly 4 + 4 n + prod(sizes) *
itemsize bytes long; anything else is a truncated or padded file and is rejected.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from implicit_em.data.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_bytes(path: str | Path) -> bytes:
    """Contents of `path`, decompressed when it is a gzip stream (detected by its magic bytes,
    not its name)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{path}: corrupt gzip stream ({err}); delete the file and fetch it again"
        ) from None


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into an array of the stored shape and a native-endian dtype.

    The array is a read-only view of `data` for single-byte types; `name` is used in errors.
    """
    if len(data) < 4:
        raise DataError(
            f"{name}: truncated IDX file: expected a 4-byte header, found {len(data)} bytes"
        )
    zero, type_code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or type_code not in IDX_DTYPES or ndim == 0:
        hint = " (a gzip stream that was not decompressed)" if data[:2] == GZIP_MAGIC else ""
        raise DataError(
            f"{name}: not an IDX file: expected magic 00 00 <type in "
            f"{{{', '.join(f'{c:02x}' for c in IDX_DTYPES)}}}> <ndim >= 1>, "
            f"found {data[:4].hex(' ')}{hint}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{name}: truncated IDX header: expected {header} bytes for {ndim} dimensions, "
            f"found {len(data)}"
        )
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[type_code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "oversized"
        raise DataError(
            f"{name}: {problem} IDX file: header says shape {shape} of {dtype.name}, "
            f"expected {expected} bytes, found {len(data)}; delete the file and fetch it again"
        )
    array = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | Path, sha256: str | None = None) -> np.ndarray:
    """Read an IDX file, raw or gzipped; when `sha256` is given, check the uncompressed bytes.

    Returns an array of the stored shape, e.g. (N, 28, 28) uint8 for MNIST images.
    """
    data = read_bytes(path)
    if sha256 is not None:
        check_sha256(data, sha256, path)
    return parse_idx(data, str(path))


def check_sha256(data: bytes, expected: str, name: str | Path) -> None:
    """Raise DataError unless SHA-256(data) == expected."""
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise DataError(
            f"{name}: checksum mismatch: expected SHA-256 {expected}, found {found}; "
            "the file is corrupt or a different data set; delete it and fetch it again"
        )
