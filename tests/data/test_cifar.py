"""CIFAR-10 readers: binary and python versions agree, the channel order, and the restricted unpickler."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess

import numpy as np
import pytest

from bncli.data import DataCorruptError, cifar

from .helpers import ndarray_alloc_pickle, reconstruct_alloc_pickle, tiny_cifar, write_cifar_folder


def test_binary_and_python_versions_give_the_same_arrays(tmp_path):
    data = tiny_cifar()
    write_cifar_folder(tmp_path / "bin", "bin", data)
    write_cifar_folder(tmp_path / "py", "python", data)
    Xb, yb = cifar.read_bin(tmp_path / "bin", cifar.BIN_TRAIN)
    Xp, yp = cifar.read_py(tmp_path / "py", cifar.PY_TRAIN)
    assert Xb.shape == (20, 3072) and Xb.dtype == np.uint8 and yb.dtype == np.uint8
    assert np.array_equal(Xb, Xp) and np.array_equal(yb, yp)
    assert np.array_equal(Xb, np.concatenate([X for X, _ in data[0]]))
    assert np.array_equal(yb, np.concatenate([y for _, y in data[0]]))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_python_batches_of_any_protocol(tmp_path, protocol):
    data = tiny_cifar()
    write_cifar_folder(tmp_path, "python", data, protocol=protocol)
    X, y = cifar.read_py(tmp_path, cifar.PY_TEST)
    assert np.array_equal(X, data[1][0]) and np.array_equal(y, data[1][1])


def py2_batch(X, labels):
    """A pickle as Python 2's cPickle wrote the official files: protocol 2, str (bytes) keys and data,
    numpy.core.multiarray._reconstruct."""
    s = lambda b: b"U" + bytes([len(b)]) + b  # noqa: E731  SHORT_BINSTRING
    raw = X.tobytes()
    out = b"\x80\x02}q\x00(" + s(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + b"K\x00\x85" + s(b"b") + b"\x87R"
    out += b"(K\x01M" + struct.pack("<H", X.shape[0]) + b"M" + struct.pack("<H", X.shape[1]) + b"\x86"
    out += b"cnumpy\ndtype\n" + s(b"u1") + b"K\x00K\x01\x87R(K\x03" + s(b"|")
    out += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    out += b"\x89T" + struct.pack("<I", len(raw)) + raw + b"tb"
    out += s(b"labels") + b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"eu."
    return out


def test_python2_style_official_pickle_is_read(tmp_path):
    X = np.arange(3 * 3072, dtype=np.uint64).astype(np.uint8).reshape(3, 3072)
    p = tmp_path / "test_batch"
    p.write_bytes(py2_batch(X, [7, 0, 9]))
    Xr, yr = cifar.read_py_batch(p)
    assert np.array_equal(Xr, X) and yr.tolist() == [7, 0, 9]


def test_channel_order_rgb_planes(tmp_path):
    """A pixel with R=1, G=2, B=3 at row 0, column 0 lands at features 0, 1024 and 2048; (r, c) of a plane at
    r * 32 + c."""
    img = np.zeros((3, 32, 32), np.uint8)  # the file's own layout: channel planes, row-major
    img[:, 0, 0] = (1, 2, 3)
    img[:, 4, 5] = (10, 20, 30)
    X = img.reshape(1, 3072)
    for fmt, name in (("bin", "test_batch.bin"), ("python", "test_batch")):
        if fmt == "bin":
            cifar.write_bin_batch(tmp_path / name, X, [6])
            Xr, yr = cifar.read_bin_batch(tmp_path / name)
        else:
            cifar.write_py_batch(tmp_path / name, X, [6])
            Xr, yr = cifar.read_py_batch(tmp_path / name)
        assert (Xr[0, 0], Xr[0, 1024], Xr[0, 2048]) == (1, 2, 3)
        r, c = 4, 5
        assert (Xr[0, r * 32 + c], Xr[0, 1024 + r * 32 + c], Xr[0, 2048 + r * 32 + c]) == (10, 20, 30)
        assert tuple(Xr.reshape(-1, 3, 32, 32)[0, :, 4, 5]) == (10, 20, 30)
        assert yr.tolist() == [6]
    assert "red" in cifar.CHANNEL_ORDER and cifar.CHANNEL_ORDER.index("red") < cifar.CHANNEL_ORDER.index("blue")


def test_binary_record_bytes_are_label_then_pixels(tmp_path):
    p = tmp_path / "data_batch_1.bin"
    p.write_bytes(bytes([3]) + bytes([1]) * 1024 + bytes([2]) * 1024 + bytes([3]) * 1024)
    X, y = cifar.read_bin_batch(p)
    assert y.tolist() == [3] and X[0, 0] == 1 and X[0, 1024] == 2 and X[0, 3071] == 3


def test_truncated_binary_batch(tmp_path):
    p = tmp_path / "data_batch_1.bin"
    p.write_bytes(bytes(3073 * 2 - 5))
    with pytest.raises(DataCorruptError, match="whole number of 3073-byte records") as e:
        cifar.read_bin_batch(p)
    assert str(p) in str(e.value)


def test_binary_label_out_of_range(tmp_path):
    p = tmp_path / "data_batch_1.bin"
    p.write_bytes(bytes([11]) + bytes(3072))
    with pytest.raises(DataCorruptError, match="label 11"):
        cifar.read_bin_batch(p)


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


class _Subprocess:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


@pytest.mark.parametrize("payload", [_System, _Eval, _Subprocess])
def test_malicious_pickle_is_refused_and_not_executed(tmp_path, payload):
    marker = tmp_path / "pwned"
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": payload(marker)}
    p = tmp_path / "test_batch"
    p.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataCorruptError, match="refused to unpickle the global") as e:
        cifar.read_py_batch(p)
    assert str(p) in str(e.value)
    assert not marker.exists()


def test_malicious_pickle_would_really_have_run(tmp_path):
    """The payload used above is live: a plain pickle.loads executes it (so the refusal is meaningful)."""
    marker = tmp_path / "ran"
    raw = pickle.dumps(_Eval(marker), protocol=2)
    pickle.loads(raw)
    assert marker.exists()


def test_refused_global_is_named(tmp_path):
    p = tmp_path / "data_batch_1"
    p.write_bytes(b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R.")
    with pytest.raises(DataCorruptError, match=r"posix\.system"):
        cifar.read_py_batch(p)


def test_object_dtype_array_is_refused(tmp_path):
    p = tmp_path / "data_batch_1"
    p.write_bytes(pickle.dumps({b"data": np.array([[1]], dtype=object), b"labels": [0]}, protocol=2))
    with pytest.raises(DataCorruptError, match=str(p)):
        cifar.read_py_batch(p)


def test_only_latin1_codec_admitted(tmp_path):
    p = tmp_path / "data_batch_1"
    # _codecs.encode("x", "zlib_codec") is refused
    p.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\n\x00\x00\x00zlib_codec\x86R.")
    with pytest.raises(DataCorruptError, match="not a valid CIFAR-10 python batch"):
        cifar.read_py_batch(p)


@pytest.mark.parametrize("content, match", [
    (pickle.dumps([1, 2, 3], protocol=2), "expected a pickled dict"),
    (pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, protocol=2), "uint8 array"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, protocol=2), "count mismatch"),
    (pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}, protocol=2), "label 10"),
    (pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": ["a"]}, protocol=2), "list of ints"),
    (b"\x80\x02}q\x00(U\x04data", "not a valid CIFAR-10 python batch"),
    (b"", "not a valid CIFAR-10 python batch"),
])
def test_malformed_python_batches(tmp_path, content, match):
    p = tmp_path / "data_batch_1"
    p.write_bytes(content)
    with pytest.raises(DataCorruptError, match=match) as e:
        cifar.read_py_batch(p)
    assert str(p) in str(e.value)


def test_no_plain_pickle_load_in_the_package():
    """The readers never call pickle.load / pickle.loads (only the restricted Unpickler)."""
    import pathlib

    import bncli.data as pkg

    for path in pathlib.Path(pkg.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "pickle.load(" not in text and "pickle.loads(" not in text, path


# -- hostile batches: no allocation beyond the file, labels checked in Python -----------------------------------------
def _batch(tmp_path, content, name="data_batch_1"):
    p = tmp_path / name
    p.write_bytes(content)
    return p


@pytest.mark.parametrize("content, match", [
    (ndarray_alloc_pickle(100_000, 3), r"refused call of numpy\.ndarray \(it would allocate an array of any size\)"),
    (reconstruct_alloc_pickle(100_000), r"refused numpy _reconstruct of shape \(100000, 3072\)"),
    (b"\x80\x02}(U\x04datacnumpy\nndarray\nJ\xa0\x86\x01\x00M\x00\x0c\x86\x85\x81U\x06labels]u.",
     "NEWOBJ class argument must be a type"),
])
def test_pickle_cannot_allocate_an_array_from_a_shape(tmp_path, monkeypatch, content, match):
    """The issue: the restricted unpickler admitted numpy.ndarray, so a ~200 KB pickle could ask for 100,000
    uninitialised images. Refused before anything is allocated (np.ndarray is never called)."""
    p = _batch(tmp_path, content)
    with pytest.raises(DataCorruptError, match=match) as e:
        cifar.read_py_batch(p)
    assert str(e.value).startswith(f"{p}: not a valid CIFAR-10 python batch") and "\n" not in str(e.value)


def test_six_small_pickles_do_not_become_600000_images(tmp_path):
    for name in cifar.PY_TRAIN + cifar.PY_TEST:
        _batch(tmp_path, ndarray_alloc_pickle(100_000, 100_000), name)
    assert (tmp_path / "data_batch_1").stat().st_size < 250_000
    with pytest.raises(DataCorruptError, match="data_batch_1: not a valid CIFAR-10 python batch"):
        cifar.read_py(tmp_path, cifar.PY_TRAIN)


@pytest.mark.parametrize("labels, match", [
    ([1, 2**70], r"label 1180591620717411303424 of record 1 is out of range 0\.\.9$"),
    ([2**7000], r"label \(a 7001-bit integer\) of record 0 is out of range 0\.\.9$"),
    ([-1], r"label -1 of record 0 is out of range 0\.\.9$"),
    ([10], r"label 10 of record 0 is out of range 0\.\.9$"),
    ([True], "b'labels' must be a list of ints; label 0 is a bool"),
    ([1.0], "b'labels' must be a list of ints; label 0 is a float"),
    ([None], "b'labels' must be a list of ints; label 0 is a NoneType"),
    (np.array([1.5]), r"b'labels' must be a list of ints, got a float64 array of shape \(1,\)"),
    (np.array([[1]]), r"b'labels' must be a list of ints, got a int64 array of shape \(1, 1\)"),
    ({1: 2}, "b'labels' must be a list of ints, got dict"),
])
def test_labels_are_ints_0_to_9(tmp_path, labels, match):
    n = len(labels)
    p = _batch(tmp_path, pickle.dumps({b"data": np.zeros((n, 3072), np.uint8), b"labels": labels}, protocol=2))
    with pytest.raises(DataCorruptError, match=match) as e:
        cifar.read_py_batch(p)
    assert str(p) in str(e.value)


def test_label_array_of_ints_is_accepted(tmp_path):
    p = _batch(tmp_path, pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": np.array([3, 9])},
                                      protocol=4))
    _, y = cifar.read_py_batch(p)
    assert y.dtype == np.uint8 and y.tolist() == [3, 9]


@pytest.mark.parametrize("data", [np.zeros((1, 3072), "V1"), np.zeros((1, 3072), "S1"),
                                  np.zeros((1,), [("a", "u1"), ("b", "u1")])])
def test_non_numeric_dtypes_are_refused_while_unpickling(tmp_path, data):
    p = _batch(tmp_path, pickle.dumps({b"data": data, b"labels": [0]}, protocol=2))
    with pytest.raises(DataCorruptError, match="refused dtype"):
        cifar.read_py_batch(p)


@pytest.mark.parametrize("protocol", [2, 5])
def test_more_images_than_an_official_batch(tmp_path, protocol):
    n = cifar.MAX_RECORDS + 1
    p = _batch(tmp_path, pickle.dumps({b"data": np.zeros((n, 3072), np.uint8), b"labels": [0] * n},
                                      protocol=protocol))
    with pytest.raises(DataCorruptError, match=f"b'data' holds {n} images, more than the 10000 of an official"):
        cifar.read_py_batch(p)


def test_binary_batch_size_is_checked_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "_read_batch_file", lambda *a, **k: pytest.fail("read although the size refuses"))
    p = tmp_path / "data_batch_1.bin"
    p.write_bytes(bytes(cifar.RECORD * (cifar.MAX_RECORDS + 1)))
    with pytest.raises(DataCorruptError, match="10001 records, more than the 10000 of an official CIFAR-10 batch"):
        cifar.read_bin_batch(p)
    p.write_bytes(bytes(cifar.RECORD + 1))
    with pytest.raises(DataCorruptError, match="3074 bytes is not a whole number of 3073-byte records"):
        cifar.read_bin_batch(p)


@pytest.mark.parametrize("name, reader, match", [
    ("data_batch_1.bin", cifar.read_bin_batch, r"an empty file; expected a CIFAR-10 binary batch"),
    ("data_batch_1", cifar.read_py_batch, r"not a valid CIFAR-10 python batch \(an empty file\)"),
])
def test_zero_byte_batches(tmp_path, name, reader, match):
    p = _batch(tmp_path, b"", name)
    with pytest.raises(DataCorruptError, match=match):
        reader(p)


@pytest.mark.parametrize("reader", [cifar.read_bin_batch, cifar.read_py_batch])
def test_folder_or_pipe_instead_of_a_batch(tmp_path, reader):
    p = tmp_path / "data_batch_1"
    p.mkdir()
    with pytest.raises(DataCorruptError, match="data_batch_1: a folder; expected a CIFAR-10 batch file"):
        reader(p)
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(DataCorruptError, match="not a regular file"):
            reader(tmp_path / "fifo")


def test_python_batch_larger_than_the_cap_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "MAX_FILE_BYTES", 1000)
    p = _batch(tmp_path, bytes(1001))
    with pytest.raises(DataCorruptError, match="1001 bytes, too large for a CIFAR-10 batch"):
        cifar._read_batch_file(p, cifar.MAX_FILE_BYTES)


def test_numpy_own_pickles_still_load_under_the_restrictions(tmp_path):
    """Every protocol numpy uses for an array: _reconstruct of an empty array + __setstate__ (0-4), _frombuffer
    (5); uint8 data and int64 label arrays."""
    X = np.arange(2 * 3072).astype(np.uint8).reshape(2, 3072)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        p = _batch(tmp_path, pickle.dumps({b"data": X, b"labels": np.array([4, 5])}, protocol=protocol))
        Xr, yr = cifar.read_py_batch(p)
        assert np.array_equal(Xr, X) and yr.tolist() == [4, 5], protocol
