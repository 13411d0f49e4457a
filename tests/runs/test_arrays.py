"""Decoded datasets cached once per machine and memory-mapped (runs/arrays.py): the same arrays as decoding, shared
read-only, refreshed when a source file or the config changes, and a damaged, edited or hostile entry decoded again
and replaced, never used."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import types

import numpy as np
import pytest

from bncli.config import DataConfig
from bncli.data import load_dataset
from bncli.data import sources
from bncli.errors import UsageError
from bncli.runs.arrays import cached_dataset, open_cached
from data.helpers import tiny_idx, write_mnist_folder


@pytest.fixture
def mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("BNCLI_ARRAY_CACHE", raising=False)
    write_mnist_folder(tmp_path / "m")
    return DataConfig(name="mnist", path=str(tmp_path / "m"), val_fraction=0.2)


def entries(tmp_path):
    return sorted((tmp_path / "cache" / "bncli" / "decoded").glob("*"))


def calls(counter):
    def load(cfg, dtype):
        counter.append(1)
        return load_dataset(cfg, dtype)
    return load


def same(a, b):
    return all(np.array_equal(getattr(a, s), getattr(b, s)) and getattr(a, s).dtype == getattr(b, s).dtype
               for s in ("X_train", "y_train", "X_test", "y_test", "X_val", "y_val")) and a.info == b.info


def test_decoded_once_then_memory_mapped_read_only(tmp_path, mnist):
    n = []
    first = cached_dataset(mnist, "float32", calls(n))
    second = cached_dataset(mnist, "float32", calls(n))
    assert len(n) == 1 and len(entries(tmp_path)) == 1
    assert isinstance(second.X_train, np.memmap) and not second.X_train.flags.writeable
    assert same(first, load_dataset(mnist, "float32")) and same(second, load_dataset(mnist, "float32"))
    with pytest.raises(ValueError):
        second.X_train[0, 0] = 1.0  # shared pages are never written


def test_a_changed_source_file_or_setting_is_decoded_again(tmp_path, mnist):
    n = []
    cached_dataset(mnist, "float32", calls(n))
    cached_dataset(mnist.model_copy(update={"limit_train": 20}), "float32", calls(n))
    cached_dataset(mnist, "float64", calls(n))
    write_mnist_folder(tmp_path / "m", tiny_idx(seed=5))  # new contents, same names
    os.utime(tmp_path / "m" / "train-images-idx3-ubyte.gz", ns=(1, 1))
    fresh = cached_dataset(mnist, "float32", calls(n))
    assert len(n) == 4 and len(entries(tmp_path)) == 4
    assert same(fresh, load_dataset(mnist, "float32"))


@pytest.mark.parametrize("damage", ["truncate", "meta", "shape", "missing", "n_classes"])
def test_a_damaged_entry_is_decoded_again(tmp_path, mnist, damage):
    n = []
    cached_dataset(mnist, "float32", calls(n))
    (entry,) = entries(tmp_path)
    if damage == "truncate":
        (entry / "X_train.npy").write_bytes((entry / "X_train.npy").read_bytes()[:100])
    elif damage == "meta":
        (entry / "meta.json").write_text("{not json")
    elif damage == "shape":
        meta = json.loads((entry / "meta.json").read_text())
        meta["arrays"]["X_train"]["shape"][0] += 1
        (entry / "meta.json").write_text(json.dumps(meta))
    elif damage == "n_classes":  # meta.json edited: every array still matches it
        meta = json.loads((entry / "meta.json").read_text())
        meta["n_classes"] = 7
        (entry / "meta.json").write_text(json.dumps(meta))
    else:
        (entry / "y_test.npy").unlink()
    assert open_cached(entry) is None
    data = cached_dataset(mnist, "float32", calls(n))
    assert len(n) == 2 and same(data, load_dataset(mnist, "float32"))


def test_switched_off_or_unwritable_falls_back_to_decoding(tmp_path, mnist, monkeypatch):
    n = []
    monkeypatch.setenv("BNCLI_ARRAY_CACHE", "0")
    assert not isinstance(cached_dataset(mnist, "float32", calls(n)).X_train, np.memmap) and not entries(tmp_path)
    monkeypatch.delenv("BNCLI_ARRAY_CACHE")
    (tmp_path / "cache").write_text("a file where the cache folder would go")
    data = cached_dataset(mnist, "float32", calls(n))
    assert len(n) == 2 and same(data, load_dataset(mnist, "float32"))


def test_entries_of_other_code_are_removed_when_a_new_one_is_stored(tmp_path, mnist, monkeypatch):
    cached_dataset(mnist, "float32", calls([]))
    (old,) = entries(tmp_path)
    meta = json.loads((old / "meta.json").read_text())
    (old / "meta.json").write_text(json.dumps({**meta, "code_hash": "an older bncli"}))
    cached_dataset(mnist.model_copy(update={"limit_test": 5}), "float32", calls([]))
    assert not old.exists() and len(entries(tmp_path)) == 1


@pytest.mark.parametrize("split", ["X_train", "y_test"])
def test_an_entry_edited_in_place_is_decoded_again_and_replaced(tmp_path, mnist, split):
    n = []
    cached_dataset(mnist, "float32", calls(n))
    (entry,) = entries(tmp_path)
    a = np.load(entry / f"{split}.npy", mmap_mode="r+")  # same file, shape and dtype: only the values change
    a[:] = 0
    a.flush()
    del a
    assert open_cached(entry) is None
    data = cached_dataset(mnist, "float32", calls(n))
    assert len(n) == 2 and same(data, load_dataset(mnist, "float32"))
    again = cached_dataset(mnist, "float32", calls(n))  # the entry was replaced: memory-mapped, not decoded
    assert len(n) == 2 and isinstance(again.X_train, np.memmap) and same(again, load_dataset(mnist, "float32"))


def test_a_source_replaced_by_a_file_of_the_same_size_and_time_gives_new_arrays(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("BNCLI_ARRAY_CACHE", raising=False)
    folder = tmp_path / "m"
    write_mnist_folder(folder, gz=False)  # raw IDX: other contents have exactly the same size
    cfg = DataConfig(name="mnist", path=str(folder), val_fraction=0.2)
    n = []
    first = cached_dataset(cfg, "float32", calls(n))
    before = {p: p.stat() for p in folder.iterdir()}
    write_mnist_folder(folder, tiny_idx(seed=5), gz=False)
    for p, st in before.items():
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert (p.stat().st_size, p.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    fresh = cached_dataset(cfg, "float32", calls(n))
    assert len(n) == 2 and len(entries(tmp_path)) == 2
    assert same(fresh, load_dataset(cfg, "float32")) and not np.array_equal(fresh.X_train, first.X_train)


CHILD = """
import sys
import numpy as np
from bncli.config import DataConfig
from bncli.data import load_dataset
from bncli.runs.arrays import cached_dataset
cfg = DataConfig.model_validate_json(sys.argv[1])
n = []
def load(c, d):
    n.append(1)
    return load_dataset(c, d)
got, ref = cached_dataset(cfg, "float32", load), load_dataset(cfg, "float32")
print("decoded" if n else "cached", all(np.array_equal(getattr(got, s), getattr(ref, s)) for s in
      ("X_train", "y_train", "X_test", "y_test", "X_val", "y_val")))
"""


def in_child(tmp_path, cfg):
    """cached_dataset in a subprocess: a hang is killed after 60 s, a memory blow-up stopped at 2 GiB."""
    def limits():
        os.setsid()
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("BNCLI_ARRAY_CACHE", None)
    try:
        r = subprocess.run([sys.executable, "-c", CHILD, cfg.model_dump_json()], capture_output=True, text=True,
                           timeout=60, env=env, cwd=tmp_path, preexec_fn=limits)
    except subprocess.TimeoutExpired:
        pytest.fail("cached_dataset hung on a hostile cache entry")
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.split()


@pytest.mark.parametrize("hostile", ["meta FIFO", "meta 2 GB sparse", "meta deeply nested", "array FIFO",
                                     "other entry's meta FIFO"])
def test_a_hostile_entry_is_decoded_again_without_hanging(tmp_path, mnist, hostile):
    cached_dataset(mnist, "float32", calls([]))
    (entry,) = entries(tmp_path)
    meta = entry / "meta.json"
    if hostile == "meta FIFO":
        meta.unlink()
        os.mkfifo(meta)
    elif hostile == "meta 2 GB sparse":
        with open(meta, "r+b") as f:
            f.truncate(2 << 30)
    elif hostile == "meta deeply nested":
        meta.write_text("[" * 200_000 + "]" * 200_000)
    elif hostile == "array FIFO":
        (entry / "X_train.npy").unlink()
        os.mkfifo(entry / "X_train.npy")
    else:  # read when the new entry is stored, to remove entries of other code
        other = entry.parent / "0123456789abcdef0123456789abcdef"
        other.mkdir()
        os.mkfifo(other / "meta.json")
        (entry / "y_test.npy").unlink()
    assert in_child(tmp_path, mnist) == ["decoded", "True"]
    assert in_child(tmp_path, mnist) == ["cached", "True"]  # replaced by a good entry


@pytest.fixture
def relative_home(tmp_path, monkeypatch):
    """Relative XDG_CACHE_HOME and HOME, run from an empty folder; the password database says tmp_path/pwhome."""
    import pwd

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("XDG_CACHE_HOME", "cache")
    monkeypatch.setenv("HOME", "home")
    monkeypatch.delenv("BNCLI_ARRAY_CACHE", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: types.SimpleNamespace(pw_dir=str(tmp_path / "pwhome")))
    return cwd


def test_relative_cache_variables_never_put_the_cache_under_the_current_folder(tmp_path, relative_home):
    write_mnist_folder(tmp_path / "m")
    cfg = DataConfig(name="mnist", path=str(tmp_path / "m"), val_fraction=0.2)
    assert same(cached_dataset(cfg, "float32", load_dataset), load_dataset(cfg, "float32"))
    assert not list(relative_home.iterdir())
    assert len(list((tmp_path / "pwhome" / ".cache" / "bncli" / "decoded").iterdir())) == 1


def test_no_absolute_home_anywhere_is_a_clear_error(relative_home, monkeypatch):
    import pwd

    def missing(uid):
        raise KeyError(uid)
    monkeypatch.setattr(pwd, "getpwuid", missing)
    with pytest.raises(UsageError, match="XDG_CACHE_HOME"):
        sources.cache_dir()
