"""bncli.runs.owner: one writer per results folder (a lock, the folder's identity) and bncli writes only where it
owns (a manifest of the files it wrote, with their checksums). The command-line cases are in tests/cli/test_writers.py
and tests/fuzz/test_fuzz_writers.py."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bncli import atomic
from bncli.errors import BncliError, UsageError
from bncli.examples import SHIPPED
from bncli.runs import owner
from bncli.runs.owner import LOCK, MANIFEST, claim, out_path, publishing, read_manifest


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(d: Path) -> dict:
    return json.loads((d / MANIFEST).read_text())


def visible(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if not p.name.startswith("."))


def written_by_bncli(d: Path, kind="train", files=("config.yaml", "summary.csv", "experiment.json")):
    with claim(d, kind):
        for name in files:
            atomic.write_text(d / name, f"{name} of {kind}\n")


# -- the lock --------------------------------------------------------------------------------------------------------
HOLDER = """
import sys
from bncli.runs.owner import claim
with claim(sys.argv[1], "train"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def hold_in_another_process(d: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(d)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_folder_another_process_holds_is_refused_naming_it_and_freed_when_it_dies(tmp_path):
    d = tmp_path / "out"
    p = hold_in_another_process(d)
    try:
        t0 = time.monotonic()
        with pytest.raises(BncliError) as e:
            with claim(d, "sweep"):
                pass
        assert time.monotonic() - t0 < 2  # refused at once, not after a wait
        msg = str(e.value)
        assert e.value.exit_code == 1 and "\n" not in msg
        assert f"{d} is in use by another bncli (pid {p.pid}, started " in msg and "choose another --out" in msg
        p.kill()  # kill -9: the kernel drops the lock, nothing stale is left to remove
        p.wait()
        with claim(d, "train"):
            pass
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert not (d / LOCK).exists()  # the lock file goes with the last holder


def test_a_claim_within_a_claim_of_this_process_is_the_same_claim(tmp_path):
    d = tmp_path / "out"
    with claim(d, "train") as outer:
        with claim(d, "train") as inner:
            assert inner is outer
        assert (d / LOCK).exists()  # the inner claim's end does not release the outer one
        atomic.write_text(d / "summary.csv", "x\n")
    assert not (d / LOCK).exists()
    assert list(manifest(d)["files"]) == ["summary.csv"]


def test_the_lock_file_holds_who_holds_the_folder(tmp_path):
    d = tmp_path / "out"
    with claim(d, "train"):
        info = json.loads((d / LOCK).read_text())
    assert info["pid"] == os.getpid() and info["started"] and info["command"]


@pytest.mark.parametrize("what", ["dir", "fifo", "symlink"])
def test_a_lock_file_that_is_not_a_file_is_one_line(tmp_path, what):
    d = tmp_path / "out"
    d.mkdir()
    if what == "dir":
        (d / LOCK).mkdir()
    elif what == "fifo":
        os.mkfifo(d / LOCK)
    else:
        (d / LOCK).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UsageError) as e:
        with claim(d, "train"):
            pass
    assert LOCK in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "elsewhere").exists()


# -- the folder's identity -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_folder_deleted_or_replaced_while_held_is_an_error_and_nothing_is_written(tmp_path, how):
    d = tmp_path / "out"
    with claim(d, "train"):
        atomic.write_text(d / "config.yaml", "a\n")
        shutil.rmtree(d)
        if how == "replaced":
            d.mkdir()
        with pytest.raises(BncliError) as e:
            atomic.write_text(d / "summary.csv", "b\n")
        assert "deleted or replaced while this bncli train ran" in str(e.value) and e.value.exit_code == 1
        assert "runs that finished are kept where they were written" in str(e.value)
        with pytest.raises(BncliError):
            with publishing(d):
                pass
    assert d.exists() == (how == "replaced") and not (d.exists() and list(d.iterdir()))


# -- the manifest ----------------------------------------------------------------------------------------------------
def test_every_file_written_is_recorded_with_its_checksum_but_not_the_run_cache(tmp_path):
    d = tmp_path / "out"
    with claim(d, "report"):
        atomic.write_text(d / "report.json", "{}\n")
        atomic.write_bytes(d / "figures" / "c01.png", b"png")
        atomic.write_text(d / "studies" / "c01" / "summary.csv", "s\n")
        atomic.write_text(d / "failed" / "abc.json", "{}\n")  # the run cache: bncli's, not listed
        atomic.write_dir(d / "runs" / "abc", {"summary.json": "{}"})
    m = manifest(d)
    assert m["kind"] == "report"
    assert m["files"] == {"report.json": [sha(b"{}\n")], "figures/c01.png": [sha(b"png")],
                          "studies/c01/summary.csv": [sha(b"s\n")]}
    with claim(d, "report"):  # a folder bncli wrote is bncli's: no --force needed to write there again
        atomic.write_text(d / "report.json", "{\"v\": 2}\n")
    assert manifest(d)["files"]["report.json"][-1] == sha(b"{\"v\": 2}\n")


def test_a_file_interrupted_between_manifest_and_rename_still_verifies(tmp_path):
    """The manifest lists a file's new checksum before the file is renamed into place: until the rename, the old
    checksum is listed too, so a command killed in between leaves a folder that is still bncli's."""
    d = tmp_path / "out"
    written_by_bncli(d)
    with claim(d, "train") as o:
        o.record(d / "summary.csv", b"the new table\n")  # ... and the process dies before the rename
        assert manifest(d)["files"]["summary.csv"] == [sha(b"summary.csv of train\n"), sha(b"the new table\n")]
    with claim(d, "train"):
        pass  # not refused
    (d / "summary.csv").write_text("the new table\n")  # as if the rename had happened
    with claim(d, "train"):
        pass


def test_foreign_or_edited_files_refuse_the_folder_unless_forced(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    (d / "config.yaml").write_text("name: mine\n")
    (d / "notes").mkdir()
    (d / "notes" / "todo.txt").write_text("mine\n")
    (d / "runs").mkdir()  # the run cache and hidden files are bncli's
    (d / "runs" / "anything").write_text("x")
    (d / ".hidden").write_text("x")
    with pytest.raises(UsageError) as e:
        with claim(d, "train"):
            pass
    msg = str(e.value)
    assert e.value.exit_code == 2 and "\n" not in msg
    assert "holds files bncli did not write (config.yaml; notes/todo.txt)" in msg and "--force" in msg
    assert (d / "config.yaml").read_text() == "name: mine\n"
    with claim(d, "train", force=True):
        atomic.write_text(d / "config.yaml", "name: tiny\n")
    assert (d / "notes" / "todo.txt").read_text() == "mine\n"  # --force replaces what it writes, nothing else
    (d / "notes" / "todo.txt").unlink()
    with claim(d, "train"):  # now every file is bncli's
        pass
    (d / "config.yaml").write_text("name: edited\n")
    with pytest.raises(UsageError, match=r"\(config.yaml, edited since bncli wrote it\)"):
        with claim(d, "train"):
            pass


def test_a_file_that_appears_during_a_command_is_not_replaced(tmp_path):
    d = tmp_path / "out"
    with claim(d, "train"):
        (d / "summary.csv").write_text("the user's\n")
        with pytest.raises(UsageError, match="summary.csv: exists and bncli did not write it"):
            atomic.write_text(d / "summary.csv", "bncli's\n")
    assert (d / "summary.csv").read_text() == "the user's\n"


@pytest.mark.parametrize("what", ["symlink", "large"])
def test_a_listed_file_that_is_a_link_or_too_large_is_foreign(tmp_path, what, monkeypatch):
    d = tmp_path / "out"
    written_by_bncli(d)
    if what == "symlink":
        (tmp_path / "target").write_text("summary.csv of train\n")  # the same bytes, but not bncli's file
        (d / "summary.csv").unlink()
        (d / "summary.csv").symlink_to(tmp_path / "target")
    else:
        monkeypatch.setattr(owner, "FILE_LIMIT", 8)
    with pytest.raises(UsageError, match="summary.csv, "):
        with claim(d, "train"):
            pass


def test_a_folder_of_more_entries_than_bncli_writes_is_refused_without_reading_them_all(tmp_path, monkeypatch):
    monkeypatch.setattr(owner, "MOST_ENTRIES", 50)
    d = tmp_path / "out"
    (d / "runs").mkdir(parents=True)
    for i in range(60):
        (d / f"f{i:03d}").mkdir()
    with pytest.raises(UsageError, match="more files than bncli writes"):
        with claim(d, "train"):
            pass


# -- kinds -----------------------------------------------------------------------------------------------------------
def test_results_of_another_kind_are_refused_then_removed_with_force(tmp_path):
    d = tmp_path / "out"
    written_by_bncli(d, "train", ("config.yaml", "summary.csv", "experiment.json", "learning_curves.png"))
    (d / "report.json").write_text("{}")  # a marker of yet another kind, not even listed
    with pytest.raises(UsageError) as e:
        with claim(d, "sweep"):
            pass
    assert "holds the results of bncli train (config.yaml, experiment.json, learning_curves.png and more)" in \
        str(e.value)
    assert visible(d) == ["config.yaml", "experiment.json", "learning_curves.png", "report.json", "summary.csv"]
    with claim(d, "sweep", force=True):
        assert visible(d) == []  # gone before anything is written: never mixed with the sweep's
        atomic.write_text(d / "sweep.json", "{}")
    m = manifest(d)
    assert m["kind"] == "sweep" and m["files"] == {"sweep.json": [sha(b"{}")]}


def test_an_empty_folder_left_by_another_kind_is_no_conflict(tmp_path):
    d = tmp_path / "out"
    with claim(d, "train"):
        atomic.write_text(d / "summary.csv", "x")
    (d / "summary.csv").unlink()
    with claim(d, "sweep"):
        pass


@pytest.mark.parametrize("doc", [
    {"kind": "train", "files": {"../victim.txt": ["0" * 64]}},
    {"kind": "train", "files": {"/etc/victim.txt": ["0" * 64]}},
    {"kind": "train", "files": {"link/victim.txt": ["0" * 64]}},
    "not json",
])
def test_force_never_removes_anything_outside_the_folder(tmp_path, doc):
    d = tmp_path / "out"
    d.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (d / "link").symlink_to(tmp_path)
    (d / MANIFEST).write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with claim(d, "sweep", force=True):
        pass
    assert victim.read_text() == "keep me"
    assert manifest(d)["kind"] == "sweep" or read_manifest(d)[1] is not None


def test_a_damaged_manifest_is_named_in_the_refusal(tmp_path):
    d = tmp_path / "out"
    written_by_bncli(d)
    (d / MANIFEST).write_text("{" * 5000)
    with pytest.raises(UsageError, match=f"its manifest {MANIFEST} is damaged"):
        with claim(d, "train"):
            pass


def test_plot_into_its_results_folder_checks_only_the_figures_it_may_replace(tmp_path):
    d = tmp_path / "out"
    written_by_bncli(d, "train", ("summary.csv", "experiment.json"))
    (d / "summary.csv").write_text("edited: plot does not write it\n")
    with claim(d, "train", only="png"):
        atomic.write_bytes(d / "learning_curves.png", b"png")
    (d / "learning_curves.svg").write_text("the user's")
    with pytest.raises(UsageError, match=r"holds figures bncli did not write \(learning_curves.svg\)"):
        with claim(d, "train", only="svg"):
            pass
    assert manifest(d)["kind"] == "train"


# -- places ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("force", [False, True])
def test_the_installed_package_is_never_written_to(tmp_path, force):
    for place in (SHIPPED, SHIPPED / "new", Path(owner.__file__).parent):
        before = sorted(os.listdir(SHIPPED))
        with pytest.raises(UsageError, match="bncli never writes results there"):
            with claim(place, "train", force=force):
                pass
        assert sorted(os.listdir(SHIPPED)) == before


def test_empty_out_text_is_refused_unless_forced():
    with pytest.raises(UsageError, match="--out '': empty"):
        out_path("")
    with pytest.raises(UsageError):
        out_path("  ")
    assert out_path("", force=True) == Path(".") and out_path(None) is None and out_path("a") == Path("a")


# -- writing the tables ----------------------------------------------------------------------------------------------
def test_ctrl_c_while_the_tables_are_written_waits_until_all_are(tmp_path):
    d = tmp_path / "out"
    with claim(d, "train"):
        atomic.write_text(d / "experiment.json", "old\n")
        with pytest.raises(KeyboardInterrupt):
            with publishing(d, replacing=("experiment.json",)):
                assert not (d / "experiment.json").exists()  # the old results withdrawn first
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                atomic.write_text(d / "config.yaml", "new\n")
                atomic.write_text(d / "experiment.json", "new\n")
    assert (d / "config.yaml").read_text() == (d / "experiment.json").read_text() == "new\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
