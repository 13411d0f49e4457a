"""`bncli data fetch | list | info` through typer's CliRunner: output and exit codes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bncli.data import sources
import bncli.cli  # noqa: F401 - registers the commands
from bncli.cli.app import data_app as app

from .helpers import cifar_tar_bytes, md5, mnist_gz_bytes, tiny_cifar, write_cifar_folder, write_mnist_folder

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def output(r):
    return r.output + (r.stderr if getattr(r, "stderr_bytes", None) else "")


def test_fetch_list_info_round_trip(serve, monkeypatch, isolated_places):
    files = mnist_gz_bytes()
    for name, data in files.items():
        monkeypatch.setitem(sources.MD5["mnist"], name, md5(data))
    server = serve(files)
    r = run("fetch", "mnist", "--mirror", server.url)
    assert r.exit_code == 0, output(r)
    assert "downloaded" in r.output and str(isolated_places / "mnist") in r.output
    r = run("fetch", "mnist", "--mirror", server.url)
    assert r.exit_code == 0 and "nothing to do" in r.output
    r = run("list")
    assert r.exit_code == 0, output(r)
    assert "mnist-5k" in r.output and "ok (4 files)" in r.output and "idx" in r.output
    assert "bncli data fetch cifar10" in r.output  # what is missing says how to get it
    r = run("info", "mnist")
    assert r.exit_code == 0, output(r)
    assert "(30, 784)" in r.output and "(12, 784)" in r.output and "class balance" in r.output
    assert "pixel statistics" in r.output


def test_list_shows_partial_download(tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz.part").write_bytes(b"1234")
    r = run("list", "--root", tmp_path)
    assert r.exit_code == 0 and "partial download" in r.output


def test_info_cifar_prints_channel_order(tmp_path):
    write_cifar_folder(tmp_path / "cifar10" / "cifar-10-batches-bin", "bin", tiny_cifar())
    r = run("info", "cifar10", "--root", tmp_path)
    assert r.exit_code == 0, output(r)
    assert "0-1023 red" in r.output and "2048-3071 blue" in r.output
    for ch in ("red", "green", "blue"):
        assert ch in r.output
    assert "airplane" in r.output and "(20, 3072)" in r.output


def test_info_with_path(tmp_path):
    write_mnist_folder(tmp_path / "x", gz=False)
    r = run("info", "fashion-mnist", "--path", tmp_path / "x")
    assert r.exit_code == 0, output(r)
    assert "Ankle boot" in r.output


def test_info_bundled():
    r = run("info", "mnist-5k")
    assert r.exit_code == 0 and "(4000, 784)" in r.output


def test_exit_code_corrupt_file_is_1(tmp_path):
    write_mnist_folder(tmp_path / "x")
    (tmp_path / "x" / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    r = run("info", "mnist", "--path", tmp_path / "x")
    assert r.exit_code == 1
    assert "t10k-images-idx3-ubyte.gz" in output(r) and "Traceback" not in output(r)


def test_exit_code_unknown_name_is_2():
    for cmd in ("fetch", "info"):
        r = run(cmd, "imagenet")
        assert r.exit_code == 2 and "unknown dataset 'imagenet'" in output(r)


def test_exit_code_missing_dataset_is_2_and_names_fetch(tmp_path):
    r = run("info", "mnist", "--root", tmp_path)
    assert r.exit_code == 2 and "bncli data fetch mnist" in output(r)


def test_exit_code_bad_checksum_is_1(serve, monkeypatch, tmp_path):
    archive = cifar_tar_bytes("bin")
    monkeypatch.setitem(sources.MD5["cifar10"], "cifar-10-binary.tar.gz", "f" * 32)
    server = serve({"cifar-10-binary.tar.gz": archive})
    r = run("fetch", "cifar10", "--root", tmp_path, "--mirror", server.url)
    assert r.exit_code == 1 and "checksum mismatch" in output(r)
    assert not list((tmp_path / "cifar10").glob("*.tar.gz*"))


def test_exit_code_hostile_archive_is_1(serve, monkeypatch, tmp_path):
    from .helpers import tar_bytes

    archive = tar_bytes([("cifar-10-batches-bin/../../x", b"pwned")])
    monkeypatch.setitem(sources.MD5["cifar10"], "cifar-10-binary.tar.gz", md5(archive))
    server = serve({"cifar-10-binary.tar.gz": archive})
    r = run("fetch", "cifar10", "--root", tmp_path / "r", "--mirror", server.url)
    assert r.exit_code == 1 and "refused member" in output(r)
    assert not (tmp_path / "x").exists()


def test_exit_code_network_error_is_1(tmp_path):
    r = run("fetch", "mnist", "--root", tmp_path, "--mirror", "http://127.0.0.1:9/")
    assert r.exit_code == 1 and "http://127.0.0.1:9/train-images-idx3-ubyte.gz" in output(r)


def test_format_option_only_for_cifar(tmp_path):
    r = run("fetch", "mnist", "--root", tmp_path, "--format", "python")
    assert r.exit_code == 2


@pytest.mark.parametrize("name", ["mnist-5k", "synthetic"])
def test_fetch_bundled_is_a_no_op(name):
    r = run("fetch", name)
    assert r.exit_code == 0 and "nothing to fetch" in r.output


def test_mounted_as_bncli_data():
    from bncli.cli import app as main_app

    r = runner.invoke(main_app, ["data", "info", "imagenet"])
    assert r.exit_code == 2
    r = runner.invoke(main_app, ["data", "--help"])
    assert r.exit_code == 0 and "fetch" in r.output and "list" in r.output and "info" in r.output
