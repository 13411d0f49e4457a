"""Decoded datasets, once per machine: the float32 arrays of MNIST, Fashion-MNIST or CIFAR-10, after limits, the
validation split and preprocessing, kept as ``.npy`` files under ``<cache>/decoded/<key>/`` and memory-mapped
read-only by every process that trains on them. The workers of a sweep or a report then share one copy of the
pages (the operating system's page cache) instead of each decoding and holding its own.

The key covers everything the arrays depend on: the data config, the dtype, the code hash of the numeric modules
(data/*.py among them) and the identity (path, size, modification time) of every source file. A cache entry that
does not open cleanly — damaged, partial, edited, of another shape — is decoded again and replaced; a cache folder
that cannot be written leaves each process decoding its own copy, as before. Entries of other code are removed
when a new one is stored. ``BNCLI_ARRAY_CACHE=0`` turns the cache off.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from .. import atomic
from ..data import Dataset
from ..data.sources import cache_dir, locate
from .provenance import code_hash

CACHED = ("mnist", "fashion-mnist", "cifar10")  # decoded from files; the bundled and synthetic sets are cheap
SPLITS = ("X_train", "y_train", "X_test", "y_test", "X_val", "y_val")


def cached_dataset(cfg, dtype: str, load) -> Dataset:
    """``load(cfg, dtype)``'s dataset, memory-mapped from the cache (decoded and stored by the first caller)."""
    if cfg.name not in CACHED or os.environ.get("BNCLI_ARRAY_CACHE") == "0":
        return load(cfg, dtype)
    folder = cache_dir() / "decoded" / key(cfg, dtype, locate(cfg.name, getattr(cfg, "path", None)))
    data = open_cached(folder)
    if data is not None:
        return data
    data = load(cfg, dtype)
    try:
        store(folder, data)
    except OSError:
        return data
    return open_cached(folder) or data


def key(cfg, dtype: str, located) -> str:
    files = []
    for f in sorted(located.all_files(), key=str):
        st = os.stat(f)
        files.append([str(Path(f).resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps([cfg.model_dump_json(), dtype, code_hash(), files])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def store(folder: Path, data: Dataset):
    """Write the arrays into a hidden sibling, then rename it into place; a concurrent writer's complete copy wins."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic.hidden_sibling(folder.parent, folder.name, ".tmp")
    try:
        meta = {"name": data.name, "n_classes": data.n_classes, "info": data.info, "code_hash": code_hash(),
                "arrays": {}}
        for split in SPLITS:
            a = getattr(data, split)
            if a is not None:
                np.save(tmp / f"{split}.npy", np.ascontiguousarray(a), allow_pickle=False)
                meta["arrays"][split] = {"shape": list(a.shape), "dtype": str(a.dtype)}
        (tmp / "meta.json").write_text(json.dumps(meta))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process stored it first (a non-empty folder is not replaced)
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prune(folder.parent)


def prune(decoded: Path):
    """Remove the entries written by other code (an upgrade, a local change to the numeric modules): no run of this
    code can use them, and each is the size of a dataset."""
    for entry in decoded.iterdir():
        if entry.name.startswith("."):
            continue
        try:
            stale = json.loads((entry / "meta.json").read_text()).get("code_hash") != code_hash()
        except (OSError, ValueError, AttributeError):
            stale = False  # being written, or not ours to judge
        if stale:
            shutil.rmtree(entry, ignore_errors=True)


def open_cached(folder: Path) -> Dataset | None:
    """The cached dataset, memory-mapped read-only, or None if the entry is missing or does not match its meta."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        arrays = {}
        for split, want in meta["arrays"].items():
            if split not in SPLITS:
                return None
            a = np.load(folder / f"{split}.npy", mmap_mode="r", allow_pickle=False)
            if list(a.shape) != want["shape"] or str(a.dtype) != want["dtype"]:
                return None
            arrays[split] = a
        if not all(s in arrays for s in SPLITS[:4]):
            return None
        return Dataset(meta["name"], arrays["X_train"], arrays["y_train"], arrays["X_test"], arrays["y_test"],
                       int(meta["n_classes"]), arrays.get("X_val"), arrays.get("y_val"), dict(meta["info"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
