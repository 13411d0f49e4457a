"""load_dataset for the real sets: lookup order (data.path, $BNCLI_DATA, cache), preprocessing, missing files."""

from __future__ import annotations

import numpy as np
import pytest

from bncli.config import DataConfig
from bncli.data import DataCorruptError, DataError, DataMissingError, load_dataset, sources

from .helpers import tiny_cifar, tiny_idx, write_cifar_folder, write_mnist_folder


def test_data_path_folder_itself(tmp_path):
    X_train, y_train, X_test, y_test = write_mnist_folder(tmp_path / "here")
    ds = load_dataset(DataConfig(name="mnist", path=str(tmp_path / "here")))
    assert ds.X_train.shape == (30, 784) and ds.X_train.dtype == np.float32
    assert ds.X_test.shape == (12, 784) and ds.n_classes == 10
    assert np.allclose(ds.X_train, X_train.reshape(30, 784) / 255.0)
    assert ds.X_train.min() >= 0 and ds.X_train.max() <= 1
    assert ds.y_train.dtype == np.int64 and np.array_equal(ds.y_train, y_train)
    assert np.array_equal(ds.y_test, y_test)
    assert ds.info["source"] == str(tmp_path / "here") and ds.info["format"] == "idx"


def test_data_path_as_a_root_with_name_subfolder(tmp_path):
    write_mnist_folder(tmp_path / "root" / "fashion-mnist", gz=False)
    ds = load_dataset(DataConfig(name="fashion-mnist", path=str(tmp_path / "root")))
    assert ds.info["source"] == str(tmp_path / "root" / "fashion-mnist")


def test_bncli_data_env(tmp_path, monkeypatch):
    write_mnist_folder(tmp_path / "envroot" / "mnist")
    monkeypatch.setenv("BNCLI_DATA", str(tmp_path / "envroot"))
    ds = load_dataset(DataConfig(name="mnist"))
    assert ds.info["source"] == str(tmp_path / "envroot" / "mnist")


def test_xdg_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    write_mnist_folder(tmp_path / "xdg" / "bncli" / "mnist")
    ds = load_dataset(DataConfig(name="mnist"))
    assert ds.info["source"] == str(tmp_path / "xdg" / "bncli" / "mnist")


def test_home_cache_when_xdg_unset_or_relative(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert sources.cache_dir() == tmp_path / "home" / ".cache" / "bncli"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG spec: relative paths are ignored
    assert sources.cache_dir() == tmp_path / "home" / ".cache" / "bncli"


def test_lookup_order(tmp_path, monkeypatch):
    a = write_mnist_folder(tmp_path / "p", tiny_idx(seed=1))
    b = write_mnist_folder(tmp_path / "env" / "mnist", tiny_idx(seed=2))
    c = write_mnist_folder(tmp_path / "xdg-cache" / "bncli" / "mnist", tiny_idx(seed=3))
    monkeypatch.setenv("BNCLI_DATA", str(tmp_path / "env"))
    first = lambda path=None: load_dataset(DataConfig(name="mnist", path=path)).X_train[0, :50]  # noqa: E731
    assert np.allclose(first(str(tmp_path / "p")), a[0].reshape(30, 784)[0, :50] / 255)
    assert np.allclose(first(), b[0].reshape(30, 784)[0, :50] / 255)
    monkeypatch.delenv("BNCLI_DATA")
    assert np.allclose(first(), c[0].reshape(30, 784)[0, :50] / 255)
    # a data.path without the files falls through to the next place
    assert np.allclose(first(str(tmp_path / "nothing-here")), c[0].reshape(30, 784)[0, :50] / 255)


def test_missing_names_expected_files_places_and_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("BNCLI_DATA", str(tmp_path / "env"))
    with pytest.raises(DataMissingError) as e:
        load_dataset(DataConfig(name="mnist", path=str(tmp_path / "p")))
    msg = str(e.value)
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        assert stem in msg
    assert "bncli data fetch mnist" in msg
    assert str(tmp_path / "p") in msg and str(tmp_path / "env" / "mnist") in msg and "cache" in msg
    assert isinstance(e.value, DataError) and e.value.exit_code == 2


def test_missing_cifar_names_both_layouts():
    with pytest.raises(DataMissingError) as e:
        load_dataset(DataConfig(name="cifar10"))
    msg = str(e.value)
    assert "cifar-10-batches-bin" in msg and "data_batch_1.bin" in msg and "cifar-10-batches-py" in msg
    assert "bncli data fetch cifar10" in msg


def test_incomplete_copy_is_reported(tmp_path):
    write_mnist_folder(tmp_path / "p")
    (tmp_path / "p" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataMissingError, match=r"lacks t10k-labels-idx1-ubyte\(\.gz\)"):
        load_dataset(DataConfig(name="mnist", path=str(tmp_path / "p")))


def test_corrupt_file_is_a_corrupt_error(tmp_path):
    write_mnist_folder(tmp_path / "p")
    f = tmp_path / "p" / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:40])
    with pytest.raises(DataCorruptError, match="train-images-idx3-ubyte.gz") as e:
        load_dataset(DataConfig(name="mnist", path=str(tmp_path / "p")))
    assert e.value.exit_code == 1


def test_raw_file_preferred_over_gz_and_mixed_allowed(tmp_path):
    arrays = write_mnist_folder(tmp_path / "p", gz=True)
    from bncli.data.idx import write_idx

    write_idx(tmp_path / "p" / "train-labels-idx1-ubyte", arrays[1])
    loc = sources.locate("mnist", tmp_path / "p")
    assert loc.files["train_labels"].name == "train-labels-idx1-ubyte"
    assert loc.files["train_images"].name == "train-images-idx3-ubyte.gz"
    load_dataset(DataConfig(name="mnist", path=str(tmp_path / "p")))


def test_limits_validation_split_and_standardize(tmp_path):
    write_mnist_folder(tmp_path / "p")
    cfg = DataConfig(name="mnist", path=str(tmp_path / "p"), limit_train=20, limit_test=5, val_fraction=0.25,
                     standardize=True)
    ds = load_dataset(cfg)
    assert len(ds.X_train) == 15 and len(ds.X_val) == 5 and len(ds.X_test) == 5
    assert ds.info["n_train"] == 15 and ds.info["n_val"] == 5 and ds.info["n_test"] == 5
    varying = ds.X_train.std(axis=0) > 0
    assert np.allclose(ds.X_train.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(ds.X_train.std(axis=0)[varying], 1, atol=1e-4)
    again = load_dataset(cfg)
    assert np.array_equal(ds.X_val, again.X_val)  # the split comes from split_seed: the same every time
    f64 = load_dataset(DataConfig(name="mnist", path=str(tmp_path / "p")), dtype="float64")
    assert f64.X_train.dtype == np.float64


@pytest.mark.parametrize("layout", ["bin", "python"])
def test_cifar_through_load_dataset(tmp_path, layout):
    sub = "cifar-10-batches-bin" if layout == "bin" else "cifar-10-batches-py"
    train, test = write_cifar_folder(tmp_path / "root" / "cifar10" / sub, layout)
    for path in (tmp_path / "root", tmp_path / "root" / "cifar10", tmp_path / "root" / "cifar10" / sub):
        ds = load_dataset(DataConfig(name="cifar10", path=str(path)))
        assert ds.X_train.shape == (20, 3072) and ds.X_test.shape == (5, 3072) and ds.n_classes == 10
        assert np.allclose(ds.X_test, test[0] / 255.0) and np.array_equal(ds.y_test, test[1])
        assert ds.info["format"] == layout


def test_cifar_binary_preferred_when_both_present(tmp_path):
    data = tiny_cifar()
    write_cifar_folder(tmp_path / "cifar10" / "cifar-10-batches-py", "python", data)
    write_cifar_folder(tmp_path / "cifar10" / "cifar-10-batches-bin", "bin", data)
    assert load_dataset(DataConfig(name="cifar10", path=str(tmp_path))).info["format"] == "bin"


def test_bundled_and_synthetic_unchanged():
    ds = load_dataset(DataConfig())
    assert ds.X_train.shape == (4000, 784) and "source" not in ds.info
    assert load_dataset(DataConfig(name="synthetic")).X_train.shape == (2000, 20)


def test_pixel_stats_exact():
    X = np.array([[0, 255, 10], [10, 10, 0]], np.uint8)
    s = sources.pixel_stats(X)
    assert s["min"] == 0 and s["max"] == 255
    assert s["mean"] == pytest.approx(X.mean()) and s["std"] == pytest.approx(X.std())
