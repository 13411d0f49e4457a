"""The identity of the data a run trains on (runs.inputs.data_fingerprint): a digest of the decoded arrays, so the
same data found at another path are the same data, and any other data (one pixel, one label) are not."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bncli.config import ExperimentConfig
from bncli.runs import arrays, inputs
from bncli.runs.inputs import data_fingerprint
from data.helpers import tiny_idx, write_cifar_folder, write_mnist_folder


@pytest.fixture(autouse=True)
def fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("BNCLI_ARRAY_CACHE", raising=False)
    forget()
    yield
    forget()


def forget():
    """A new process, as far as the per-process memory of datasets and fingerprints goes."""
    inputs._loaded.cache_clear()


def exp(dtype="float32", **data):
    return ExperimentConfig.model_validate({"data": data, "train": {"dtype": dtype}})


@pytest.fixture
def hashed(monkeypatch):
    """Counts the arrays hashed."""
    n = []
    real = arrays.checksum

    def counting(a):
        n.append(a.shape)
        return real(a)
    monkeypatch.setattr(arrays, "checksum", counting)
    return n


def test_the_same_data_at_another_path_has_the_same_fingerprint(tmp_path, monkeypatch):
    write_mnist_folder(tmp_path / "a")
    write_mnist_folder(tmp_path / "b", gz=False)  # other files (raw, not gzip), same arrays
    fa = data_fingerprint(exp(name="mnist", path=str(tmp_path / "a"), val_fraction=0.2))
    fb = data_fingerprint(exp(name="mnist", path=str(tmp_path / "b"), val_fraction=0.2))
    assert re.fullmatch("[0-9a-f]{32}", fa) and fa == fb
    monkeypatch.setenv("BNCLI_ARRAY_CACHE", "0")  # decoded in memory and hashed, not read from the cache
    forget()
    assert data_fingerprint(exp(name="mnist", path=str(tmp_path / "a"), val_fraction=0.2)) == fa


@pytest.mark.parametrize("change", ["train pixel", "test pixel", "train label", "all black"])
def test_other_data_have_another_fingerprint(tmp_path, change):
    X_train, y_train, X_test, y_test = tiny_idx()
    write_mnist_folder(tmp_path / "a", (X_train, y_train, X_test, y_test))
    X_train, y_train, X_test, y_test = X_train.copy(), y_train.copy(), X_test.copy(), y_test.copy()
    if change == "train pixel":
        X_train[17, 9, 4] ^= 1
    elif change == "test pixel":
        X_test[3, 27, 27] ^= 1
    elif change == "train label":
        y_train[5] = (y_train[5] + 1) % 10
    else:
        X_train[:], X_test[:] = 0, 0
    write_mnist_folder(tmp_path / "b", (X_train, y_train, X_test, y_test))
    for val in (0.0, 0.2):
        fa = data_fingerprint(exp(name="mnist", path=str(tmp_path / "a"), val_fraction=val))
        fb = data_fingerprint(exp(name="mnist", path=str(tmp_path / "b"), val_fraction=val))
        assert fa != fb, (change, val)


def test_every_dataset_has_one_and_it_follows_the_settings(tmp_path):
    write_mnist_folder(tmp_path / "m")
    write_mnist_folder(tmp_path / "f", tiny_idx(seed=3))
    write_cifar_folder(tmp_path / "c", "bin")
    cfgs = [exp(name="mnist-5k"), exp(name="mnist-5k", dtype="float64"), exp(name="mnist-5k", standardize=True),
            exp(name="synthetic"), exp(name="synthetic", split_seed=1),
            exp(name="synthetic", synthetic={"n_classes": 3}),
            exp(name="mnist", path=str(tmp_path / "m")), exp(name="fashion-mnist", path=str(tmp_path / "f")),
            exp(name="cifar10", path=str(tmp_path / "c")), exp(name="cifar10", path=str(tmp_path / "c"), limit_test=3)]
    prints = [data_fingerprint(c) for c in cfgs]
    assert all(re.fullmatch("[0-9a-f]{32}", p) for p in prints) and len(set(prints)) == len(prints)
    forget()
    assert [data_fingerprint(c) for c in cfgs] == prints  # the same in another process


def test_once_per_process_and_the_cache_checksums_are_reused(tmp_path, monkeypatch, hashed):
    cfg = exp(name="mnist-5k", val_fraction=0.1)
    first = data_fingerprint(cfg)
    assert len(hashed) == 6  # every split, once
    assert data_fingerprint(cfg) == first and len(hashed) == 6

    write_mnist_folder(tmp_path / "m")
    cached = exp(name="mnist", path=str(tmp_path / "m"), val_fraction=0.2)
    data_fingerprint(cached)  # decoded and stored (the arrays hashed for meta.json, then verified as read back)
    forget()
    hashed.clear()
    warm = data_fingerprint(cached)
    assert len(hashed) == 6  # the entry verified, and its checksums make the fingerprint: nothing hashed twice
    assert isinstance(inputs.dataset_for(cached).X_train, np.memmap) and len(hashed) == 6
    monkeypatch.setenv("BNCLI_ARRAY_CACHE", "0")
    forget()
    assert data_fingerprint(cached) == warm  # the stored checksums are those of the decoded arrays
