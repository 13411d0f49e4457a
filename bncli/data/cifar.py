"""CIFAR-10 from its official files: the binary version (no pickle at all) or the python version (pickles, read
with a restricted unpickler that admits only what those files contain — never a plain ``pickle.load``).

Feature order (both versions, as the files store it): an image is 3072 bytes, the **red** plane, then the **green**
plane, then the **blue** plane, each 32 x 32 row-major. So feature ``c * 1024 + r * 32 + col`` is channel ``c``
(0 = R, 1 = G, 2 = B) at row ``r``, column ``col``; ``X.reshape(-1, 3, 32, 32)`` gives (N, C, H, W) images.

- ``cifar-10-batches-bin/``: ``data_batch_1.bin`` .. ``data_batch_5.bin``, ``test_batch.bin``; each record is
  1 label byte + 3072 pixel bytes (10,000 records per official file).
- ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5``, ``test_batch``; each a pickled dict with
  ``b"data"`` (uint8 array, 10000 x 3072) and ``b"labels"`` (list of ints).
"""

from __future__ import annotations

import importlib
import io
import pickle
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
MAX_FILE_BYTES = 256 << 20  # an official batch is ~31 MB


def _read_batch_file(path: Path) -> bytes:
    """The bytes of one batch file, refusing anything far larger than an official batch."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DataCorruptError(f"{path}: {size} bytes, too large for a CIFAR-10 batch")
        return path.read_bytes()
    except OSError as e:
        raise DataCorruptError(f"{path}: cannot read ({e.strerror or e})") from None


# -- binary version ------------------------------------------------------------------------------------------------
def read_bin_batch(path, n_classes=10):
    """(X uint8 (N, 3072), y uint8 (N,)) from one binary batch file."""
    path = Path(path)
    raw = _read_batch_file(path)
    if not raw or len(raw) % RECORD:
        raise DataCorruptError(f"{path}: {len(raw)} bytes is not a whole number of {RECORD}-byte records "
                               f"(1 label byte + 3072 pixels); truncated or not a CIFAR-10 binary batch")
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    y = rec[:, 0].copy()
    _check_labels(path, y, n_classes)
    return rec[:, 1:], y


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


def _safe_dtype(*args):
    dt = np.dtype(*args)
    if dt.hasobject:
        raise pickle.UnpicklingError("object dtype")
    return dt


def _latin1_encode(text, encoding="latin1"):
    # how Python 3 pickles bytes at protocol <= 2: _codecs.encode(str, "latin1"); no other codec admitted
    if encoding not in ("latin1", "latin-1", "iso-8859-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


def _allowed():
    reconstruct = _numpy_attr(("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct")
    frombuffer = _numpy_attr(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy.core.numeric", "_frombuffer"): frombuffer,
        ("numpy._core.numeric", "_frombuffer"): frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _safe_dtype,
        ("_codecs", "encode"): _latin1_encode,
    }


class RestrictedUnpickler(pickle.Unpickler):
    """Admits only numpy's array reconstruction (uint8 arrays, no object dtype) and the plain containers that
    pickle builds from opcodes (dict, list, tuple, bytes, str, int). Any other global — ``os.system``,
    ``builtins.eval``, ``subprocess.call``, ... — is refused *before* it is called."""

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
    d = safe_unpickle(raw, source=str(path))
    if not isinstance(d, dict):
        raise DataCorruptError(f"{path}: expected a pickled dict, got {type(d).__name__}")
    get = lambda key: d.get(key.encode(), d.get(key))  # noqa: E731  (bytes keys; str if re-pickled with latin1)
    X, labels = get("data"), get("labels")
    if not isinstance(X, np.ndarray) or X.dtype != np.uint8 or X.ndim != 2 or X.shape[1] != N_FEATURES:
        desc = f"{X.dtype} array of shape {X.shape}" if isinstance(X, np.ndarray) else type(X).__name__
        raise DataCorruptError(f"{path}: b'data' must be a uint8 array (N, {N_FEATURES}), got {desc}")
    if isinstance(labels, np.ndarray):
        labels = labels.tolist()
    if not isinstance(labels, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        raise DataCorruptError(f"{path}: b'labels' must be a list of ints")
    if len(labels) != len(X):
        raise DataCorruptError(f"count mismatch in {path}: {len(X)} images but {len(labels)} labels")
    if any(v < 0 for v in labels):
        raise DataCorruptError(f"{path}: negative label")
    y = np.array(labels, dtype=np.int64)
    _check_labels(path, y, n_classes)
    return X, y.astype(np.uint8)


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
