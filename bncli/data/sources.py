"""Where the real datasets come from and where their files are found.

Lookup order for a dataset's files: ``data.path`` (the folder itself, or its ``<name>/`` subfolder), then
``$BNCLI_DATA/<name>/``, then the per-user cache ``$XDG_CACHE_HOME/bncli/<name>/`` (default ``~/.cache/bncli``).
``bncli data fetch NAME`` downloads into ``--root``, else ``$BNCLI_DATA``, else the cache.

Layouts (the official file names):

- ``mnist/`` and ``fashion-mnist/``: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each gzip-compressed (``.gz``, as published) or raw.
- ``cifar10/``: ``cifar-10-batches-bin/`` (preferred) or ``cifar-10-batches-py/`` (see ``cifar.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import cifar
from .datasets import DataCorruptError, DataError, DataMissingError
from .idx import read_idx_pair

REAL = ("mnist", "fashion-mnist", "cifar10")
BUNDLED = ("mnist-5k", "synthetic")

IDX_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}

# Official (or the usual, torchvision's) locations and the published MD5 checksums of the files as served.
BASE_URLS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
}
MD5 = {
    "mnist": {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
              "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
              "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
              "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
    "fashion-mnist": {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                      "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                      "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                      "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
    "cifar10": {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530",
                "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
}
CIFAR_ARCHIVES = {"bin": "cifar-10-binary.tar.gz", "python": "cifar-10-python.tar.gz"}
CLASSES = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "cifar10": cifar.CLASSES,
}
CREDITS = {
    "mnist": "MNIST: Yann LeCun, Corinna Cortes and Christopher J. C. Burges",
    "fashion-mnist": "Fashion-MNIST: Han Xiao, Kashif Rasul and Roland Vollgraf (Zalando Research), MIT licence",
    "cifar10": "CIFAR-10: Alex Krizhevsky, Vinod Nair and Geoffrey Hinton (2009)",
}


def check_name(name: str, allowed=REAL + BUNDLED):
    if name not in allowed:
        from ..errors import UsageError

        raise UsageError(f"unknown dataset {name!r}; expected one of: {', '.join(allowed)}")


# -- places ------------------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/bncli`` (an absolute XDG_CACHE_HOME only, as the spec says), else ``~/.cache/bncli``.
    ``~`` is ``$HOME`` if absolute, else the user's home in the password database: a relative or empty value of
    either variable must not put a cache (decoded datasets, downloads) under whatever the current folder is."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg) / "bncli"
    home = os.environ.get("HOME", "")
    if not os.path.isabs(home):
        try:
            import pwd

            home = pwd.getpwuid(os.getuid()).pw_dir
        except (ImportError, KeyError, OSError):  # no password database (Windows), no entry for this user
            home = os.path.expanduser("~") if os.name == "nt" else ""
    if not os.path.isabs(home):
        from ..errors import UsageError

        raise UsageError("no absolute folder for the cache: $XDG_CACHE_HOME and $HOME are unset or relative and the "
                         "user has no home folder; set XDG_CACHE_HOME to an absolute path")
    return Path(home) / ".cache" / "bncli"


def env_root() -> Path | None:
    v = os.environ.get("BNCLI_DATA", "")
    return Path(v).expanduser() if v else None


def default_root() -> Path:
    """Where ``bncli data fetch`` writes unless told otherwise."""
    return env_root() or cache_dir()


def roots(root=None) -> list[tuple[Path, str]]:
    """The roots searched, each with where it came from: an explicit ``root`` only, else $BNCLI_DATA and cache."""
    if root is not None:
        return [(Path(root).expanduser(), "--root")]
    out = []
    if env_root() is not None:
        out.append((env_root(), "$BNCLI_DATA"))
    out.append((cache_dir(), "cache"))
    return out


def candidates(name: str, path=None, root=None) -> list[tuple[Path, str]]:
    """Folders that may hold ``name``'s files, in lookup order, each with where it came from."""
    out = []
    if path:
        p = Path(path).expanduser()
        out += [(p, "data.path"), (p / name, "data.path")]
    out += [(r / name, origin) for r, origin in roots(root)]
    seen, uniq = set(), []
    for d, origin in out:
        if d not in seen:
            seen.add(d)
            uniq.append((d, origin))
    return uniq


# -- layouts -----------------------------------------------------------------------------------------------------
@dataclass
class Located:
    name: str
    folder: Path  # the folder holding the files
    format: str  # "idx", "bin" or "python"
    files: dict  # role -> Path ("train_images", ... for idx; "train", "test" -> list of Paths for CIFAR)
    origin: str = ""

    def all_files(self) -> list[Path]:
        out = []
        for v in self.files.values():
            out += v if isinstance(v, list) else [v]
        return out


def _idx_layout(name, d: Path) -> tuple[Located | None, list[str]]:
    files, missing = {}, []
    for role, stem in IDX_FILES.items():
        raw, gz = d / stem, d / f"{stem}.gz"
        if raw.is_file():
            files[role] = raw
        elif gz.is_file():
            files[role] = gz
        elif raw.exists() or gz.exists():
            missing.append(f"{stem}(.gz) (a folder or special file is there, not a file)")
        else:
            missing.append(f"{stem}(.gz)")
    return (Located(name, d, "idx", files) if not missing else None), missing


def _cifar_layouts(d: Path):
    """(format, folder, train files, test files) that could be in ``d``: binary first."""
    out = []
    for fmt, sub, train, test in (("bin", cifar.BIN_DIR, cifar.BIN_TRAIN, cifar.BIN_TEST),
                                  ("python", cifar.PY_DIR, cifar.PY_TRAIN, cifar.PY_TEST)):
        out.append((fmt, d / sub, train, test))
        if d.name == sub or (d / train[0]).is_file():
            out.append((fmt, d, train, test))
    return out


def _cifar_layout(d: Path) -> tuple[Located | None, list[str]]:
    partial = []
    for fmt, folder, train, test in _cifar_layouts(d):
        present = [f for f in train + test if (folder / f).is_file()]
        if len(present) == len(train + test):
            return Located("cifar10", folder, fmt, {"train": [folder / f for f in train],
                                                    "test": [folder / f for f in test]}), []
        if present:
            partial += [f"{folder.name}/{f}" for f in train + test if f not in present]
    return None, partial


def expected_files(name: str) -> str:
    if name == "cifar10":
        return (f"{cifar.BIN_DIR}/ ({', '.join(cifar.BIN_TRAIN + cifar.BIN_TEST)}) or {cifar.PY_DIR}/ "
                f"({', '.join(cifar.PY_TRAIN + cifar.PY_TEST)})")
    return ", ".join(f"{stem}(.gz)" for stem in IDX_FILES.values())


def locate(name: str, path=None, root=None) -> Located:
    """The first folder holding a complete copy of ``name``; else ``DataMissingError`` naming the expected files,
    the folders searched and the fetch command."""
    check_name(name, REAL)
    partial = []
    searched = []
    for d, origin in candidates(name, path, root):
        try:
            found, missing = (_cifar_layout(d) if name == "cifar10" else _idx_layout(name, d))
            is_dir = d.is_dir()
        except OSError as e:  # a name too long, a folder that cannot be searched, ...
            raise DataMissingError(f"{_clip(d)} ({origin}): cannot look for the {name} files there "
                                   f"({e.strerror or e}); expected a folder holding {expected_files(name)}") from None
        if found is not None:
            found.origin = origin
            return found
        searched.append(f"{d} ({origin})")
        if missing and is_dir and (name == "cifar10" or len(missing) < len(IDX_FILES)):
            partial.append(f"{d} lacks {', '.join(missing)}")
    msg = (f"dataset {name!r} not found: expected {expected_files(name)} in one of: {'; '.join(searched)}. "
           + (f"Incomplete copies: {'; '.join(partial)}. " if partial else "")
           + f"Fetch the files with: bncli data fetch {name}"
           + (f" --root {root}" if root is not None else "")
           + " (or point data.path at a folder holding them)")
    raise DataMissingError(msg)


def _clip(path, n=160) -> str:
    text = str(path)
    return text if len(text) <= n else f"{text[:n // 2]}...{text[-n // 2:]} ({len(text)} characters)"


# -- loading -----------------------------------------------------------------------------------------------------
def read_located(loc: Located):
    """(X_train, y_train, X_test, y_test) as uint8 arrays, X flattened (N, 784) or (N, 3072)."""
    if loc.format == "idx":
        X_train, y_train = read_idx_pair(loc.files["train_images"], loc.files["train_labels"])
        X_test, y_test = read_idx_pair(loc.files["test_images"], loc.files["test_labels"])
    elif loc.format == "bin":
        X_train, y_train = cifar.read_bin(loc.folder, [p.name for p in loc.files["train"]])
        X_test, y_test = cifar.read_bin(loc.folder, [p.name for p in loc.files["test"]])
    elif loc.format == "python":
        X_train, y_train = cifar.read_py(loc.folder, [p.name for p in loc.files["train"]])
        X_test, y_test = cifar.read_py(loc.folder, [p.name for p in loc.files["test"]])
    else:  # pragma: no cover
        raise DataError(f"unknown format {loc.format!r}")
    if len(X_train) < 2 or len(X_test) < 1:
        raise DataCorruptError(f"{loc.folder}: {len(X_train)} training and {len(X_test)} test images; too few")
    return X_train, y_train, X_test, y_test


def load_raw(name: str, path=None, root=None):
    """Locate and read ``name``: ((X_train, y_train, X_test, y_test) uint8, Located)."""
    loc = locate(name, path, root)
    return read_located(loc), loc


def pixel_stats(X: np.ndarray) -> dict:
    """Mean, std, min and max of uint8 pixels, exact, from a histogram (no float copy of the array)."""
    flat = np.ascontiguousarray(X).reshape(-1)
    counts = np.zeros(256, np.float64)
    for i in range(0, len(flat), 1 << 22):  # in chunks: bincount would otherwise make an int64 copy of it all
        counts += np.bincount(flat[i:i + (1 << 22)], minlength=256)
    n = counts.sum()
    if n == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": 0, "max": 0}
    v = np.arange(256, dtype=np.float64)
    mean = float((counts * v).sum() / n)
    var = float((counts * (v - mean) ** 2).sum() / n)
    nz = np.nonzero(counts)[0]
    return {"mean": mean, "std": var ** 0.5, "min": int(nz[0]), "max": int(nz[-1])}
