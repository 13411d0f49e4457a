"""IDX files (MNIST, Fashion-MNIST), gzip-compressed or raw, read without trusting the header.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>`` (type 0x08 = unsigned byte), ``ndim`` big-endian
uint32 dimensions, then the data in row-major order. Images are 0x00000803 (count, rows, cols), labels 0x00000801
(count). Checked here: the magic number, the 28 x 28 image size, that the file holds exactly the announced number
of bytes (truncated or padded files are refused), that images and labels agree in count, and the label range.
Every error is a ``DataCorruptError`` naming the file.

Memory is bounded by the data actually there, never by what a header announces: the announced count is capped
(``MAX_ITEMS``, i.e. ``MAX_DATA_BYTES`` of pixels; MNIST's largest file holds 60,000 images, 47 MB), a raw file's
size is compared with the announced size before anything is read, and a ``.gz`` stream is decompressed chunk by
chunk into a buffer that only grows with what the stream really holds, and never past the announced size (+1 byte
to detect a longer stream).
"""

from __future__ import annotations

import gzip
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np

from .datasets import DataCorruptError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
MAX_DATA_BYTES = 200 << 20  # 200 MiB of data per file: MNIST's training images are 47 MB (60,000 x 28 x 28)
MAX_ITEMS = MAX_DATA_BYTES // (28 * 28)  # 267,488: a header announcing more is refused before anything is read
_CHUNK = 1 << 22


def _open(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _read_exactly(f, n: int) -> bytes | bytearray:
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def read_idx(path, kind: str, *, shape=(28, 28), n_classes=10) -> np.ndarray:
    """``kind`` "images" -> uint8 array (N, rows * cols); "labels" -> uint8 array (N,) with values < n_classes."""
    path = Path(path)
    gz = " (after gzip decompression)" if path.name.endswith(".gz") else ""
    try:
        size = _regular_file_size(path, kind)
        with _open(path) as f:
            dims = _read_header(f, path, kind, shape, gz)
            n = dims[0]
            per_item = int(np.prod(dims[1:])) if len(dims) > 1 else 1
            if not gz:  # a raw file: its size must be exactly header + announced data, checked before reading
                _check_raw_size(path, kind, n, n * per_item, size - 4 * (1 + len(dims)))
            data = _read_data(f, path, kind, n, n * per_item, gz)
    except (gzip.BadGzipFile, zlib.error) as e:
        raise DataCorruptError(f"{path}: not a valid gzip file ({e})") from None
    except EOFError:
        raise DataCorruptError(f"{path}: truncated gzip stream") from None
    except OSError as e:
        raise DataCorruptError(f"{path}: cannot read ({e.strerror or e})") from None
    arr = np.frombuffer(data, dtype=np.uint8)
    if kind == "images":
        return arr.reshape(n, per_item)
    if n and int(arr.max()) >= n_classes:
        bad = int(np.argmax(arr >= n_classes))
        raise DataCorruptError(f"{path}: label {int(arr[bad])} at index {bad} is out of range 0..{n_classes - 1}")
    return arr


def _regular_file_size(path: Path, kind: str) -> int:
    """The size of ``path``, refusing a folder, a device or a pipe (reading one could block or never end)."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        what = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, pipe or socket)"
        raise DataCorruptError(f"{path}: {what}; expected an IDX {kind} file")
    return st.st_size


def _check_raw_size(path: Path, kind: str, n: int, expected: int, held: int):
    if held < expected:
        raise DataCorruptError(f"{path}: truncated: the header announces {n} {kind} ({expected} bytes of data) "
                               f"but the file holds {held}")
    if held > expected:
        raise DataCorruptError(f"{path}: unexpected bytes after the {n} {kind} announced by the header "
                               f"({held - expected} bytes too many)")


def _read_header(f, path: Path, kind: str, shape, gz: str) -> tuple:
    """The dimensions announced by the header (count first), checked before any data is read or allocated."""
    magic_expected = IMAGES_MAGIC if kind == "images" else LABELS_MAGIC
    ndim = 3 if kind == "images" else 1
    head = _read_exactly(f, 4)
    if len(head) < 4:
        raise DataCorruptError(f"{path}: too short to be an IDX file ({len(head)} bytes"
                               f"{' after gzip decompression' if gz else ''})")
    (magic,) = struct.unpack(">I", head)
    if magic != magic_expected:
        what = {IMAGES_MAGIC: "an IDX image file", LABELS_MAGIC: "an IDX label file"}.get(magic)
        hint = (f"; this looks like {what} — are the file names swapped?" if what else
                "; this looks gzip-compressed: name it with .gz" if head[:2] == b"\x1f\x8b" and not gz else "")
        raise DataCorruptError(
            f"{path}: wrong magic number 0x{magic:08x}, expected 0x{magic_expected:08x} (IDX {kind} file)" + hint)
    dims_raw = _read_exactly(f, 4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DataCorruptError(f"{path}: truncated IDX header{gz}")
    dims = struct.unpack(f">{ndim}I", dims_raw)
    if kind == "images" and tuple(dims[1:]) != tuple(shape):
        raise DataCorruptError(f"{path}: images are {dims[1]}x{dims[2]}, expected {shape[0]}x{shape[1]}")
    if dims[0] > MAX_ITEMS:
        raise DataCorruptError(f"{path}: header announces {dims[0]} {kind}, implausibly many (at most {MAX_ITEMS} "
                               f"are read, {MAX_DATA_BYTES >> 20} MiB of data; MNIST's training set has 60000); "
                               "damaged or not an MNIST-format file")
    return dims


def _read_data(f, path: Path, kind: str, n: int, expected: int, gz: str):
    """Exactly the ``expected`` bytes the header announced (already capped by ``MAX_ITEMS``), read chunk by chunk:
    a shorter or a longer stream is refused, and nothing past ``expected`` + 1 byte is ever decompressed."""
    data = _read_exactly(f, expected)
    if len(data) < expected:
        raise DataCorruptError(f"{path}: truncated: the header announces {n} {kind} ({expected} bytes of "
                               f"data) but the file holds {len(data)}{gz}")
    if f.read(1):
        raise DataCorruptError(f"{path}: unexpected bytes after the {n} {kind} announced by the header{gz}")
    return data


def read_idx_pair(images_path, labels_path, *, shape=(28, 28), n_classes=10):
    """(X uint8 (N, rows * cols), y uint8 (N,)) with the counts of both files checked against each other."""
    X = read_idx(images_path, "images", shape=shape)
    y = read_idx(labels_path, "labels", n_classes=n_classes)
    if len(X) != len(y):
        raise DataCorruptError(f"count mismatch: {images_path} holds {len(X)} images but {labels_path} holds "
                               f"{len(y)} labels")
    return X, y


def write_idx(path, array: np.ndarray, compress=None):
    """Write a uint8 array as an IDX file (gzip if the name ends in .gz or ``compress``): for tests and tools."""
    path = Path(path)
    a = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x00000800 | a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
    raw = header + a.tobytes()
    if compress or (compress is None and path.name.endswith(".gz")):
        raw = gzip.compress(raw, mtime=0)
    path.write_bytes(raw)
    return path
