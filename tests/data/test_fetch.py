"""bncli data fetch against a local HTTP server: checksums, resume, restart, safe extraction."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from bncli.config import DataConfig
from bncli.data import DataCorruptError, archive as A, download as D, fetch as F, load_dataset, sources
from bncli.errors import BncliError, UsageError

from .helpers import cifar_tar_bytes, md5, mnist_gz_bytes, tar_bytes, tiny_cifar, tiny_idx

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz")


@pytest.fixture
def mnist_server(serve, monkeypatch):
    files = mnist_gz_bytes()
    for name, data in files.items():
        monkeypatch.setitem(sources.MD5["mnist"], name, md5(data))
    return serve({f"mnist/{k}": v for k, v in files.items()}), files


def test_fetch_mnist_into_cache_then_load_and_second_fetch_does_nothing(mnist_server, isolated_places):
    server, files = mnist_server
    report = F.fetch("mnist", mirror=server.url + "mnist/")
    cache = isolated_places / "mnist"
    assert report.folder == cache
    for name, data in files.items():
        assert (cache / name).read_bytes() == data
    assert not list(cache.glob("*.part"))
    manifest = json.loads((cache / "manifest.json").read_text())
    assert set(manifest["files"]) == set(files)
    assert all(len(e["sha256"]) == 64 and e["md5"] == md5(files[k]) for k, e in manifest["files"].items())
    ds = load_dataset(DataConfig(name="mnist"))
    assert np.array_equal(ds.y_train, tiny_idx()[1])
    n = len(server.log)
    again = F.fetch("mnist", mirror=server.url + "mnist/")
    assert again.did_nothing and len(server.log) == n  # no request at all
    rows = F.status("mnist", cache)
    assert rows[0]["complete"] and rows[0]["checksums"] == "ok (4 files)"


def test_mirror_env_variable_tree(mnist_server, monkeypatch, tmp_path):
    server, _ = mnist_server
    monkeypatch.setenv("BNCLI_DATA_MIRROR", server.url)
    F.fetch("mnist", root=tmp_path / "r")
    assert (tmp_path / "r" / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file()
    assert all(path.startswith("mnist/") for path, _, _ in server.log)


def test_fetch_goes_to_bncli_data_when_set(mnist_server, monkeypatch, tmp_path):
    server, _ = mnist_server
    monkeypatch.setenv("BNCLI_DATA", str(tmp_path / "shared"))
    report = F.fetch("mnist", mirror=server.url + "mnist/")
    assert report.folder == tmp_path / "shared" / "mnist"


def test_resume_with_range(mnist_server, tmp_path):
    server, files = mnist_server
    name = "train-images-idx3-ubyte.gz"
    folder = tmp_path / "r" / "mnist"
    folder.mkdir(parents=True)
    half = len(files[name]) // 2
    (folder / f"{name}.part").write_bytes(files[name][:half])
    report = F.fetch("mnist", root=tmp_path / "r", mirror=server.url + "mnist/")
    assert (folder / name).read_bytes() == files[name]
    assert (f"mnist/{name}", f"bytes={half}-", 206) in server.log
    assert dict(report.actions)[name] == f"downloaded (resumed from byte {half})"


def test_server_ignoring_range_restarts(serve, monkeypatch, tmp_path):
    files = mnist_gz_bytes()
    for name, data in files.items():
        monkeypatch.setitem(sources.MD5["mnist"], name, md5(data))
    server = serve(files, ranges=False)
    name = "t10k-images-idx3-ubyte.gz"
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / f"{name}.part").write_bytes(b"garbage that must not be kept" * 3)
    F.fetch("mnist", root=tmp_path, mirror=server.url)
    assert (folder / name).read_bytes() == files[name]
    assert any(path == name and rng is not None and status == 200 for path, rng, status in server.log)


def test_interrupted_download_keeps_part_and_next_fetch_resumes(mnist_server, tmp_path):
    server, files = mnist_server
    name = "train-images-idx3-ubyte.gz"
    server.cut_after[f"mnist/{name}"] = 700
    with pytest.raises(D.FetchError, match="run the command again to resume") as e:
        F.fetch("mnist", root=tmp_path, mirror=server.url + "mnist/")
    assert server.url in str(e.value)
    part = tmp_path / "mnist" / f"{name}.part"
    assert part.is_file() and part.stat().st_size == 700
    assert not (tmp_path / "mnist" / name).exists()
    F.fetch("mnist", root=tmp_path, mirror=server.url + "mnist/")
    assert (tmp_path / "mnist" / name).read_bytes() == files[name] and not part.exists()
    assert (f"mnist/{name}", "bytes=700-", 206) in server.log


def test_complete_part_and_416(mnist_server, tmp_path):
    server, files = mnist_server
    name = "t10k-labels-idx1-ubyte.gz"
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / f"{name}.part").write_bytes(files[name])
    F.fetch("mnist", root=tmp_path, mirror=server.url + "mnist/")
    assert (tmp_path / "mnist" / name).read_bytes() == files[name]
    assert any(status == 416 for _, _, status in server.log)


def test_wrong_checksum_is_refused_and_not_kept(mnist_server, monkeypatch, tmp_path):
    server, files = mnist_server
    monkeypatch.setitem(sources.MD5["mnist"], "train-labels-idx1-ubyte.gz", "0" * 32)
    with pytest.raises(D.ChecksumError, match="checksum mismatch") as e:
        F.fetch("mnist", root=tmp_path, mirror=server.url + "mnist/")
    assert "train-labels-idx1-ubyte.gz" in str(e.value) and e.value.exit_code == 1
    folder = tmp_path / "mnist"
    assert not (folder / "train-labels-idx1-ubyte.gz").exists()
    assert not (folder / "train-labels-idx1-ubyte.gz.part").exists()
    assert (folder / "train-images-idx3-ubyte.gz").is_file()  # the files before it are fine and kept


def test_present_file_with_bad_checksum_is_downloaded_again(mnist_server, tmp_path):
    server, files = mnist_server
    F.fetch("mnist", root=tmp_path, mirror=server.url + "mnist/")
    bad = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(b"tampered")
    rows = F.status("mnist", tmp_path / "mnist")
    assert rows[0]["checksums"] == "MISMATCH 1/4: t10k-images-idx3-ubyte.gz"
    report = F.fetch("mnist", root=tmp_path, mirror=server.url + "mnist/")
    assert bad.read_bytes() == files["t10k-images-idx3-ubyte.gz"] and not report.did_nothing


def test_http_error_and_unreachable_server(serve, tmp_path):
    server = serve({})
    with pytest.raises(D.FetchError, match="HTTP 404") as e:
        F.fetch("mnist", root=tmp_path, mirror=server.url)
    assert server.url + "train-images-idx3-ubyte.gz" in str(e.value)
    with pytest.raises(D.FetchError, match="download of http://127.0.0.1:9/"):
        F.fetch("mnist", root=tmp_path, mirror="http://127.0.0.1:9/", timeout=5)


def test_only_http_urls(tmp_path):
    with pytest.raises(UsageError, match="only http"):
        F.fetch("mnist", root=tmp_path, mirror="file:///etc/")


def test_fetch_cifar_binary(serve, monkeypatch, tmp_path):
    data = tiny_cifar()
    archive = cifar_tar_bytes("bin", data, extra=[("cifar-10-batches-py/ignored", b"x"), ("readme.html", b"hi")])
    monkeypatch.setitem(sources.MD5["cifar10"], "cifar-10-binary.tar.gz", md5(archive))
    server = serve({"cifar-10-binary.tar.gz": archive})
    report = F.fetch("cifar10", root=tmp_path, mirror=server.url)
    folder = tmp_path / "cifar10"
    assert (folder / "cifar-10-batches-bin" / "test_batch.bin").is_file()
    assert not (folder / "cifar-10-binary.tar.gz").exists()  # the archive is removed after extraction
    assert not (folder / "readme.html").exists() and not (folder / "cifar-10-batches-py").exists()
    assert ("cifar-10-batches-bin", "extracted 7 files") in report.actions
    ds = load_dataset(DataConfig(name="cifar10", path=str(tmp_path)))
    assert np.array_equal(ds.y_test, data[1][1])
    n = len(server.log)
    assert F.fetch("cifar10", root=tmp_path, mirror=server.url).did_nothing and len(server.log) == n
    rows = F.status("cifar10", folder)
    assert rows[0]["format"] == "bin" and rows[0]["checksums"] == "ok (6 files)"
    (folder / "cifar-10-batches-bin" / "data_batch_3.bin").write_bytes(b"\x00" * 3073)
    assert "MISMATCH" in F.status("cifar10", folder)[0]["checksums"]
    assert not F.fetch("cifar10", root=tmp_path, mirror=server.url).did_nothing  # size differs: fetched again
    assert F.status("cifar10", folder)[0]["checksums"] == "ok (6 files)"
    assert not list(folder.glob(".*tmp")) and not list(folder.glob(".*old"))


def test_fetch_cifar_python(serve, monkeypatch, tmp_path):
    archive = cifar_tar_bytes("python")
    monkeypatch.setitem(sources.MD5["cifar10"], "cifar-10-python.tar.gz", md5(archive))
    server = serve({"cifar-10-python.tar.gz": archive})
    F.fetch("cifar10", root=tmp_path, fmt="python", mirror=server.url)
    assert load_dataset(DataConfig(name="cifar10", path=str(tmp_path))).info["format"] == "python"
    with pytest.raises(UsageError, match="--format"):
        F.fetch("cifar10", root=tmp_path, fmt="matlab", mirror=server.url)


# -- hostile archives ------------------------------------------------------------------------------------------
def _link(name, target, kind=tarfile.SYMTYPE):
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = kind, target
    return ti


def _special(name, kind):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    return ti


HOSTILE = {
    "dotdot": ([("cifar-10-batches-bin/../../evil.txt", b"pwned")], "'..'"),
    "absolute": ([("/tmp/bncli-evil-absolute.txt", b"pwned")], "absolute path"),
    "symlink": ([_link("cifar-10-batches-bin/etc", "/etc"), ("cifar-10-batches-bin/etc/evil", b"x")],
                "symbolic link"),
    "hardlink": ([_link("cifar-10-batches-bin/passwd", "/etc/passwd", tarfile.LNKTYPE)], "hard link"),
    "device": ([_special("cifar-10-batches-bin/dev", tarfile.CHRTYPE)], "not a regular file"),
    "fifo": ([_special("cifar-10-batches-bin/fifo", tarfile.FIFOTYPE)], "not a regular file"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_archive_is_refused(tmp_path, kind):
    members, match = HOSTILE[kind]
    good = cifar_tar_bytes("bin")
    # the hostile member comes after some good ones: nothing at all may stay behind
    with tarfile.open(fileobj=io.BytesIO(good)) as tf:
        first = [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()[:2]]
    archive = tmp_path / "dl" / "evil.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(tar_bytes(first + members))
    dest = tmp_path / "box" / "cifar10"
    before = set(tmp_path.rglob("*"))
    with pytest.raises(DataCorruptError, match=match) as e:
        A.extract_tar(archive, dest)
    assert str(archive) in str(e.value)
    after = set(tmp_path.rglob("*"))
    assert after - before <= {tmp_path / "box", dest}  # only the (empty) target folder was created
    assert not list(dest.iterdir())
    assert not Path("/tmp/bncli-evil-absolute.txt").exists()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "box" / "evil.txt").exists()


def test_hostile_archive_through_fetch_exit_code_1(serve, monkeypatch, tmp_path):
    archive = tar_bytes([("cifar-10-batches-bin/../../../outside.txt", b"pwned")])
    monkeypatch.setitem(sources.MD5["cifar10"], "cifar-10-binary.tar.gz", md5(archive))
    server = serve({"cifar-10-binary.tar.gz": archive})
    with pytest.raises(A.UnsafeArchiveError) as e:
        F.fetch("cifar10", root=tmp_path / "root", mirror=server.url)
    assert e.value.exit_code == 1 and "cifar-10-binary.tar.gz" in str(e.value)
    assert not (tmp_path / "outside.txt").exists()
    assert not (tmp_path / "root" / "cifar10" / "cifar-10-binary.tar.gz").exists()  # not kept as a good download
    assert sorted(p.name for p in (tmp_path / "root" / "cifar10").iterdir()) == [".fetch.lock", "manifest.json"]


def test_symlinked_target_folder_is_replaced_not_followed(tmp_path):
    """A pre-existing dest/cifar-10-batches-bin symlink pointing elsewhere is replaced, never written through."""
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "cifar10"
    dest.mkdir()
    os.symlink(outside, dest / "cifar-10-batches-bin")
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(cifar_tar_bytes("bin"))
    A.extract_tar(archive, dest)
    assert not list(outside.iterdir())
    assert not (dest / "cifar-10-batches-bin").is_symlink()
    assert (dest / "cifar-10-batches-bin" / "test_batch.bin").is_file()


def test_not_a_tar_archive(tmp_path):
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(b"not an archive")
    with pytest.raises(DataCorruptError, match="not a readable tar archive"):
        A.extract_tar(archive, tmp_path / "d")


def test_concurrent_fetch_is_refused(tmp_path):
    import fcntl

    folder = tmp_path / "mnist"
    folder.mkdir()
    with open(folder / ".fetch.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(BncliError, match="another 'bncli data fetch'"):
            F.fetch("mnist", root=tmp_path, mirror="http://127.0.0.1:9/")


# -- a damaged manifest.json: said in the status row and rebuilt by fetch, never a traceback --------------------------
DAMAGED_MANIFESTS = {
    "entry is a number": ('{"files": {"train-images-idx3-ubyte.gz": 3}}',
                          "the entry of 'train-images-idx3-ubyte.gz' is not an object (got int)"),
    "a number": ("7", "expected a JSON object, got int"),
    "a list": ("[1, 2]", "expected a JSON object, got list"),
    "not JSON": ("{\"files\": {", "not valid JSON: Expecting"),
    "empty": ("", "not valid JSON: Expecting value"),
    "not UTF-8": (b"\xff\xfe{", "not valid JSON: 'utf-8' codec can't decode"),
    "files missing": ('{"dataset": "mnist"}', "'files' is missing or not an object"),
    "files a list": ('{"files": []}', "'files' is missing or not an object"),
    "dataset not a string": ('{"dataset": 1, "files": {}}', "'dataset' is not a string"),
    "sha256 a list": ('{"files": {"a": {"sha256": ["x"]}}}', "the sha256 of 'a' is not 64 hex digits"),
    "md5 too short": ('{"files": {"a": {"md5": "abc"}}}', "the md5 of 'a' is not 32 hex digits"),
    "size negative": ('{"files": {"a": {"size": -1}}}', "the size of 'a' is not a whole number of bytes"),
    "size a string": ('{"files": {"a": {"size": "12"}}}', "the size of 'a' is not a whole number of bytes"),
    "size true": ('{"files": {"a": {"size": true}}}', "the size of 'a' is not a whole number of bytes"),
    "url a number": ('{"files": {"a": {"url": 5}}}', "the url of 'a' is not a string"),
    "extracted_from a string": ('{"files": {"a": {"extracted_from": "x"}}}', "the extracted_from of 'a' is not"),
    "nested too deeply": ("[" * 100_000, "not valid JSON: nested too deeply"),
    "a 5000-digit number": ("1" * 5000, "not valid JSON: Exceeds the limit"),
}


@pytest.mark.parametrize("kind", list(DAMAGED_MANIFESTS))
def test_damaged_manifest_is_reported_in_the_status_row(tmp_path, kind):
    from .helpers import write_cifar_folder, write_mnist_folder

    content, problem = DAMAGED_MANIFESTS[kind]
    write_mnist_folder(tmp_path / "mnist")
    write_cifar_folder(tmp_path / "cifar10" / "cifar-10-batches-bin", "bin")
    for name in ("mnist", "cifar10"):
        p = tmp_path / name / "manifest.json"
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        manifest, found = F.load_manifest(tmp_path / name)
        assert manifest == {"files": {}} and found.startswith(problem), found
        (row,) = F.status(name, tmp_path / name)
        assert f"manifest.json damaged ({problem}" in row["checksums"] and "\n" not in row["checksums"]
        assert f"bncli data fetch {name} rebuilds it" in row["checksums"]


def test_manifest_that_is_a_folder_or_too_large(tmp_path, monkeypatch):
    (tmp_path / "manifest.json").mkdir()
    assert F.load_manifest(tmp_path) == ({"files": {}}, "not a regular file")
    (tmp_path / "manifest.json").rmdir()
    monkeypatch.setattr(F, "MAX_MANIFEST_BYTES", 10)
    (tmp_path / "manifest.json").write_text('{"files": {}}   ')
    assert "more than the 10 a manifest may have" in F.load_manifest(tmp_path)[1]


def test_sound_manifest_is_not_damaged(mnist_server, tmp_path):
    server, _ = mnist_server
    F.fetch("mnist", root=tmp_path, mirror=server.url + "mnist/")
    manifest, problem = F.load_manifest(tmp_path / "mnist")
    assert problem is None and len(manifest["files"]) == 4
    assert F.load_manifest(tmp_path / "nowhere") == ({"files": {}}, None)


def test_list_with_a_damaged_manifest_exits_0(tmp_path):
    """The issue: ``bncli data list`` with a manifest entry that is a number ended in AttributeError."""
    from typer.testing import CliRunner

    import bncli.cli  # noqa: F401
    from bncli.cli.app import data_app

    from .helpers import write_mnist_folder

    write_mnist_folder(tmp_path / "mnist")
    (tmp_path / "mnist" / "manifest.json").write_text('{"files": {"train-images-idx3-ubyte.gz": 3, "x": 4}}')
    r = CliRunner().invoke(data_app, ["list", "--root", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "damaged" in r.output and "Traceback" not in r.output


def test_fetch_rebuilds_a_damaged_manifest(mnist_server, tmp_path):
    server, _ = mnist_server
    F.fetch("mnist", root=tmp_path, mirror=server.url + "mnist/")
    (tmp_path / "mnist" / "manifest.json").write_text('{"files": {"train-images-idx3-ubyte.gz": 3}}')
    report = F.fetch("mnist", root=tmp_path, mirror=server.url + "mnist/")
    assert ("manifest.json", ("damaged (the entry of 'train-images-idx3-ubyte.gz' is not an object (got int)): "
                              "rebuilt")) in report.actions
    assert not report.did_nothing
    manifest, problem = F.load_manifest(tmp_path / "mnist")
    assert problem is None and len(manifest["files"]) == 4
    assert F.status("mnist", tmp_path / "mnist")[0]["checksums"] == "ok (4 files)"


def test_fetch_cifar_with_a_damaged_manifest_fetches_again(serve, monkeypatch, tmp_path):
    archive = cifar_tar_bytes("bin")
    monkeypatch.setitem(sources.MD5["cifar10"], "cifar-10-binary.tar.gz", md5(archive))
    server = serve({"cifar-10-binary.tar.gz": archive})
    F.fetch("cifar10", root=tmp_path, mirror=server.url)
    (tmp_path / "cifar10" / "manifest.json").write_text("[]")
    n = len(server.log)
    report = F.fetch("cifar10", root=tmp_path, mirror=server.url)
    assert len(server.log) == n + 1  # the files could not be verified: fetched again
    assert report.actions[0][0] == "manifest.json" and "fetched again" in report.actions[0][1]
    assert F.load_manifest(tmp_path / "cifar10")[1] is None
    assert F.status("cifar10", tmp_path / "cifar10")[0]["checksums"] == "ok (6 files)"


def test_unreadable_file_is_said_in_the_row(tmp_path, monkeypatch):
    from .helpers import write_mnist_folder

    write_mnist_folder(tmp_path / "mnist", gz=False)  # raw files: checked against the manifest, none here

    def denied(path, *a, **k):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(F, "file_hashes", denied)
    (tmp_path / "mnist" / "manifest.json").write_text(json.dumps(
        {"files": {"train-images-idx3-ubyte": {"sha256": "0" * 64, "size": 1}}}))
    (row,) = F.status("mnist", tmp_path / "mnist")
    assert row["checksums"] == "UNREADABLE 1/4: train-images-idx3-ubyte (Permission denied)"
