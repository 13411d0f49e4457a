"""bncli.atomic: files and directories appear whole or not at all, with no leftovers."""

from __future__ import annotations

import os

import pytest

from bncli import atomic
from bncli.atomic import check_writable, write_bytes, write_dir, write_text


def listing(d):
    return sorted(p.name for p in d.iterdir())


def snapshot(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# -- files --------------------------------------------------------------------------------------------------------
def test_write_text_creates_parents_and_no_temp_files(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    write_text(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode("utf-8")
    assert listing(target.parent) == ["out.txt"]


def test_write_text_replaces_existing_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old old old old")
    write_text(target, "new")
    assert target.read_text() == "new"
    assert listing(tmp_path) == ["out.txt"]


def test_write_bytes_failure_keeps_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert listing(tmp_path) == ["out.bin"]


# -- directories --------------------------------------------------------------------------------------------------
def test_write_dir_creates_directory_with_files(tmp_path):
    target = tmp_path / "results" / "run"
    write_dir(target, {"a.txt": "alpha", "b.bin": b"\x00\x01", "c.json": "{}"})
    assert target.is_dir()
    assert snapshot(target) == {"a.txt": b"alpha", "b.bin": b"\x00\x01", "c.json": b"{}"}
    assert listing(target.parent) == ["run"]  # no hidden .tmp sibling


def test_write_dir_empty_files_dict(tmp_path):
    target = tmp_path / "empty"
    write_dir(target, {})
    assert target.is_dir() and listing(target) == []
    assert listing(tmp_path) == ["empty"]


def test_write_dir_replaces_existing_directory_whole(tmp_path):
    target = tmp_path / "run"
    target.mkdir()
    (target / "stale.txt").write_text("stale")
    (target / "a.txt").write_text("old a")
    (target / "sub").mkdir()
    (target / "sub" / "deep.txt").write_text("deep")
    (tmp_path / "neighbour.txt").write_text("keep me")
    write_dir(target, {"a.txt": "new a", "b.txt": "b"})
    assert snapshot(target) == {"a.txt": b"new a", "b.txt": b"b"}
    assert listing(tmp_path) == ["neighbour.txt", "run"]  # no .run.*.tmp / .run.*.old left
    assert (tmp_path / "neighbour.txt").read_text() == "keep me"


def test_write_dir_twice_in_a_row(tmp_path):
    target = tmp_path / "run"
    write_dir(target, {"x": "1"})
    write_dir(target, {"y": "2"})
    assert snapshot(target) == {"y": b"2"}
    assert listing(tmp_path) == ["run"]


def test_write_dir_failure_midway_leaves_old_dir_intact(tmp_path):
    target = tmp_path / "run"
    write_dir(target, {"metrics.csv": "step,acc\n1,0.5\n", "meta.json": "{}"})
    before = snapshot(target)
    with pytest.raises(TypeError):
        write_dir(target, {"metrics.csv": "new content", "meta.json": 12345, "z.txt": "z"})  # type: ignore[dict-item]
    assert snapshot(target) == before
    assert listing(tmp_path) == ["run"]  # the temp dir was removed


def test_write_dir_failure_midway_creates_nothing(tmp_path):
    target = tmp_path / "fresh"
    with pytest.raises(TypeError):
        write_dir(target, {"a.txt": "a", "b.txt": None})  # type: ignore[dict-item]
    assert not target.exists()
    assert listing(tmp_path) == []


def test_write_dir_rename_failure_keeps_old_dir(tmp_path, monkeypatch):
    target = tmp_path / "run"
    write_dir(target, {"a.txt": "old"})
    before = snapshot(target)
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(src).endswith(".tmp"):  # moving the freshly written directory into place always fails
            raise OSError("simulated failure")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError):
        write_dir(target, {"a.txt": "new"})
    monkeypatch.undo()
    assert target.is_dir() and snapshot(target) == before


def test_write_dir_rename_failure_leaves_no_temp_dir(tmp_path, monkeypatch):
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(src).endswith(".tmp"):
            raise OSError("simulated failure")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError):
        write_dir(tmp_path / "run", {"a.txt": "new"})
    monkeypatch.undo()
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


# -- check_writable -----------------------------------------------------------------------------------------------
def test_check_writable_creates_dir_and_leaves_no_probe(tmp_path):
    d = tmp_path / "out" / "deeper"
    check_writable(d)
    assert d.is_dir() and listing(d) == []


def test_check_writable_under_a_regular_file_raises(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(OSError):
        check_writable(f / "sub")
    assert f.read_text() == "x"


def test_check_writable_on_a_regular_file_raises(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(OSError):
        check_writable(f)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write read-only dirs")
def test_check_writable_read_only_dir_raises(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        with pytest.raises(OSError):
            check_writable(d)
    finally:
        d.chmod(0o755)
