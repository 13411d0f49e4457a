"""Generated tiny dataset files and a local HTTP server with Range support, for the data tests."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from bncli.data import cifar
from bncli.data.idx import write_idx


def tiny_idx(n_train=30, n_test=12, seed=0):
    rng = np.random.default_rng(seed)
    X_train = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    y_train = (np.arange(n_train) % 10).astype(np.uint8)
    X_test = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    y_test = (np.arange(n_test) % 10)[::-1].astype(np.uint8)
    return X_train, y_train, X_test, y_test


def write_mnist_folder(folder, arrays=None, gz=True):
    """The four standard files in ``folder``; returns the arrays written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = arrays or tiny_idx()
    ext = ".gz" if gz else ""
    for stem, a in zip(("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                        "t10k-labels-idx1-ubyte"), arrays):
        write_idx(folder / f"{stem}{ext}", a)
    return arrays


def mnist_gz_bytes(arrays=None):
    """{served file name: gzip bytes} of a tiny MNIST-format set."""
    arrays = arrays or tiny_idx()
    out = {}
    for stem, a in zip(("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                        "t10k-labels-idx1-ubyte"), arrays):
        a = np.ascontiguousarray(a, np.uint8)
        raw = struct.pack(">I", 0x800 | a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
        out[f"{stem}.gz"] = gzip.compress(raw, mtime=0)
    return out


def tiny_cifar(n_per_batch=4, n_test=5, seed=1):
    rng = np.random.default_rng(seed)
    train = [(rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
              rng.integers(0, 10, n_per_batch).astype(np.uint8)) for _ in range(5)]
    test = (rng.integers(0, 256, (n_test, 3072), dtype=np.uint8), rng.integers(0, 10, n_test).astype(np.uint8))
    return train, test


def write_cifar_folder(folder, fmt="bin", data=None, protocol=2):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train, test = data or tiny_cifar()
    if fmt == "bin":
        for i, (X, y) in enumerate(train, 1):
            cifar.write_bin_batch(folder / f"data_batch_{i}.bin", X, y)
        cifar.write_bin_batch(folder / "test_batch.bin", *test)
    else:
        for i, (X, y) in enumerate(train, 1):
            cifar.write_py_batch(folder / f"data_batch_{i}", X, y, protocol=protocol)
        cifar.write_py_batch(folder / "test_batch", *test, protocol=protocol)
    return train, test


def tar_bytes(entries):
    """entries: list of (name, bytes) for files, or tarfile.TarInfo objects (links, devices, dirs)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                tf.addfile(e)
            else:
                name, data = e
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                ti.mode = 0o644
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def cifar_tar_bytes(fmt="bin", data=None, extra=()):
    train, test = data or tiny_cifar()
    sub = cifar.BIN_DIR if fmt == "bin" else cifar.PY_DIR
    entries = []
    for i, (X, y) in enumerate(list(train) + [test], 1):
        name = (f"data_batch_{i}" if i <= 5 else "test_batch") + (".bin" if fmt == "bin" else "")
        if fmt == "bin":
            data_ = np.concatenate([y[:, None], X], axis=1).astype(np.uint8).tobytes()
        else:
            data_ = pickle.dumps({b"data": X, b"labels": [int(v) for v in y]}, protocol=2)
        entries.append((f"{sub}/{name}", data_))
    entries.append((f"{sub}/batches.meta.txt", b"airplane\nautomobile\n"))
    return tar_bytes(entries + list(extra))


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class Server:
    """A threaded HTTP server on 127.0.0.1 (port 0) serving ``files`` {path: bytes}. ``ranges``: honour Range
    requests (206); ``cut_after``: {path: n} sends the full Content-Length but only n bytes, then hangs up
    (once). ``log``: (path, Range header, status) of every request."""

    def __init__(self, files, ranges=True):
        self.files = dict(files)
        self.ranges = ranges
        self.cut_after: dict[str, int] = {}
        self.log: list[tuple] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.lstrip("/")
                rng = self.headers.get("Range")
                data = outer.files.get(path)
                if data is None:
                    outer.log.append((path, rng, 404))
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng and outer.ranges:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        outer.log.append((path, rng, 416))
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                outer.log.append((path, rng, 206 if start else 200))
                cut = outer.cut_after.pop(path, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


# -- hostile files ------------------------------------------------------------------------------------------------
def idx_header(magic, *dims) -> bytes:
    """An IDX header announcing ``dims`` (count first), whatever follows it."""
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims)


def zero_bomb_gz(prefix: bytes, n_mib: int) -> bytes:
    """A gzip file decompressing to ``prefix`` + ``n_mib`` MiB of zero bytes, built in milliseconds from one
    flushed deflate block repeated (7,840 MiB of zeros make an ~8 MB file). The CRC is wrong: a reader that gets to
    the end of the stream has read far too much already."""
    import zlib

    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + head + block * n_mib + c.flush(zlib.Z_FINISH) + bytes(8)


def tar_header(name, size, typeflag=tarfile.REGTYPE) -> bytes:
    """One 512-byte GNU tar header announcing ``size`` bytes (base-256, so any size), without the data."""
    ti = tarfile.TarInfo(name)
    ti.type = typeflag
    b = bytearray(ti.tobuf(format=tarfile.GNU_FORMAT)[:512])
    b[124:136] = b"\x80" + bytes(3) + size.to_bytes(8, "big")
    b[148:156] = b" " * 8
    b[148:156] = b"%06o\x00 " % sum(b)
    return bytes(b)


def ndarray_alloc_pickle(n_images: int, n_labels: int = 0) -> bytes:
    """A small pickle whose ``b"data"`` is ``numpy.ndarray((n_images, 3072))``: uninitialised memory of any size if
    the unpickler lets ``numpy.ndarray`` be called."""
    shape = b"J" + struct.pack("<i", n_images) + b"M\x00\x0c\x86"
    return (b"\x80\x02}(U\x04datacnumpy\nndarray\n" + shape + b"\x85RU\x06labels](" + b"K\x01" * n_labels
            + b"eu.")


def reconstruct_alloc_pickle(n_images: int) -> bytes:
    """``numpy.core.multiarray._reconstruct(ndarray, (n_images, 3072), b"b")``: numpy's own pickles pass (0,)."""
    shape = b"J" + struct.pack("<i", n_images) + b"M\x00\x0c\x86"
    return (b"\x80\x02}(U\x04datacnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + shape
            + b"U\x01b\x87RU\x06labels]u.")
