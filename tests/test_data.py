"""bncli.data: the bundled MNIST subset, the synthetic set, standardization, validation split."""

from __future__ import annotations

import hashlib
from importlib import resources

import numpy as np
import pytest

from bncli.config import DataConfig, SyntheticConfig
from bncli.data import DataError, Dataset, load_dataset
from bncli.data import datasets as D


@pytest.fixture(scope="module")
def mnist():
    return load_dataset(DataConfig())


def rows(X):
    return {r.tobytes() for r in np.ascontiguousarray(X)}


# -- mnist-5k -----------------------------------------------------------------------------------------------------
def test_mnist_shapes_dtypes_ranges(mnist):
    assert isinstance(mnist, Dataset)
    assert mnist.name == "mnist-5k" and mnist.n_classes == 10 and mnist.n_features == 784
    assert mnist.X_train.shape == (4000, 784) and mnist.X_train.dtype == np.float32
    assert mnist.X_test.shape == (1000, 784) and mnist.X_test.dtype == np.float32
    for X in (mnist.X_train, mnist.X_test):
        assert X.min() == 0.0 and X.max() == 1.0  # pixels 0..255 scaled to [0, 1]
        assert X.flags.c_contiguous
    assert mnist.y_train.dtype == np.int64 and mnist.y_test.dtype == np.int64
    assert mnist.y_train.shape == (4000,) and mnist.y_test.shape == (1000,)
    assert mnist.X_val is None and mnist.y_val is None
    assert mnist.info == {"n_train": 4000, "n_test": 1000, "n_val": 0}


def test_mnist_is_stratified_400_100_per_class(mnist):
    assert np.array_equal(np.bincount(mnist.y_train, minlength=10), np.full(10, 400))
    assert np.array_equal(np.bincount(mnist.y_test, minlength=10), np.full(10, 100))
    assert mnist.y_train.min() == 0 and mnist.y_train.max() == 9


def test_mnist_values_are_multiples_of_1_over_255(mnist):
    levels = mnist.X_train[:50].astype(np.float64) * 255
    assert np.allclose(levels, np.round(levels), atol=1e-3)
    assert len(np.unique(np.round(levels))) > 100  # real grey levels, not a binarized or blank image


def test_mnist_no_test_image_in_training_split(mnist):
    assert len(rows(mnist.X_train)) == 4000  # no duplicate images inside a split
    assert not rows(mnist.X_train) & rows(mnist.X_test)


def test_mnist_class_means_differ(mnist):
    # real digits: the mean image of class 1 is much thinner (less ink) than that of class 0
    ink = [mnist.X_train[mnist.y_train == c].mean() for c in range(10)]
    assert ink[1] < 0.7 * ink[0]


def test_mnist_is_not_sorted_by_class(mnist):
    # limit_train takes the first rows; they must not all be one class
    assert len(np.unique(mnist.y_train[:100])) == 10


def test_bundled_file_matches_checksum():
    ref = resources.files("bncli.data").joinpath("mnist5k.npz")
    assert hashlib.sha256(ref.read_bytes()).hexdigest() == D.MNIST5K_SHA256


def test_loader_passes_allow_pickle_false(monkeypatch):
    calls = []
    real_load = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(D.np, "load", spy)
    D.load_mnist5k()
    assert calls, "numpy.load was not used"
    assert all(kw.get("allow_pickle") is False for kw in calls)


def test_pickled_object_array_is_refused(tmp_path):
    p = tmp_path / "evil.npz"
    np.savez(p, X_train=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        D._read_npz(p)


def test_checksum_mismatch_raises_data_error(monkeypatch):
    monkeypatch.setattr(D, "MNIST5K_SHA256", "0" * 64)
    with pytest.raises(DataError, match="checksum"):
        D.load_mnist5k()
    with pytest.raises(DataError):
        load_dataset(DataConfig())


def test_damaged_copy_raises_data_error(tmp_path):
    raw = bytearray(resources.files("bncli.data").joinpath("mnist5k.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    p = tmp_path / "mnist5k.npz"
    p.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="checksum"):
        D._read_npz(p, D.MNIST5K_SHA256)


def test_wrong_arrays_raise_data_error(tmp_path, monkeypatch):
    p = tmp_path / "mnist5k.npz"
    np.savez(p, X_train=np.zeros((10, 784), np.uint8), y_train=np.zeros(10, np.uint8),
             X_test=np.zeros((10, 784), np.uint8), y_test=np.zeros(10, np.uint8))
    real = D._read_npz
    monkeypatch.setattr(D, "_read_npz", lambda path, sha=None: real(p))
    with pytest.raises(DataError, match="X_train"):
        D.load_mnist5k()


# -- standardize --------------------------------------------------------------------------------------------------
def test_standardize_uses_training_statistics(mnist):
    ds = load_dataset(DataConfig(standardize=True))
    Xtr, Xte = mnist.X_train.astype(np.float64), mnist.X_test.astype(np.float64)
    mean, std = Xtr.mean(axis=0), Xtr.std(axis=0)
    varying = std > 1e-8
    assert varying.sum() > 500
    assert np.abs(ds.X_train.mean(axis=0, dtype=np.float64)).max() < 1e-4
    assert np.allclose(ds.X_train.std(axis=0, dtype=np.float64)[varying], 1.0, atol=1e-3)
    assert np.all(ds.X_train[:, ~varying] == 0)  # constant features stay finite (std taken as 1)
    safe_std = np.where(varying, std, 1.0)
    expected = (Xte - mean) / safe_std
    assert np.allclose(ds.X_test, expected, rtol=1e-4, atol=1e-3)
    # and not with the test split's own statistics
    assert np.abs(ds.X_test.mean(axis=0, dtype=np.float64)).max() > 0.05
    assert np.isfinite(ds.X_test).all()


def test_standardize_with_validation_split_uses_only_the_remaining_training_rows():
    raw = load_dataset(DataConfig(val_fraction=0.2))
    ds = load_dataset(DataConfig(val_fraction=0.2, standardize=True))
    Xtr = raw.X_train.astype(np.float64)
    mean, std = Xtr.mean(axis=0), Xtr.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    assert np.allclose(ds.X_val, (raw.X_val - mean) / std, rtol=1e-4, atol=1e-3)
    assert np.allclose(ds.X_test, (raw.X_test - mean) / std, rtol=1e-4, atol=1e-3)
    assert np.abs(ds.X_train.mean(axis=0, dtype=np.float64)).max() < 1e-4


def test_preprocess_does_not_modify_its_inputs():
    rng = np.random.default_rng(0)
    Xtr = rng.integers(0, 256, (20, 5)).astype(np.uint8)
    Xte = rng.integers(0, 256, (7, 5)).astype(np.uint8)
    before = Xtr.copy(), Xte.copy()
    out_tr, out_te = D.preprocess(Xtr, (Xte,), scale=True, standardize=True)
    assert np.array_equal(Xtr, before[0]) and np.array_equal(Xte, before[1])
    assert out_tr.dtype == np.float32
    ftr = Xtr / 255.0
    assert np.allclose(out_te, (Xte / 255.0 - ftr.mean(0)) / ftr.std(0), atol=1e-4)


# -- validation split ---------------------------------------------------------------------------------------------
def test_val_fraction_carves_800_disjoint_rows(mnist):
    ds = load_dataset(DataConfig(val_fraction=0.2))
    assert ds.X_train.shape == (3200, 784) and ds.X_val.shape == (800, 784)
    assert ds.y_train.shape == (3200,) and ds.y_val.shape == (800,) and ds.y_val.dtype == np.int64
    assert ds.info == {"n_train": 3200, "n_test": 1000, "n_val": 800}
    tr, va = rows(ds.X_train), rows(ds.X_val)
    assert len(tr) == 3200 and len(va) == 800
    assert not tr & va
    assert tr | va == rows(mnist.X_train)  # together they are the original training split
    assert np.array_equal(ds.X_test, mnist.X_test)  # the test split is untouched
    # labels travel with their images
    label_of = {r.tobytes(): y for r, y in zip(mnist.X_train, mnist.y_train)}
    assert all(label_of[r.tobytes()] == y for r, y in zip(ds.X_val, ds.y_val))
    assert all(label_of[r.tobytes()] == y for r, y in zip(ds.X_train[:200], ds.y_train[:200]))
    assert ds.split("val")[0] is ds.X_val


def test_val_split_is_deterministic_for_split_seed():
    a = load_dataset(DataConfig(val_fraction=0.2, split_seed=3))
    b = load_dataset(DataConfig(val_fraction=0.2, split_seed=3))
    c = load_dataset(DataConfig(val_fraction=0.2, split_seed=4))
    assert np.array_equal(a.X_val, b.X_val) and np.array_equal(a.y_train, b.y_train)
    assert rows(a.X_val) != rows(c.X_val)


def test_split_without_validation_raises_data_error(mnist):
    with pytest.raises(DataError, match="val_fraction"):
        mnist.split("val")
    X, y = mnist.split("test")
    assert X is mnist.X_test and y is mnist.y_test


def test_carve_validation_rounding():
    rng = np.random.default_rng(0)
    X, y = np.arange(30).reshape(10, 3), np.arange(10)
    Xtr, ytr, Xva, yva = D.carve_validation(X, y, 0.25, rng)
    assert len(Xva) == 2 and len(Xtr) == 8  # round(2.5) -> 2
    assert sorted(np.concatenate([ytr, yva]).tolist()) == list(range(10))
    assert np.array_equal(Xva[:, 0] // 3, yva)


# -- limits -------------------------------------------------------------------------------------------------------
def test_limit_train_and_test(mnist):
    ds = load_dataset(DataConfig(limit_train=100, limit_test=30))
    assert ds.X_train.shape == (100, 784) and ds.y_train.shape == (100,)
    assert ds.X_test.shape == (30, 784) and ds.y_test.shape == (30,)
    assert np.array_equal(ds.X_train, mnist.X_train[:100])
    assert np.array_equal(ds.y_test, mnist.y_test[:30])
    assert ds.info["n_train"] == 100 and ds.info["n_test"] == 30


def test_limit_train_then_validation():
    ds = load_dataset(DataConfig(limit_train=100, val_fraction=0.2))
    assert len(ds.X_train) == 80 and len(ds.X_val) == 20


# -- synthetic ----------------------------------------------------------------------------------------------------
SYN = SyntheticConfig(n_train=300, n_test=90, n_features=6, n_classes=3, clusters_per_class=2, noise=0.5)


def test_synthetic_shapes_and_classes():
    ds = load_dataset(DataConfig(name="synthetic", synthetic=SYN))
    assert ds.name == "synthetic" and ds.n_classes == 3 and ds.n_features == 6
    assert ds.X_train.shape == (300, 6) and ds.X_test.shape == (90, 6)
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert set(np.unique(ds.y_train)) == {0, 1, 2}
    assert set(np.unique(ds.y_test)) <= {0, 1, 2}
    assert ds.X_train.std() > 0.5  # not scaled by 1/255 like pixels
    assert np.isfinite(ds.X_train).all()


def test_synthetic_is_deterministic_per_split_seed():
    a = load_dataset(DataConfig(name="synthetic", synthetic=SYN, split_seed=1))
    b = load_dataset(DataConfig(name="synthetic", synthetic=SYN, split_seed=1))
    c = load_dataset(DataConfig(name="synthetic", synthetic=SYN, split_seed=2))
    assert np.array_equal(a.X_train, b.X_train) and np.array_equal(a.y_train, b.y_train)
    assert np.array_equal(a.X_test, b.X_test)
    assert not np.allclose(a.X_train, c.X_train)


def test_synthetic_classes_are_separable_by_nearest_class_mean():
    ds = load_dataset(DataConfig(name="synthetic", synthetic=SyntheticConfig(
        n_train=400, n_test=200, n_features=10, n_classes=4, clusters_per_class=1, noise=0.3)))
    means = np.stack([ds.X_train[ds.y_train == c].mean(0) for c in range(4)])
    pred = np.argmin(((ds.X_test[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == ds.y_test).mean() > 0.9


def test_synthetic_default_config_shapes():
    ds = load_dataset(DataConfig(name="synthetic"))
    assert ds.X_train.shape == (2000, 20) and ds.X_test.shape == (500, 20) and ds.n_classes == 4


def test_make_synthetic_uses_only_the_given_generator():
    a = D.make_synthetic(np.random.default_rng(5), 50, 10, 3, 2, 1, 1.0)
    np.random.seed(0)  # the legacy global RNG must not matter
    b = D.make_synthetic(np.random.default_rng(5), 50, 10, 3, 2, 1, 1.0)
    np.random.seed(1)
    c = D.make_synthetic(np.random.default_rng(5), 50, 10, 3, 2, 1, 1.0)
    for x, y, z in zip(a, b, c):
        assert np.array_equal(x, y) and np.array_equal(x, z)


# -- dtype --------------------------------------------------------------------------------------------------------
def test_float64_is_selectable(mnist):
    ds = load_dataset(DataConfig(limit_train=50, limit_test=20, val_fraction=0.2), dtype="float64")
    assert ds.X_train.dtype == np.float64 and ds.X_test.dtype == np.float64 and ds.X_val.dtype == np.float64
    syn = load_dataset(DataConfig(name="synthetic", synthetic=SYN), dtype="float64")
    assert syn.X_train.dtype == np.float64
    f32 = load_dataset(DataConfig(limit_train=50, limit_test=20))
    assert np.allclose(load_dataset(DataConfig(limit_train=50, limit_test=20), dtype="float64").X_train,
                       f32.X_train, atol=1e-7)


def test_unknown_dataset_name_raises_data_error():
    cfg = DataConfig().model_copy(update={"name": "cifar"})
    with pytest.raises(DataError, match="cifar"):
        load_dataset(cfg)


def test_data_error_is_a_bncli_error(mnist):
    """Every data failure reaches the CLI's single ``except BncliError`` as a message with an exit code."""
    from bncli.data import DataCorruptError, DataMissingError
    from bncli.errors import BncliError, UsageError

    assert issubclass(DataError, BncliError) and not issubclass(DataError, UsageError)
    assert DataError("x").exit_code == 1
    assert issubclass(DataCorruptError, DataError) and DataCorruptError.exit_code == 1
    assert issubclass(DataMissingError, DataError) and issubclass(DataMissingError, UsageError)
    assert DataMissingError.exit_code == 2
    with pytest.raises(BncliError, match="val_fraction") as e:
        mnist.split("val")
    assert type(e.value) is DataError


# -- NaN / inf in the features: refused with the dataset named -------------------------------------------------------
@pytest.mark.parametrize("noise", [float("inf"), float("nan"), -1.0, 0.0, True, "1"])
def test_make_synthetic_refuses_a_noise_that_is_not_finite_and_positive(noise):
    from bncli.errors import UsageError

    with pytest.raises(UsageError, match="data.synthetic.noise: expected a finite number > 0"):
        D.make_synthetic(np.random.default_rng(0), 20, 5, 3, 2, 1, noise)


@pytest.mark.parametrize("args, key", [((1, 5, 3, 2, 1), "n_train"), ((20, 0, 3, 2, 1), "n_test"),
                                       ((20, 5, 2.5, 2, 1), "n_features"), ((20, 5, 3, True, 1), "n_classes")])
def test_make_synthetic_refuses_bad_sizes(args, key):
    from bncli.errors import UsageError

    with pytest.raises(UsageError, match=f"data.synthetic.{key}: expected an integer"):
        D.make_synthetic(np.random.default_rng(0), *args, 1.0)


def test_make_synthetic_refuses_values_that_overflow():
    from bncli.errors import UsageError

    with pytest.raises(UsageError, match=r"data.synthetic.noise: 1e\+308 makes the training values overflow"):
        D.make_synthetic(np.random.default_rng(0), 20, 5, 3, 2, 1, 1e308)


def test_synthetic_values_that_overflow_float32_are_refused():
    from bncli.errors import UsageError

    cfg = DataConfig(name="synthetic", synthetic=SyntheticConfig(n_train=20, n_test=5, noise=1e300))
    with pytest.raises(UsageError, match=r"data.synthetic.noise: 1e\+300 gives non-finite values \(NaN or inf\) "
                                         "in the train split as float32"):
        load_dataset(cfg)
    assert np.isfinite(load_dataset(cfg, dtype="float64").X_train).all()  # float64 holds them


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_of_a_file_dataset_are_refused(monkeypatch, tmp_path, bad):
    import bncli.data as data_pkg
    from bncli.data import DataCorruptError, sources

    X = np.zeros((10, 4))
    X_test = np.zeros((3, 4))
    X_test[1, 2] = bad

    class Loc:
        folder, format = tmp_path / "mnist", "idx"

    monkeypatch.setattr(sources, "load_raw", lambda name, path=None: ((X, np.zeros(10, int), X_test,
                                                                       np.zeros(3, int)), Loc))
    with pytest.raises(DataCorruptError, match=f"dataset 'mnist' \\({tmp_path / 'mnist'}\\): the test split holds "
                                               "non-finite values"):
        load_dataset(DataConfig(name="mnist"))
    monkeypatch.setattr(data_pkg, "load_mnist5k", lambda: (X_test, np.zeros(3, int), X, np.zeros(10, int)))
    with pytest.raises(DataCorruptError, match="dataset 'mnist-5k' \\(bundled mnist5k.npz\\): the train split"):
        load_dataset(DataConfig())


def test_finite_checks_without_a_temporary():
    assert D.finite(np.zeros((3, 3), np.float32)) and D.finite(np.arange(5)) and D.finite(np.zeros((0, 3)))
    for bad in (np.nan, np.inf, -np.inf):
        X = np.ones((4, 4), np.float32)
        X[2, 3] = bad
        assert not D.finite(X)
