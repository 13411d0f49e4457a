"""The pieces of ``fetch.download`` and ``fetch.extract_tar`` on their own: member checks, size bounds, Range
answers, the progress protocol; and the data layer's independence from the UI libraries."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import PurePosixPath

import pytest

from bncli.data import DataCorruptError, archive as A, download as D

from .helpers import cifar_tar_bytes, md5, tar_bytes

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

