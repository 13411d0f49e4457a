"""Datasets: the bundled real MNIST subset and a seeded synthetic set, plus preprocessing.

``mnist-5k`` is 5,000 real MNIST digits (LeCun, Cortes & Burges), 400 train / 100 test per class, bundled with the
package (see README: provenance). Files are read with ``allow_pickle=False``. The full MNIST, Fashion-MNIST and
CIFAR-10 sets are read from their standard files (``idx.py``, ``cifar.py``), found by ``sources.py``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from ..errors import BncliError, UsageError

MNIST5K_SHA256 = "2cff4c6d7d4e14fbd26ef6042c850895a9894ce0f08bc49774c731930468b2cb"
DATASETS = ("mnist-5k", "mnist", "fashion-mnist", "cifar10", "synthetic")
# (channels, height, width) of each image dataset; a row of X is the image in that (C, H, W) order.
IMAGE_SHAPES = {"mnist-5k": (1, 28, 28), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


class DataError(BncliError):
    """A dataset cannot be read or does not look like it should (exit code 1 unless a subclass says otherwise)."""


class DataMissingError(DataError, UsageError):
    """The dataset's files are not where they are looked for: fix the config or fetch them (exit code 2)."""

    exit_code = 2


class DataCorruptError(DataError):
    """A file is there but damaged, truncated, of the wrong kind or hostile (exit code 1). The message names it."""

    exit_code = 1


@dataclass
class Dataset:
    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    X_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def n_features(self):
        return self.X_train.shape[1]

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(C, H, W) of the images a row of X holds; None for data that are not images (synthetic)."""
        shape = IMAGE_SHAPES.get(self.name)
        return shape if shape and math.prod(shape) == self.n_features else None

    def split(self, name):
        """(X, y) of "train", "val" or "test"."""
        X, y = getattr(self, f"X_{name}"), getattr(self, f"y_{name}")
        if X is None:
            raise DataError(f"this dataset has no {name!r} split (set data.val_fraction > 0 for a validation split)")
        return X, y


def _read_npz(path, expected_sha256=None):
    raw = path.read_bytes()
    if expected_sha256 and hashlib.sha256(raw).hexdigest() != expected_sha256:
        raise DataCorruptError(f"{path}: checksum mismatch (the bundled file is damaged; reinstall bncli)")
    import io

    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_mnist5k():
    """The bundled subset as uint8 arrays: X (N, 784) in 0..255, y (N,) in 0..9."""
    ref = resources.files("bncli.data").joinpath("mnist5k.npz")
    with resources.as_file(ref) as path:
        z = _read_npz(path, MNIST5K_SHA256)
    for k, shape in {"X_train": (4000, 784), "y_train": (4000,), "X_test": (1000, 784), "y_test": (1000,)}.items():
        if k not in z or z[k].shape != shape or z[k].dtype != np.uint8:
            raise DataCorruptError(f"bundled mnist5k.npz: array {k} missing or not uint8 of shape {shape}")
    return z["X_train"], z["y_train"], z["X_test"], z["y_test"]


def make_synthetic(rng: np.random.Generator, n_train=2000, n_test=500, n_features=20, n_classes=4,
                   clusters_per_class=2, noise=1.0):
    """Gaussian clusters, a few per class, on random centres: learnable but not linearly trivial. The sizes and the
    noise are checked before anything is drawn (``UsageError`` naming the ``data.synthetic`` key; the config caps
    the number of values), and the values drawn must be finite (a huge noise overflows)."""
    _check_synthetic(n_train, n_test, n_features, n_classes, clusters_per_class, noise)
    n_centres = n_classes * clusters_per_class
    centres = rng.standard_normal((n_centres, n_features)) * 2.0
    labels_of_centre = np.repeat(np.arange(n_classes), clusters_per_class)

    def draw(n):
        c = rng.integers(0, n_centres, n)
        X = centres[c] + noise * rng.standard_normal((n, n_features))
        return X, labels_of_centre[c]

    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, as one line
        X_train, y_train = draw(n_train)
        X_test, y_test = draw(n_test)
    for split, X in (("training", X_train), ("test", X_test)):
        if not finite(X):
            raise UsageError(f"data.synthetic.noise: {noise!r} makes the {split} values overflow to inf/NaN; "
                             "expected a noise small enough for finite values")
    return X_train, y_train, X_test, y_test


def _check_synthetic(n_train, n_test, n_features, n_classes, clusters_per_class, noise):
    for key, v, low in (("n_train", n_train, 2), ("n_test", n_test, 1), ("n_features", n_features, 1),
                        ("n_classes", n_classes, 2), ("clusters_per_class", clusters_per_class, 1)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
            raise UsageError(f"data.synthetic.{key}: expected an integer >= {low}, got {v!r}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.floating, np.integer)) \
            or not math.isfinite(noise) or noise <= 0:
        raise UsageError(f"data.synthetic.noise: expected a finite number > 0, got {noise!r}")


def finite(X: np.ndarray) -> bool:
    """Whether a float array holds no NaN and no inf, without a temporary the size of ``X`` (min and max propagate
    NaN and show an inf). Integer arrays are always finite."""
    if X.dtype.kind not in "fc" or X.size == 0:
        return True
    return bool(np.isfinite(X.min()) and np.isfinite(X.max()))


_BIG = 1 << 25  # elements: above this, the training std is accumulated in row blocks


def preprocess(X_train, others=(), *, scale=True, standardize=False, dtype=np.float32):
    """Scale uint8 pixels to [0, 1]; optionally standardize every feature with the *training* split's mean and
    std (features constant in training get std 1, so they stay finite). ``others`` get the same transform."""
    arrays = [np.array(X, dtype=dtype) for X in (X_train, *others)]  # copies: inputs stay untouched
    if scale:
        for X in arrays:
            X *= 1.0 / 255.0
    if standardize:
        mean = arrays[0].mean(axis=0, dtype=np.float64)
        if arrays[0].size <= _BIG:
            std = arrays[0].std(axis=0, dtype=np.float64)
        else:  # full MNIST / CIFAR-10: no float64 copy of the whole split (CIFAR-10's would be 1.2 GB)
            ssq = np.zeros_like(mean)
            for i in range(0, len(arrays[0]), 4096):
                d = arrays[0][i:i + 4096] - mean
                ssq += np.einsum("ij,ij->j", d, d)
            std = np.sqrt(ssq / len(arrays[0]))
        std[std < 1e-8] = 1.0
        for X in arrays:
            X -= mean.astype(dtype)
            X /= std.astype(dtype)
    return arrays


def carve_validation(X, y, fraction, rng: np.random.Generator):
    """Split a random ``fraction`` of the training set off as a validation split (stratification not needed at
    these sizes; the permutation comes from the passed Generator)."""
    n_val = int(round(len(X) * fraction))
    perm = rng.permutation(len(X))
    val, train = perm[:n_val], perm[n_val:]
    return X[train], y[train], X[val], y[val]
