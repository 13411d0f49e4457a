"""IDX reader: round trips (gzip and raw) and the refusals (magic, dimensions, truncation, count, labels)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from bncli.data import DataCorruptError, DataError
from bncli.data.idx import read_idx, read_idx_pair, write_idx

from .helpers import tiny_idx, write_mnist_folder


@pytest.mark.parametrize("gz", [True, False])
def test_round_trip(tmp_path, gz):
    X_train, y_train, X_test, y_test = write_mnist_folder(tmp_path, gz=gz)
    ext = ".gz" if gz else ""
    X, y = read_idx_pair(tmp_path / f"train-images-idx3-ubyte{ext}", tmp_path / f"train-labels-idx1-ubyte{ext}")
    assert X.dtype == np.uint8 and X.shape == (30, 784) and y.shape == (30,)
    assert np.array_equal(X, X_train.reshape(30, 784)) and np.array_equal(y, y_train)
    # row-major: pixel (r, c) of image i is feature r * 28 + c
    assert X[3, 5 * 28 + 7] == X_train[3, 5, 7]
    Xt, yt = read_idx_pair(tmp_path / f"t10k-images-idx3-ubyte{ext}", tmp_path / f"t10k-labels-idx1-ubyte{ext}")
    assert np.array_equal(Xt, X_test.reshape(12, 784)) and np.array_equal(yt, y_test)


def test_gzip_and_raw_give_the_same_arrays(tmp_path):
    write_mnist_folder(tmp_path / "a", gz=True)
    write_mnist_folder(tmp_path / "b", gz=False)
    a = read_idx(tmp_path / "a" / "train-images-idx3-ubyte.gz", "images")
    b = read_idx(tmp_path / "b" / "train-images-idx3-ubyte", "images")
    assert np.array_equal(a, b)


def header(magic, *dims):
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims)


@pytest.mark.parametrize("gz", [True, False])
def test_wrong_magic_names_the_file(tmp_path, gz):
    p = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    raw = header(0x00000804, 2, 28, 28) + bytes(2 * 784)
    p.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataCorruptError, match="magic number 0x00000804") as e:
        read_idx(p, "images")
    assert str(p) in str(e.value)


def test_label_file_given_as_images_is_recognised(tmp_path):
    p = write_idx(tmp_path / "labels", np.zeros(5, np.uint8))
    with pytest.raises(DataCorruptError, match="looks like an IDX label file"):
        read_idx(p, "images")


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_file_names_the_file(tmp_path, gz):
    p = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    raw = header(0x803, 10, 28, 28) + bytes(9 * 784 + 100)
    p.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataCorruptError, match="truncated") as e:
        read_idx(p, "images")
    assert str(p) in str(e.value)


def test_truncated_gzip_stream(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte.gz"
    full = gzip.compress(header(0x803, 10, 28, 28) + bytes(range(256)) * 31)
    p.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataCorruptError, match=str(p).replace("\\", "\\\\")):
        read_idx(p, "images")


def test_not_gzip_at_all(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(DataCorruptError, match="gzip"):
        read_idx(p, "images")


def test_trailing_bytes_are_refused(tmp_path):
    p = tmp_path / "train-labels-idx1-ubyte"
    p.write_bytes(header(0x801, 3) + bytes([1, 2, 3, 4]))
    with pytest.raises(DataCorruptError, match="unexpected bytes"):
        read_idx(p, "labels")


def test_wrong_image_size(tmp_path):
    p = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(DataCorruptError, match="32x32, expected 28x28"):
        read_idx(p, "images")


def test_implausible_count_is_refused_before_reading(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(header(0x803, 0xFFFFFFFF, 28, 28))
    with pytest.raises(DataCorruptError, match="implausibly many"):
        read_idx(p, "images")


def test_count_mismatch_names_both_files(tmp_path):
    X, y, _, _ = tiny_idx()
    pi = write_idx(tmp_path / "train-images-idx3-ubyte.gz", X)
    pl = write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y[:-1])
    with pytest.raises(DataCorruptError, match="count mismatch") as e:
        read_idx_pair(pi, pl)
    assert str(pi) in str(e.value) and str(pl) in str(e.value)


def test_label_out_of_range(tmp_path):
    p = write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 3, 12], np.uint8))
    with pytest.raises(DataCorruptError, match="label 12 at index 2"):
        read_idx(p, "labels")


def test_too_short_file(tmp_path):
    p = tmp_path / "t10k-labels-idx1-ubyte"
    p.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="too short"):
        read_idx(p, "labels")


def test_corrupt_errors_are_exit_code_1_and_data_errors():
    from bncli.data import DataMissingError
    from bncli.errors import BncliError, UsageError

    assert issubclass(DataCorruptError, DataError) and issubclass(DataCorruptError, BncliError)
    assert DataCorruptError.exit_code == 1
    assert issubclass(DataMissingError, DataError) and issubclass(DataMissingError, UsageError)
    assert DataMissingError.exit_code == 2
