"""Hostile data files through the real command line (`bncli data info`, `bncli train`): IDX headers and payloads,
CIFAR-10 binary and python batches, hostile pickles; tar archives member by member (in-process: a hostile archive
never reaches extraction through the CLI, whose download is refused first by the published checksum); and a disk
that fills up mid-run. Bad data ends in one line naming the file (exit 1, or 2 where the files are missing), with
memory bounded by the data actually present."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bncli.data import DataCorruptError
from bncli.data.archive import extract_tar
from bncli.data.idx import write_idx

from .harness import TALLY, bncli, check, fuzz

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
CIFAR_BIN = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]


def tiny_mnist(folder: Path, skip=None, gz=True):
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), (np.arange(20) % 10).astype(np.uint8),
              rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), (np.arange(10) % 10).astype(np.uint8))
    folder.mkdir(parents=True, exist_ok=True)
    for stem, a in zip(MNIST_FILES, arrays):
        if stem != skip:
            write_idx(folder / (stem + (".gz" if gz else "")), a)


# -- IDX ---------------------------------------------------------------------------------------------------------------
@st.composite
def idx_file(draw):
    dtype = draw(st.sampled_from([0x08, 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF]))
    dims = draw(st.lists(st.one_of(st.integers(0, 40), st.sampled_from([28, 10**7, 10**9, 2**32 - 1])),
                         min_size=0, max_size=4))
    ndim = draw(st.one_of(st.just(len(dims)), st.integers(0, 255)))
    header = bytes([draw(st.sampled_from([0, 1])), 0, dtype, ndim]) + struct.pack(f">{len(dims)}I", *dims)
    payload = draw(st.one_of(st.binary(max_size=3000), st.just(b"\x00" * 28 * 28 * 3)))
    return header + payload


@given(st.sampled_from(MNIST_FILES), idx_file(), st.booleans())
@fuzz(40)
def test_random_idx_file(case_dir, which, data, gz):
    cwd = case_dir()
    folder = cwd / "mnist"
    tiny_mnist(folder, skip=which, gz=gz)
    (folder / (which + (".gz" if gz else ""))).write_bytes(gzip.compress(data, mtime=0) if gz else data)
    check(bncli(["data", "info", "mnist", "--path", folder], cwd), "IDX file (generated)", codes=(0, 1, 2))


@pytest.mark.parametrize("count, gz", [(10_000_000, True), (3_000_000, True), (10**9, False), (10**9, True)])
def test_idx_announcing_millions_of_images_in_a_small_file(case_dir, count, gz):
    cwd = case_dir()
    folder = cwd / "mnist"
    tiny_mnist(folder, skip=MNIST_FILES[0], gz=gz)
    raw = struct.pack(">I3I", 0x803, count, 28, 28) + b"\x00" * (2 << 20)  # 2 MiB of pixels, far fewer than said
    (folder / (MNIST_FILES[0] + (".gz" if gz else ""))).write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    o = check(bncli(["data", "info", "mnist", "--path", folder], cwd, mem_bytes=1 << 30), "IDX file (corpus)",
              codes=(1,))
    assert MNIST_FILES[0] in o.stderr


def test_nan_free_by_construction_but_labels_out_of_range(case_dir):
    cwd = case_dir()
    folder = cwd / "mnist"
    tiny_mnist(folder, skip=MNIST_FILES[1], gz=False)
    write_idx(folder / MNIST_FILES[1], np.full(20, 200, np.uint8))  # labels must be 0..9
    check(bncli(["data", "info", "mnist", "--path", folder], cwd), "IDX file (corpus)", codes=(1,),
          says=MNIST_FILES[1])


# -- CIFAR-10 ------------------------------------------------------------------------------------------------------------
def tiny_cifar_bin(folder: Path):
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for name in CIFAR_BIN:
        rec = np.concatenate([rng.integers(0, 10, (4, 1)), rng.integers(0, 256, (4, 3072))], 1).astype(np.uint8)
        (folder / name).write_bytes(rec.tobytes())


@given(st.sampled_from(CIFAR_BIN), st.one_of(st.binary(max_size=4 * 3073 + 5),
                                             st.integers(0, 255).map(lambda lab: bytes([lab]) + b"\x00" * 3072)))
@fuzz(25)
def test_random_cifar_binary_batch(case_dir, which, data):
    cwd = case_dir()
    folder = cwd / "cifar-10-batches-bin"
    tiny_cifar_bin(folder)
    (folder / which).write_bytes(data)
    check(bncli(["data", "info", "cifar10", "--path", folder], cwd), "CIFAR binary (generated)", codes=(0, 1, 2))


class Reduce:
    """An object whose pickle calls ``fn(*args)`` when loaded."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def uninitialised(n):
    return Reduce(np.ndarray, (n, 3072), np.uint8)


PICKLES = {
    "os-system": lambda: {b"data": Reduce(__import__("os").system, "echo pwned > pwned"), b"labels": [0]},
    "eval": lambda: Reduce(eval, "__import__('os').system('echo pwned > pwned')"),
    "huge-label": lambda: {b"data": np.zeros((4, 3072), np.uint8), b"labels": [2**70, 0, 0, 0]},
    "negative-label": lambda: {b"data": np.zeros((4, 3072), np.uint8), b"labels": [-1, 0, 0, 0]},
    "uninitialised-memory": lambda: {b"data": uninitialised(100_000), b"labels": [0] * 100_000},
    "not-a-dict": lambda: [1, 2, 3],
    "wrong-shape": lambda: {b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 0, 0, 0]},
    "float-pixels": lambda: {b"data": np.full((4, 3072), np.nan), b"labels": [0, 0, 0, 0]},
    "label-count": lambda: {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0]},
}


@pytest.mark.parametrize("name", sorted(PICKLES))
def test_hostile_cifar_pickle(case_dir, name):
    cwd = case_dir()
    folder = cwd / "cifar-10-batches-py"
    folder.mkdir()
    good = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / f).write_bytes(pickle.dumps(good, protocol=2))
    (folder / "data_batch_3").write_bytes(pickle.dumps(PICKLES[name](), protocol=2))
    check(bncli(["data", "info", "cifar10", "--path", folder], cwd), "CIFAR pickle (corpus)", codes=(1,),
          says="data_batch_3")
    assert not (cwd / "pwned").exists()


# -- tar archives (in-process) -------------------------------------------------------------------------------------------
NAMES = st.one_of(st.sampled_from(["x", "x/y", "x/y/z", "../x", "/abs", "a/../../b", ".", "./x", "x/", "", "x\\..\\y",
                                   "C:x", "\x00x", "cifar-10-batches-bin/data_batch_1.bin", "a" * 300]),
                  st.text(alphabet="ax/._-\\", min_size=1, max_size=12))
KINDS = st.sampled_from([tarfile.REGTYPE, tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                         tarfile.FIFOTYPE, tarfile.CHRTYPE])


def tar_of(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, kind, size, target in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            data = b"\x01" * size if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


@given(st.lists(st.tuples(NAMES, KINDS, st.integers(0, 64), st.sampled_from(["x", "../etc", "/etc/passwd", "x/y"])),
                min_size=1, max_size=6))
@fuzz(150)
def test_random_tar_members(case_dir, members):
    cwd = case_dir()
    try:
        raw = tar_of(members)
    except (ValueError, UnicodeError):
        return  # not even tarfile can write it
    (cwd / "a.tar").write_bytes(raw)
    dest = cwd / "out" / "dataset"
    before = sorted(p.name for p in cwd.iterdir())
    try:
        written = extract_tar(cwd / "a.tar", dest)
    except DataCorruptError:
        written = None  # refused, as a whole
    assert sorted(p.name for p in cwd.iterdir()) == sorted(set(before) | {"out"})  # nothing written beside it
    for p in (cwd / "out").rglob("*"):
        assert not p.is_symlink() and (p.is_dir() or p.is_file())
        assert p.resolve().is_relative_to(dest.resolve()) or p == dest
    if written is not None:
        assert all((dest / rel).is_file() for rel in written)
    TALLY["tar members (generated, in-process)", "clean"] += 1


@pytest.mark.parametrize("members", [
    [("x", tarfile.REGTYPE, 3, ""), ("x/y", tarfile.REGTYPE, 3, "")],
    [("x", tarfile.REGTYPE, 3, ""), ("x", tarfile.DIRTYPE, 0, "")],
    [("x", tarfile.DIRTYPE, 0, ""), ("x", tarfile.REGTYPE, 3, "")],
    [("x/y", tarfile.REGTYPE, 3, ""), ("x", tarfile.REGTYPE, 3, "")],
])
def test_tar_structure_conflicts_are_refused_as_a_whole(case_dir, members):
    cwd = case_dir()
    (cwd / "a.tar").write_bytes(tar_of(members))
    with pytest.raises(DataCorruptError, match="a.tar"):
        extract_tar(cwd / "a.tar", cwd / "dataset")
    TALLY["tar members (corpus, in-process)", "clean"] += 1


# -- a disk that fills up ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("limit", [1_500, 20_000])
def test_a_full_disk_mid_run_is_one_line_and_leaves_nothing_half_written(case_dir, limit):
    """RLIMIT_FSIZE makes every write past ``limit`` bytes fail (EFBIG), as a full disk would (ENOSPC)."""
    from sweep_helpers import write_config

    cwd = case_dir()
    cfg = write_config(cwd)
    o = bncli(["train", cfg, "--out", cwd / "out", "-j", "1"], cwd, file_bytes=limit)
    check(o, "full disk (corpus)", codes=(1,))
    # hidden temp files of a write cut short; bncli's manifest of what it wrote (.bncli.json) is not one
    leftovers = [p for p in (cwd / "out").rglob("*") if p.name.startswith(".") and p.name != ".bncli.json"]
    assert not leftovers, leftovers
    for run in (cwd / "out" / "runs").glob("*") if (cwd / "out" / "runs").exists() else []:
        assert {"metrics.csv", "summary.json", "meta.json", "config.yaml"} <= {p.name for p in run.iterdir()}
