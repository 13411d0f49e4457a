"""IDX reader: round trips (gzip and raw) and the refusals (magic, dimensions, truncation, count, labels)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from bncli.data import DataCorruptError, DataError
from bncli.data import idx as I
from bncli.data.idx import read_idx, read_idx_pair, write_idx

from .helpers import idx_header, tiny_idx, write_mnist_folder, zero_bomb_gz


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


# -- hostile headers: refused from the header or the file size, before the data is read ---------------------------
def _no_data_read(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the data was read although the header or the file size already refuses the file")
    monkeypatch.setattr(I, "_read_data", refuse)


@pytest.mark.parametrize("count, mib", [(10_000_000, 7840), (3_000_000, 2352)])
def test_issue_gz_announcing_millions_of_images_is_refused_at_the_header(tmp_path, monkeypatch, count, mib):
    """The cases of the issue: an ~8 MB .gz announcing 10,000,000 images (7.8 GB of zeros), a 2.4 MB one
    announcing 3,000,000: refused from the header, nothing decompressed past it."""
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(zero_bomb_gz(idx_header(0x803, count, 28, 28), mib))
    _no_data_read(monkeypatch)
    with pytest.raises(DataCorruptError, match=f"header announces {count} images, implausibly many "
                                               f"\\(at most {I.MAX_ITEMS} are read, 200 MiB") as e:
        read_idx(p, "images")
    assert str(e.value).startswith(f"{p}: ") and "\n" not in str(e.value)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("kind, dims", [("images", (10**9, 28, 28)), ("labels", (10**9,)),
                                        ("images", (I.MAX_ITEMS + 1, 28, 28))])
def test_count_over_the_cap_in_a_tiny_file(tmp_path, monkeypatch, gz, kind, dims):
    p = tmp_path / ("x" + (".gz" if gz else ""))
    raw = idx_header(0x803 if kind == "images" else 0x801, *dims) + bytes(784)
    p.write_bytes(gzip.compress(raw) if gz else raw)
    _no_data_read(monkeypatch)
    with pytest.raises(DataCorruptError, match=f"{dims[0]} {kind}, implausibly many"):
        read_idx(p, kind)


def test_cap_covers_the_real_sets():
    assert I.MAX_ITEMS >= 60_000 and I.MAX_ITEMS * 784 <= I.MAX_DATA_BYTES == 200 << 20


def test_raw_file_size_is_compared_with_the_header_before_reading(tmp_path, monkeypatch):
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(idx_header(0x803, 200_000, 28, 28) + bytes(784))
    _no_data_read(monkeypatch)
    with pytest.raises(DataCorruptError, match=r"truncated: the header announces 200000 images \(156800000 bytes "
                                               r"of data\) but the file holds 784$"):
        read_idx(p, "images")
    p.write_bytes(idx_header(0x801, 3) + bytes(3 + 1000))
    with pytest.raises(DataCorruptError, match=r"unexpected bytes after the 3 labels announced by the header "
                                               r"\(1000 bytes too many\)"):
        read_idx(p, "labels")


def test_gz_stream_longer_than_announced_is_not_decompressed_to_the_end(tmp_path, monkeypatch):
    """1,000 images announced, 7.8 GB of zeros in the stream: refused after reading 1,000 images + 1 byte."""
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(zero_bomb_gz(idx_header(0x803, 1000, 28, 28), 7840))
    read = []
    real_open = I._open

    class Counting:
        def __init__(self, f):
            self.f = f

        def read(self, n=-1):
            data = self.f.read(n)
            read.append(len(data))
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(I, "_open", lambda path: Counting(real_open(path)))
    with pytest.raises(DataCorruptError, match="unexpected bytes after the 1000 images announced by the header "
                                               r"\(after gzip decompression\)"):
        read_idx(p, "images")
    assert sum(read) == 16 + 1000 * 784 + 1


def test_gz_stream_shorter_than_announced(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(idx_header(0x803, I.MAX_ITEMS, 28, 28) + bytes(784 * 3)))
    with pytest.raises(DataCorruptError, match=f"truncated: the header announces {I.MAX_ITEMS} images .* but the file "
                                               r"holds 2352 \(after gzip decompression\)"):
        read_idx(p, "images")


@pytest.mark.parametrize("gz", [True, False])
def test_zero_byte_file(tmp_path, gz):
    p = tmp_path / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))
    p.write_bytes(b"")
    with pytest.raises(DataCorruptError, match=r"too short to be an IDX file \(0 bytes"
                                               + (" after gzip decompression" if gz else "") + r"\)$"):
        read_idx(p, "images")


def test_folder_instead_of_a_file(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte"
    p.mkdir()
    with pytest.raises(DataCorruptError, match="train-images-idx3-ubyte: a folder; expected an IDX images file"):
        read_idx(p, "images")


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no FIFOs here")
def test_pipe_instead_of_a_file_does_not_block(tmp_path):
    import os

    p = tmp_path / "train-labels-idx1-ubyte"
    os.mkfifo(p)
    with pytest.raises(DataCorruptError, match="not a regular file"):
        read_idx(p, "labels")


def test_missing_file_names_it(tmp_path):
    with pytest.raises(DataCorruptError, match="t10k-labels-idx1-ubyte: cannot read"):
        read_idx(tmp_path / "t10k-labels-idx1-ubyte", "labels")


def test_gzip_data_in_a_raw_named_file_says_so(tmp_path):
    p = tmp_path / "train-labels-idx1-ubyte"
    p.write_bytes(gzip.compress(idx_header(0x801, 1) + b"\x01"))
    with pytest.raises(DataCorruptError, match="looks gzip-compressed: name it with .gz"):
        read_idx(p, "labels")


def test_corrupt_deflate_data(tmp_path):
    good = gzip.compress(idx_header(0x803, 50, 28, 28) + bytes(range(256)) * 154, mtime=0)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    for pos in (20, len(good) // 2, len(good) - 12):
        bad = bytearray(good)
        bad[pos] ^= 0x55
        p.write_bytes(bytes(bad))
        with pytest.raises(DataCorruptError, match=str(p)):
            read_idx(p, "images")


def test_labels_must_match_the_images_count_even_when_both_files_are_valid(tmp_path):
    pi = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    pl = write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(DataCorruptError, match="holds 3 images but .* holds 4 labels"):
        read_idx_pair(pi, pl)
