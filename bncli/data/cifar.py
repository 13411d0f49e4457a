"""CIFAR-10 from its official files: the binary version (no pickle at all) or the python version (pickles, read
with a restricted unpickler that admits only what those files contain — never a plain ``pickle.load``).

Feature order (both versions, as the files store it): an image is 3072 bytes, the **red** plane, then the **green**
plane, then the **blue** plane, each 32 x 32 row-major. So feature ``c * 1024 + r * 32 + col`` is channel ``c``
(0 = R, 1 = G, 2 = B) at row ``r``, column ``col``; ``X.reshape(-1, 3, 32, 32)`` gives (N, C, H, W) images.

- ``cifar-10-batches-bin/``: ``data_batch_1.bin`` .. ``data_batch_5.bin``, ``test_batch.bin``; each record is
  1 label byte + 3072 pixel bytes (10,000 records per official file).
- ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5``, ``test_batch``; each a pickled dict with
  ``b"data"`` (uint8 array, 10000 x 3072) and ``b"labels"`` (list of ints).

Memory is bounded by the files' own sizes: a batch holds at most ``MAX_RECORDS`` (10,000, as the official ones) and
a binary batch's size is checked before it is read; the restricted unpickler can only rebuild an array from bytes
that are in the pickle itself (an empty ``ndarray`` filled by ``__setstate__``, whose size numpy checks against the
bytes given, or ``_frombuffer`` of in-band bytes), never allocate one from a shape (``numpy.ndarray(shape)`` or a
non-empty ``_reconstruct`` are refused). Labels must be Python ints 0..9 (checked before any numpy conversion).
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import stat
from pathlib import Path

import numpy as np

from .datasets import DataCorruptError

N_FEATURES = 3072
RECORD = 1 + N_FEATURES
CHANNEL_ORDER = "RGB planes: features 0-1023 red, 1024-2047 green, 2048-3071 blue; each plane 32x32 row-major"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
BIN_DIR, PY_DIR = "cifar-10-batches-bin", "cifar-10-batches-py"
BIN_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
BIN_TEST = ("test_batch.bin",)
PY_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
PY_TEST = ("test_batch",)
MAX_RECORDS = 10_000  # images per batch file, as in every official one
MAX_FILE_BYTES = 256 << 20  # a python batch: an official one is ~31 MB (~61 MB if re-pickled by Python 3)
MAX_BIN_BYTES = MAX_RECORDS * RECORD  # a binary batch: 30,730,000 bytes


def _batch_size(path: Path) -> int:
    """The size of a batch file, refusing a folder, a device or a pipe (reading one could block or never end)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise DataCorruptError(f"{path}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        what = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, pipe or socket)"
        raise DataCorruptError(f"{path}: {what}; expected a CIFAR-10 batch file")
    return st.st_size


def _read_batch_file(path: Path, max_bytes=MAX_FILE_BYTES) -> bytes:
    """The bytes of one batch file, refusing anything far larger than an official batch before reading it."""
    size = _batch_size(path)
    if size > max_bytes:
        raise DataCorruptError(f"{path}: {size} bytes, too large for a CIFAR-10 batch (at most {max_bytes})")
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)  # never more than the cap, even if the file grew since
    except OSError as e:
        raise DataCorruptError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(raw) > max_bytes:
        raise DataCorruptError(f"{path}: too large for a CIFAR-10 batch (at most {max_bytes} bytes)")
    return raw


# -- binary version ------------------------------------------------------------------------------------------------
def read_bin_batch(path, n_classes=10):
    """(X uint8 (N, 3072), y uint8 (N,)) from one binary batch file."""
    path = Path(path)
    _check_bin_size(path, _batch_size(path))  # before reading anything
    raw = _read_batch_file(path, MAX_BIN_BYTES)
    _check_bin_size(path, len(raw))  # and what was actually read (the file may have changed in between)
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    y = rec[:, 0].copy()
    _check_labels(path, y, n_classes)
    return rec[:, 1:], y


def _check_bin_size(path: Path, size: int):
    if not size:
        raise DataCorruptError(f"{path}: an empty file; expected a CIFAR-10 binary batch ({RECORD}-byte records: "
                               "1 label byte + 3072 pixels)")
    if size % RECORD:
        raise DataCorruptError(f"{path}: {size} bytes is not a whole number of {RECORD}-byte records "
                               f"(1 label byte + 3072 pixels); truncated or not a CIFAR-10 binary batch")
    if size > MAX_BIN_BYTES:
        raise DataCorruptError(f"{path}: {size // RECORD} records, more than the {MAX_RECORDS} of an official "
                               "CIFAR-10 batch")


def read_bin(folder, files):
    parts = [read_bin_batch(Path(folder) / f) for f in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# -- python version ------------------------------------------------------------------------------------------------
def _numpy_attr(modules, name):
    for mod in modules:
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise AttributeError(name)


_DTYPE_KINDS = "biuf"  # numbers only: no object, string, void (structured) or datetime dtypes


def _safe_dtype(*args):
    dt = np.dtype(*args)
    if dt.hasobject or dt.kind not in _DTYPE_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise pickle.UnpicklingError(f"refused dtype {dt}")
    return dt


def _latin1_encode(text, encoding="latin1"):
    # how Python 3 pickles bytes at protocol <= 2: _codecs.encode(str, "latin1"); no other codec admitted
    if encoding not in ("latin1", "latin-1", "iso-8859-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


class _RestrictedNDArray:
    """What the unpickler hands out for the global ``numpy.ndarray``: only a marker for ``_reconstruct``'s first
    argument. ``numpy.ndarray`` itself would let a pickle allocate any shape (``ndarray((10**6, 3072))`` via REDUCE
    or NEWOBJ): uninitialised memory out of all proportion to the file."""

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError("refused call of numpy.ndarray (it would allocate an array of any size)")

    def __repr__(self):
        return "numpy.ndarray (restricted)"


_NDARRAY = _RestrictedNDArray()


def _restricted_reconstruct(real):
    def _reconstruct(subtype, shape, typecode):
        """Only what numpy's own pickles do: ``_reconstruct(ndarray, (0,), b"b")``, an empty array that
        ``__setstate__`` then fills from bytes in the pickle (numpy checks that their size matches the shape)."""
        if subtype is not _NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
            raise pickle.UnpicklingError(f"refused numpy _reconstruct of shape {shape!r} (only an empty array is "
                                         "rebuilt, then filled from the pickle's own bytes)")
        return real(np.ndarray, (0,), b"b")
    return _reconstruct


def _restricted_frombuffer(real):
    def _frombuffer(buf, dtype, shape, order, *rest):
        """An array over bytes that are in the pickle (protocol 5, in-band): never larger than those bytes."""
        if not isinstance(buf, (bytes, bytearray)) or not isinstance(dtype, np.dtype):
            raise pickle.UnpicklingError("refused numpy _frombuffer of anything but in-band bytes and a dtype")
        _safe_dtype(dtype)
        return real(buf, dtype, shape, order, *rest)
    return _frombuffer


def _allowed():
    reconstruct = _restricted_reconstruct(_numpy_attr(("numpy._core.multiarray", "numpy.core.multiarray"),
                                                      "_reconstruct"))
    frombuffer = _restricted_frombuffer(_numpy_attr(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer"))
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy.core.numeric", "_frombuffer"): frombuffer,
        ("numpy._core.numeric", "_frombuffer"): frombuffer,
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _safe_dtype,
        ("_codecs", "encode"): _latin1_encode,
    }


class RestrictedUnpickler(pickle.Unpickler):
    """Admits only numpy's array reconstruction from the pickle's own bytes (numeric dtypes, no object dtype, no
    allocation from a shape) and the plain containers that pickle builds from opcodes (dict, list, tuple, bytes,
    str, int). Any other global — ``os.system``, ``builtins.eval``, ``subprocess.call``, ... — is refused *before*
    it is called."""

    def __init__(self, file, *, source="<pickle>"):
        super().__init__(file, encoding="bytes")
        self.source = source
        self.allowed = _allowed()

    def find_class(self, module, name):
        fn = self.allowed.get((module, name))
        if fn is None:
            raise DataCorruptError(f"{self.source}: refused to unpickle the global {module}.{name} (a CIFAR-10 "
                                   "python batch holds only a dict of arrays, lists and bytes; this file could run "
                                   "code and was not loaded)")
        return fn

    def persistent_load(self, pid):
        raise DataCorruptError(f"{self.source}: refused a persistent id in the pickle")


def safe_unpickle(raw: bytes, source="<pickle>"):
    try:
        return RestrictedUnpickler(io.BytesIO(raw), source=source).load()
    except DataCorruptError:
        raise
    except Exception as e:  # a malformed pickle can raise almost anything; none of it runs foreign code
        raise DataCorruptError(f"{source}: not a valid CIFAR-10 python batch ({type(e).__name__}: {e})") from None


def read_py_batch(path, n_classes=10):
    path = Path(path)
    raw = _read_batch_file(path)
    if not raw:
        raise DataCorruptError(f"{path}: not a valid CIFAR-10 python batch (an empty file)")
    d = safe_unpickle(raw, source=str(path))
    if not isinstance(d, dict):
        raise DataCorruptError(f"{path}: expected a pickled dict, got {type(d).__name__}")
    get = lambda key: d.get(key.encode(), d.get(key))  # noqa: E731  (bytes keys; str if re-pickled with latin1)
    X, labels = get("data"), get("labels")
    if not isinstance(X, np.ndarray) or X.dtype != np.uint8 or X.ndim != 2 or X.shape[1] != N_FEATURES:
        desc = f"{X.dtype} array of shape {X.shape}" if isinstance(X, np.ndarray) else type(X).__name__
        raise DataCorruptError(f"{path}: b'data' must be a uint8 array (N, {N_FEATURES}), got {desc}")
    if len(X) > MAX_RECORDS:
        raise DataCorruptError(f"{path}: b'data' holds {len(X)} images, more than the {MAX_RECORDS} of an official "
                               "CIFAR-10 batch")
    if X.nbytes > len(raw):  # cannot happen with the restricted unpickler; a second guard all the same
        raise DataCorruptError(f"{path}: b'data' is larger ({X.nbytes} bytes) than the file itself")
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise DataCorruptError(f"{path}: b'labels' must be a list of ints, got a {labels.dtype} array of shape "
                                   f"{labels.shape}")
        labels = labels.tolist()
    if not isinstance(labels, list):
        raise DataCorruptError(f"{path}: b'labels' must be a list of ints, got {type(labels).__name__}")
    if len(labels) != len(X):
        raise DataCorruptError(f"count mismatch in {path}: {len(X)} images but {len(labels)} labels")
    for i, v in enumerate(labels):  # in Python, before any numpy conversion (2**70 would overflow it)
        if not isinstance(v, int) or isinstance(v, bool):
            raise DataCorruptError(f"{path}: b'labels' must be a list of ints; label {i} is a {type(v).__name__}")
        if not 0 <= v < n_classes:
            shown = str(v) if v.bit_length() <= 128 else f"(a {v.bit_length()}-bit integer)"
            raise DataCorruptError(f"{path}: label {shown} of record {i} is out of range 0..{n_classes - 1}")
    return X, np.array(labels, dtype=np.uint8)


def read_py(folder, files):
    parts = [read_py_batch(Path(folder) / f) for f in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _check_labels(path, y, n_classes):
    if len(y) and int(y.max()) >= n_classes:
        bad = int(np.argmax(y >= n_classes))
        raise DataCorruptError(f"{path}: label {int(y[bad])} of record {bad} is out of range 0..{n_classes - 1}")


# -- writers for tests and tools -----------------------------------------------------------------------------------
def write_bin_batch(path, X, y):
    X = np.ascontiguousarray(X, dtype=np.uint8).reshape(len(X), N_FEATURES)
    rec = np.concatenate([np.asarray(y, np.uint8)[:, None], X], axis=1)
    Path(path).write_bytes(rec.tobytes())
    return Path(path)


def write_py_batch(path, X, y, protocol=2):
    d = {b"batch_label": b"generated batch", b"labels": [int(v) for v in y],
         b"data": np.ascontiguousarray(X, dtype=np.uint8).reshape(len(X), N_FEATURES),
         b"filenames": [f"img_{i}.png".encode() for i in range(len(X))]}
    Path(path).write_bytes(pickle.dumps(d, protocol=protocol))
    return Path(path)
