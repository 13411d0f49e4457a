"""Decoded datasets cached once per machine and memory-mapped (runs/arrays.py): the same arrays as decoding, shared
read-only, refreshed when a source file or the config changes, and a damaged entry decoded again."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from bncli.config import DataConfig
from bncli.data import load_dataset
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


@pytest.mark.parametrize("damage", ["truncate", "meta", "shape", "missing"])
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
