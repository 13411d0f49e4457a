"""Datasets by name, preprocessed as the config says."""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from .datasets import (DATASETS, DataCorruptError, Dataset, DataError, DataMissingError, carve_validation, finite,
                       load_mnist5k, make_synthetic, preprocess)

__all__ = ["DATASETS", "Dataset", "DataError", "DataMissingError", "DataCorruptError", "load_dataset"]


def load_dataset(cfg, dtype="float32") -> Dataset:
    """``cfg`` is a ``DataConfig``. The split and the synthetic draw use ``cfg.split_seed`` (never a run's seed),
    so every run of an experiment sees the same data."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.split_seed, 0xDA7A]))
    info = {}
    if cfg.name == "mnist-5k":
        X_train, y_train, X_test, y_test = load_mnist5k()
        scale, n_classes = True, 10
    elif cfg.name == "synthetic":
        s = cfg.synthetic
        X_train, y_train, X_test, y_test = make_synthetic(rng, s.n_train, s.n_test, s.n_features, s.n_classes,
                                                          s.clusters_per_class, s.noise)
        scale, n_classes = False, s.n_classes
    elif cfg.name in ("mnist", "fashion-mnist", "cifar10"):
        from .sources import load_raw  # MNIST / Fashion-MNIST (IDX) or CIFAR-10 (binary or python batches)

        (X_train, y_train, X_test, y_test), loc = load_raw(cfg.name, getattr(cfg, "path", None))
        scale, n_classes = True, 10
        info = {"source": str(loc.folder), "format": loc.format}
    else:
        raise DataError(f"unknown dataset {cfg.name!r}; expected one of {DATASETS}")
    if cfg.limit_train:
        X_train, y_train = X_train[:cfg.limit_train], y_train[:cfg.limit_train]
    if cfg.limit_test:
        X_test, y_test = X_test[:cfg.limit_test], y_test[:cfg.limit_test]
    X_val = y_val = None
    if cfg.val_fraction > 0:
        X_train, y_train, X_val, y_val = carve_validation(X_train, y_train, cfg.val_fraction, rng)
    others = (X_test,) if X_val is None else (X_test, X_val)
    with np.errstate(over="ignore", invalid="ignore"):  # a value out of the dtype's range is refused just below
        X_train, X_test, *rest = preprocess(X_train, others, scale=scale, standardize=cfg.standardize, dtype=dtype)
    if rest:
        X_val = rest[0]
    _check_finite(cfg, {"train": X_train, "test": X_test, "validation": X_val}, info, dtype)
    as_labels = lambda y: None if y is None else np.ascontiguousarray(y, dtype=np.int64)  # noqa: E731
    return Dataset(cfg.name, X_train, as_labels(y_train), X_test, as_labels(y_test), n_classes,
                   X_val, as_labels(y_val), info={"n_train": len(X_train), "n_test": len(X_test),
                                                   "n_val": 0 if X_val is None else len(X_val), **info})


def _check_finite(cfg, splits: dict, info: dict, dtype):
    """Refuse NaN or inf in the features training would see (once per load; no temporary array)."""
    for split, X in splits.items():
        if X is None or finite(X):
            continue
        if cfg.name == "synthetic":
            raise UsageError(f"data.synthetic.noise: {cfg.synthetic.noise!r} gives non-finite values (NaN or inf) in "
                             f"the {split} split as {np.dtype(dtype).name}; expected a smaller noise")
        where = info.get("source") or ("bundled mnist5k.npz" if cfg.name == "mnist-5k" else cfg.name)
        raise DataCorruptError(f"dataset {cfg.name!r} ({where}): the {split} split holds non-finite values (NaN or "
                               f"inf) after preprocessing to {np.dtype(dtype).name}; expected finite pixel values")
