"""The pieces of ``fetch.download`` and ``fetch.extract_tar`` on their own: member checks, size bounds, Range
answers, the progress protocol; and the data layer's independence from the UI libraries."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import subprocess
import sys
import tarfile
from pathlib import PurePosixPath

import pytest

from bncli.data import DataCorruptError, archive as A, download as D

from .helpers import cifar_tar_bytes, md5, tar_bytes, tar_header, zero_bomb_gz

ARCHIVE = "dl/a.tar.gz"


def _info(name, kind=tarfile.REGTYPE, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mode = kind, linkname, 0o755 if kind == tarfile.DIRTYPE else 0o644
    return ti


# -- member checks ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    ("cifar-10-batches-bin/data_batch_1.bin", "cifar-10-batches-bin/data_batch_1.bin"),
    ("./cifar-10-batches-bin//./test_batch.bin", "cifar-10-batches-bin/test_batch.bin"),
    ("cifar-10-batches-bin\\readme.txt", "cifar-10-batches-bin/readme.txt"),
])
def test_check_member_accepts_plain_files_and_normalises_the_path(tmp_path, name, expected):
    assert A._check_member(_info(name), ARCHIVE, tmp_path) == PurePosixPath(expected)


def test_check_member_accepts_folders(tmp_path):
    assert A._check_member(_info("cifar-10-batches-bin/", tarfile.DIRTYPE), ARCHIVE, tmp_path) == \
        PurePosixPath("cifar-10-batches-bin")


@pytest.mark.parametrize("member, match", [
    (_info(""), "empty or invalid name"),
    (_info("a\x00b"), "empty or invalid name"),
    (_info("./"), "empty path"),
    (_info("/etc/passwd"), "absolute path"),
    (_info("\\\\server\\share\\x"), "absolute path"),
    (_info("C:evil.txt"), "absolute path"),
    (_info("a/../../evil.txt"), "'..' in its path"),
    (_info("a\\..\\..\\evil.txt"), "'..' in its path"),
    (_info("a/link", tarfile.SYMTYPE, "../../etc"), "symbolic link"),
    (_info("a/hard", tarfile.LNKTYPE, "/etc/passwd"), "hard link"),
    (_info("a/chr", tarfile.CHRTYPE), "not a regular file"),
    (_info("a/blk", tarfile.BLKTYPE), "not a regular file"),
    (_info("a/fifo", tarfile.FIFOTYPE), "not a regular file"),
])
def test_check_member_refuses(tmp_path, member, match):
    with pytest.raises(A.UnsafeArchiveError, match=match) as e:
        A._check_member(member, ARCHIVE, tmp_path)
    assert str(e.value).startswith(f"{ARCHIVE}: refused")
    assert isinstance(e.value, DataCorruptError) and e.value.exit_code == 1


def _archive(tmp_path, entries):
    p = tmp_path / "dl" / "a.tar.gz"
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(tar_bytes(entries))
    return p


def test_members_outside_only_under_are_still_checked(tmp_path):
    archive = _archive(tmp_path, [("cifar-10-batches-bin/ok.bin", b"ok"), _info("other/dev", tarfile.CHRTYPE)])
    dest = tmp_path / "cifar10"
    with pytest.raises(A.UnsafeArchiveError, match="other/dev"):
        A.extract_tar(archive, dest, only_under=("cifar-10-batches-bin",))
    assert not list(dest.iterdir())


# -- extraction bounds -----------------------------------------------------------------------------------------
def test_size_bound_refuses_the_whole_archive(tmp_path):
    archive = _archive(tmp_path, [("d/a", b"x" * 60), ("d/b", b"y" * 60)])
    dest = tmp_path / "out"
    with pytest.raises(A.UnsafeArchiveError, match="unpacks to more than 100 bytes"):
        A.extract_tar(archive, dest, max_bytes=100)
    assert not list(dest.iterdir())
    assert A.extract_tar(archive, dest, max_bytes=120) == ["d/a", "d/b"]


def test_skipped_members_do_not_count_towards_the_size_bound(tmp_path):
    archive = _archive(tmp_path, [("skipped/big", b"z" * 500), ("kept/small", b"s" * 10)])
    assert A.extract_tar(archive, tmp_path / "out", only_under=("kept",), max_bytes=100) == ["kept/small"]
    assert not (tmp_path / "out" / "skipped").exists()


def test_member_appearing_twice_is_refused(tmp_path):
    archive = _archive(tmp_path, [("d/a", b"first"), ("d/./a", b"second")])
    dest = tmp_path / "out"
    with pytest.raises(A.UnsafeArchiveError, match="appears twice"):
        A.extract_tar(archive, dest)
    assert not list(dest.iterdir())


def test_truncated_archive_is_damaged_and_leaves_nothing(tmp_path):
    good = cifar_tar_bytes("bin")
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(good[: len(good) // 2])
    dest = tmp_path / "out"
    with pytest.raises(DataCorruptError, match="damaged tar archive"):
        A.extract_tar(archive, dest)
    assert not list(dest.iterdir())


def test_existing_copy_is_replaced_whole(tmp_path):
    dest = tmp_path / "out"
    (dest / "d").mkdir(parents=True)
    (dest / "d" / "stale").write_bytes(b"old")
    (dest / "keep-me").write_bytes(b"not in the archive")
    A.extract_tar(_archive(tmp_path, [("d/a", b"new")]), dest)
    assert sorted(p.name for p in (dest / "d").iterdir()) == ["a"]
    assert (dest / "keep-me").read_bytes() == b"not in the archive"
    assert sorted(p.name for p in dest.iterdir()) == ["d", "keep-me"]  # no staging or .old folder left


# -- Range answers ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, start", [("bytes 100-999/1000", 100), ("bytes 0-9/*", 0), ("items 1-2/3", None),
                                          ("bytes x-9/10", None), ("", None)])
def test_content_range_start(value, start):
    assert D._content_range_start(value) == start


class _Resp:
    def __init__(self, status, content_range=None):
        self.status = status
        self.headers = {} if content_range is None else {"Content-Range": content_range}


def test_response_start(tmp_path):
    part = tmp_path / "f.part"
    assert D._response_start(_Resp(206, "bytes 100-999/1000"), "http://h/f", part, 100) == 100
    assert D._response_start(_Resp(200), "http://h/f", part, 100) == 0  # Range ignored: start over
    assert D._response_start(_Resp(200), "http://h/f", part, 0) == 0
    with pytest.raises(D.FetchError, match=r"asked for bytes from 100, the server sent 'bytes 0-999/1000'") as e:
        D._response_start(_Resp(206, "bytes 0-999/1000"), "http://h/f", part, 100)
    assert f"delete {part} to start over" in str(e.value)


# -- the progress protocol -------------------------------------------------------------------------------------
class Recorder:
    """Duck-typed: not a subclass of fetch.Progress."""

    def __init__(self):
        self.calls = []

    def start(self, label, total, completed=0):
        self.calls.append(("start", label, total, completed))

    def update(self, completed):
        self.calls.append(("update", completed))

    def finish(self):
        self.calls.append(("finish",))


DATA = bytes(range(256)) * 40


def test_progress_fresh_and_resumed(serve, tmp_path):
    server = serve({"f.bin": DATA})
    rec = Recorder()
    res = D.download(server.url + "f.bin", tmp_path / "f.bin", md5(DATA), progress=rec)
    assert res["resumed_from"] == 0 and res["size"] == len(DATA) and res["md5"] == md5(DATA)
    assert rec.calls[0] == ("start", "f.bin", len(DATA), 0)
    assert rec.calls[-2:] == [("update", len(DATA)), ("finish",)]
    (tmp_path / "g.bin.part").write_bytes(DATA[:1000])
    rec = Recorder()
    res = D.download(server.url + "f.bin", tmp_path / "g.bin", md5(DATA), progress=rec)
    assert res["resumed_from"] == 1000 and (tmp_path / "g.bin").read_bytes() == DATA
    assert rec.calls[0] == ("start", "g.bin", len(DATA), 1000)
    assert rec.calls[-1] == ("finish",) and rec.calls.count(("finish",)) == 1


def test_progress_finishes_on_a_cut_connection(serve, tmp_path):
    server = serve({"f.bin": DATA})
    server.cut_after["f.bin"] = 700
    rec = Recorder()
    with pytest.raises(D.FetchError, match="connection closed after 700 of"):
        D.download(server.url + "f.bin", tmp_path / "f.bin", md5(DATA), progress=rec)
    assert rec.calls[0] == ("start", "f.bin", len(DATA), 0) and rec.calls[-1] == ("finish",)
    assert (tmp_path / "f.bin.part").stat().st_size == 700


def test_complete_part_needs_no_transfer_and_no_progress(serve, tmp_path):
    server = serve({"f.bin": DATA})
    (tmp_path / "f.bin.part").write_bytes(DATA)
    rec = Recorder()
    res = D.download(server.url + "f.bin", tmp_path / "f.bin", md5(DATA), progress=rec)
    assert res["resumed_from"] == len(DATA) and rec.calls == []
    assert [status for _, _, status in server.log] == [416]


def test_bogus_part_answered_416_starts_over(serve, tmp_path):
    server = serve({"f.bin": DATA})
    (tmp_path / "f.bin.part").write_bytes(b"?" * (len(DATA) + 5))
    res = D.download(server.url + "f.bin", tmp_path / "f.bin", md5(DATA))
    assert res["resumed_from"] == 0 and (tmp_path / "f.bin").read_bytes() == DATA
    assert [(rng, status) for _, rng, status in server.log] == [(f"bytes={len(DATA) + 5}-", 416), (None, 200)]


# -- the data layer is UI-free ---------------------------------------------------------------------------------
def test_data_layer_imports_neither_typer_nor_rich():
    code = ("import sys\n"
            "import bncli.data, bncli.data.fetch, bncli.data.sources, bncli.data.idx, bncli.data.cifar\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'click'))\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr



# -- structure conflicts and hostile headers -------------------------------------------------------------------------
def _dir(name):
    return _info(name, tarfile.DIRTYPE)


@pytest.mark.parametrize("entries, match", [
    ([("x", b"1"), ("x/y", b"2")], r"refused member 'x/y': 'x' is a file in this archive, not a folder"),
    ([("x", b"1"), _dir("x")], r"refused member 'x': the archive holds 'x' both as a file and as a folder"),
    ([_dir("x"), ("x", b"1")], r"refused member 'x': the archive holds 'x' both as a file and as a folder"),
    ([("x/y", b"2"), ("x", b"1")], r"refused member 'x': the archive holds 'x' both as a file and as a folder"),
    ([("d/x", b"1"), ("d/x/y/z", b"2")], r"refused member 'd/x/y/z': 'd/x' is a file in this archive"),
    ([("d/a", b"1"), ("./d//a", b"2")], r"refused: member './d//a' appears twice"),
])
def test_structure_conflicts_are_archive_errors(tmp_path, entries, match):
    """The issue: a member ``x`` followed by ``x/y`` or a folder ``x`` ended in FileExistsError."""
    archive = _archive(tmp_path, entries)
    dest = tmp_path / "out"
    with pytest.raises(A.UnsafeArchiveError, match=match) as e:
        A.extract_tar(archive, dest)
    assert str(e.value).startswith(f"{archive}: refused") and "\n" not in str(e.value)
    assert not list(dest.iterdir())


def test_conflicts_are_found_among_skipped_members_too(tmp_path):
    archive = _archive(tmp_path, [("kept/a", b"1"), ("other/x", b"1"), ("other/x/y", b"2")])
    with pytest.raises(A.UnsafeArchiveError, match="'other/x' is a file"):
        A.extract_tar(archive, tmp_path / "out", only_under=("kept",))


def test_a_folder_listed_twice_is_fine(tmp_path):
    archive = _archive(tmp_path, [_dir("d"), ("d/a", b"1"), _dir("d"), _dir("d/e"), ("d/e/f", b"2")])
    assert A.extract_tar(archive, tmp_path / "out") == ["d/a", "d/e/f"]


def _raw_archive(tmp_path, data: bytes):
    p = tmp_path / "dl" / "a.tar.gz"
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(data)
    return p


def test_huge_declared_size_is_refused_before_writing(tmp_path):
    archive = _raw_archive(tmp_path, gzip.compress(tar_header("d/big", 5 << 30) + b"x" * 1024 + bytes(1024)))
    dest = tmp_path / "out"
    with pytest.raises(A.UnsafeArchiveError, match=r"unpacks to more than 2147483648 bytes \(member 'd/big' "
                                                   r"announces 5368709120\)"):
        A.extract_tar(archive, dest)
    assert not list(dest.iterdir())


@pytest.mark.parametrize("typeflag, size", [(tarfile.GNUTYPE_LONGNAME, 8 << 30), (tarfile.XHDTYPE, 1 << 30),
                                            (tarfile.XGLTYPE, 1 << 30), (tarfile.GNUTYPE_LONGNAME, 1 << 20)])
def test_huge_long_name_or_pax_header_is_not_read_in_one_allocation(tmp_path, typeflag, size):
    """tarfile reads a GNU long name or a pax header whole, as one allocation of the announced size."""
    archive = _raw_archive(tmp_path, gzip.compress(tar_header("././@LongLink", size, typeflag) + b"a" * 1024
                                                   + bytes(10240)))
    with pytest.raises(A.UnsafeArchiveError, match=f"a member header asks to read {size} bytes at once "
                                                   f"\\(at most {A.MAX_HEADER_READ};"):
        A.extract_tar(archive, tmp_path / "out")


def test_pax_headers_are_bounded_in_total(tmp_path):
    entries = []
    for i in range(20):
        ti = tarfile.TarInfo(f"d/{i}")
        ti.pax_headers = {"comment": "x" * 15_000}
        entries.append(ti)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tf:
        for ti in entries:
            tf.addfile(ti, io.BytesIO(b""))
    with pytest.raises(A.UnsafeArchiveError, match=f"more than {A.MAX_EXT_HEADER_TOTAL} bytes of GNU long names "
                                                   "and pax headers"):
        A.extract_tar(_raw_archive(tmp_path, buf.getvalue()), tmp_path / "out")


def test_skipped_member_is_not_decompressed_past_the_bound(tmp_path):
    """A skipped member announcing 4 GiB (a zip bomb of zeros behind it): refused from its header, not after
    decompressing gigabytes to skip it."""
    archive = _raw_archive(tmp_path, zero_bomb_gz(tar_header("other/big", 4 << 30), 64))
    with pytest.raises(A.UnsafeArchiveError, match="unpacks to more than .* skipped ones included"):
        A.extract_tar(archive, tmp_path / "out", only_under=("kept",), max_bytes=1000)


def test_too_many_members(tmp_path):
    archive = _archive(tmp_path, [(f"d/{i}", b"") for i in range(A.MAX_MEMBERS + 1)])
    with pytest.raises(A.UnsafeArchiveError, match=f"more than {A.MAX_MEMBERS} members"):
        A.extract_tar(archive, tmp_path / "out")


def test_too_deep_or_too_long_names(tmp_path):
    archive = _archive(tmp_path, [("/".join(["d"] * (A.MAX_DEPTH + 1)), b"1")])
    with pytest.raises(A.UnsafeArchiveError, match=f"{A.MAX_DEPTH + 1} levels of folders"):
        A.extract_tar(archive, tmp_path / "out")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tf:
        tf.addfile(tarfile.TarInfo("d/" + "n" * 5000), io.BytesIO(b""))
    with pytest.raises(A.UnsafeArchiveError, match="a name of 5002 characters"):
        A.extract_tar(_raw_archive(tmp_path, buf.getvalue()), tmp_path / "out")


@pytest.mark.parametrize("compress", [lambda b: b, bz2.compress, lzma.compress, gzip.compress])
def test_plain_bz2_and_xz_archives_are_read_too(tmp_path, compress):
    plain = gzip.decompress(cifar_tar_bytes("bin"))
    written = A.extract_tar(_raw_archive(tmp_path, compress(plain)), tmp_path / "out")
    assert "cifar-10-batches-bin/test_batch.bin" in written


@pytest.mark.parametrize("compress", [bz2.compress, lzma.compress, gzip.compress])
def test_damaged_compressed_data_is_a_data_error(tmp_path, compress):
    good = compress(gzip.decompress(cifar_tar_bytes("bin")))
    for pos in range(len(good) // 5, len(good) - 20, len(good) // 5):
        bad = bytearray(good)
        bad[pos] ^= 0xFF
        archive = _raw_archive(tmp_path, bytes(bad))
        dest = tmp_path / f"out{pos}"
        with pytest.raises(DataCorruptError, match=str(archive)):
            A.extract_tar(archive, dest)
        assert not list(dest.iterdir())


def test_archive_that_is_a_folder(tmp_path):
    (tmp_path / "a.tar.gz").mkdir()
    with pytest.raises(DataCorruptError, match=r"a\.tar\.gz: not a readable tar archive \(not a regular file\)"):
        A.extract_tar(tmp_path / "a.tar.gz", tmp_path / "out")
