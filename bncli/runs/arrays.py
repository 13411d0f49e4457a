"""Decoded datasets, once per machine: the float32 arrays of MNIST, Fashion-MNIST or CIFAR-10, after limits, the
validation split and preprocessing, kept as ``.npy`` files under ``<cache>/decoded/<key>/`` and memory-mapped
read-only by every process that trains on them. The workers of a sweep or a report then share one copy of the
pages (the operating system's page cache) instead of each decoding and holding its own.

The key covers everything the arrays depend on: the data config, the dtype, the code hash of the numeric modules
(data/*.py among them), the folder the files were found in and the *contents* of every source file (a SHA-256 of
each: a file replaced by another of the same size and modification time gives another key). The entry's meta.json
records a checksum of each array and one of itself; an entry is used only when every array matches its shape,
dtype, size and checksum. One that does not — damaged, partial, edited in place, of another shape, a meta.json
that is a FIFO, huge or absurdly nested — is decoded again and replaced; a cache folder that cannot be written
leaves each process decoding its own copy, as before. Entries of other code are removed when a new one is stored.
``BNCLI_ARRAY_CACHE=0`` turns the cache off.

The same checksums give a dataset its identity (``fingerprint``): what a run trains and evaluates on, whatever
folder the files came from. A verified cache entry's checksums are reused, so the arrays are hashed once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np

from .. import atomic, safeio
from ..data import Dataset
from ..data.sources import cache_dir, locate
from .provenance import code_hash
from .verify import meta_checksum

CACHED = ("mnist", "fashion-mnist", "cifar10")  # decoded from files; the bundled and synthetic sets are cheap
SPLITS = ("X_train", "y_train", "X_test", "y_test", "X_val", "y_val")
# SHA-256, not BLAKE2b: with the CPU's SHA instructions (OpenSSL) it hashes ~1.6 GB/s here against ~0.9 GB/s
HASH = "sha256"
CHUNK = 1 << 22  # bytes hashed per update: large enough to run at full speed, small enough to copy nothing big
META_LIMIT = 1 << 20  # a meta.json bncli writes is a few hundred bytes
SOURCE_LIMIT = 320 << 20  # above the largest source file any decoder accepts (200 MiB IDX data, 256 MiB pickle)
FINGERPRINT_VERSION = "bncli-data-v1"


def checksum(a: np.ndarray) -> str:
    """SHA-256 of the array's bytes in C order, in chunks (a memory-mapped array is read, never copied whole)."""
    h = hashlib.new(HASH)
    if a.flags.c_contiguous:
        flat = a.reshape(-1).view(np.uint8)
        for i in range(0, flat.size, CHUNK):
            h.update(flat[i:i + CHUNK])
    else:  # a strided view: copy a few rows at a time
        rows = max(1, CHUNK // max(1, a[:1].nbytes))
        for i in range(0, len(a), rows):
            h.update(np.ascontiguousarray(a[i:i + rows]).reshape(-1).view(np.uint8))
    return h.hexdigest()


def fingerprint(data: Dataset, sums: dict | None = None) -> str:
    """32 hex characters naming the arrays ``data`` holds (every split, its shape, dtype and bytes) and its number
    of classes. ``sums``: checksums already verified for these very arrays (a cache entry's), not computed again."""
    parts = []
    for split in SPLITS:
        a = getattr(data, split)
        if a is not None:
            parts.append([split, list(a.shape), a.dtype.str, (sums or {}).get(split) or checksum(a)])
    blob = json.dumps([FINGERPRINT_VERSION, int(data.n_classes), parts])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def cached_dataset(cfg, dtype: str, load) -> Dataset:
    """``load(cfg, dtype)``'s dataset, memory-mapped from the cache (decoded and stored by the first caller)."""
    return cached_with_sums(cfg, dtype, load)[0]


def cached_with_sums(cfg, dtype: str, load) -> tuple[Dataset, dict | None]:
    """(dataset, the checksums of its arrays if a cache entry verified them, else None)."""
    if cfg.name not in CACHED or os.environ.get("BNCLI_ARRAY_CACHE") == "0":
        return load(cfg, dtype), None
    try:
        folder = cache_dir() / "decoded" / key(cfg, dtype, locate(cfg.name, getattr(cfg, "path", None)))
    except (OSError, ValueError):  # a source file that cannot be hashed: the decoder says what is wrong with it
        return load(cfg, dtype), None
    got = open_verified(folder, dtype)
    if got is not None:
        return got
    data = load(cfg, dtype)
    try:
        store(folder, data)
    except OSError:
        return data, None
    return open_verified(folder, dtype) or (data, None)


def key(cfg, dtype: str, located) -> str:
    """From the inputs only. The folder is part of it so that the entry's info (the source folder) is right."""
    files = []
    for f in sorted(located.all_files(), key=str):
        data = safeio.read_bytes(f, SOURCE_LIMIT)  # a regular file, bounded; raises for anything else
        files.append([Path(f).name, hashlib.new(HASH, data).hexdigest()])
    blob = json.dumps([cfg.model_dump_json(), dtype, code_hash(), str(Path(located.folder).resolve()),
                       located.format, files])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def store(folder: Path, data: Dataset):
    """Write the arrays into a hidden sibling, then rename it into place. A concurrent writer's verified copy wins;
    an entry that does not verify is moved aside and replaced."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic.hidden_sibling(folder.parent, folder.name, ".tmp")
    try:
        meta = {"name": data.name, "n_classes": data.n_classes, "info": data.info, "code_hash": code_hash(),
                "arrays": {}}
        for split in SPLITS:
            a = getattr(data, split)
            if a is not None:
                a = np.ascontiguousarray(a)
                np.save(tmp / f"{split}.npy", a, allow_pickle=False)
                meta["arrays"][split] = {"shape": list(a.shape), "dtype": str(a.dtype), HASH: checksum(a)}
        meta = json.loads(json.dumps(meta))  # as it will be read back (tuples as lists), then sealed
        (tmp / "meta.json").write_text(json.dumps({**meta, "seal": meta_checksum(meta, "seal")}))
        try:
            os.replace(tmp, folder)
        except OSError:  # a non-empty folder is there: another process's copy, or a bad entry
            if open_verified(folder) is None:
                _replace_bad(folder, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prune(folder.parent)


def _replace_bad(folder: Path, tmp: Path):
    old = atomic.hidden_sibling(folder.parent, folder.name, ".old")
    try:
        try:
            os.replace(folder, old / folder.name)  # a folder, a file or a link: moved aside whole
        except FileNotFoundError:
            pass
        try:
            os.replace(tmp, folder)
        except OSError:  # another writer put its copy there in between
            if open_verified(folder) is None:
                raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def prune(decoded: Path):
    """Remove the entries written by other code (an upgrade, a local change to the numeric modules): no run of this
    code can use them, and each is the size of a dataset."""
    for entry in decoded.iterdir():
        if entry.name.startswith("."):
            continue
        try:
            stale = safeio.read_json(entry / "meta.json", META_LIMIT, follow=False).get("code_hash") != code_hash()
        except (OSError, ValueError, AttributeError):
            stale = False  # being written, or not ours to judge
        if stale:
            shutil.rmtree(entry, ignore_errors=True)


def open_cached(folder: Path, dtype: str | None = None) -> Dataset | None:
    """The cached dataset, memory-mapped read-only, or None if the entry is missing or does not verify."""
    got = open_verified(folder, dtype)
    return None if got is None else got[0]


def open_verified(folder: Path, dtype: str | None = None) -> tuple[Dataset, dict] | None:
    """(the cached dataset, memory-mapped read-only, {split: checksum}) if every array matches its meta.json (shape,
    dtype, size, checksum) and meta.json its seal; else None. ``dtype``: the features' dtype expected."""
    try:
        meta = safeio.read_json(folder / "meta.json", META_LIMIT, follow=False)
        if meta["seal"] != meta_checksum(meta, "seal"):  # an edited n_classes, shape or checksum
            return None
        arrays, sums = {}, {}
        for split, want in meta["arrays"].items():
            if split not in SPLITS:
                return None
            expected = want["dtype"]
            if expected != ("int64" if split.startswith("y_") else dtype or expected):  # labels are int64
                return None
            a = _open_array(folder / f"{split}.npy")
            if list(a.shape) != want["shape"] or str(a.dtype) != expected or checksum(a) != want[HASH]:
                return None
            arrays[split], sums[split] = a, want[HASH]
        if not all(s in arrays for s in SPLITS[:4]) or ("X_val" in arrays) != ("y_val" in arrays):
            return None
        data = Dataset(meta["name"], arrays["X_train"], arrays["y_train"], arrays["X_test"], arrays["y_test"],
                       int(meta["n_classes"]), arrays.get("X_val"), arrays.get("y_val"), dict(meta["info"]))
        return data, sums
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError):
        return None


def _open_array(path: Path) -> np.ndarray:
    """A regular .npy file (never a link, a FIFO or a device: np.load would follow it, or wait for a writer forever)
    of exactly the size its header announces, memory-mapped read-only."""
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path}: not a regular file")
    a = np.load(path, mmap_mode="r", allow_pickle=False)
    if not isinstance(a, np.memmap) or a.offset + a.nbytes != st.st_size:
        raise ValueError(f"{path}: not the size its header announces")
    return a
