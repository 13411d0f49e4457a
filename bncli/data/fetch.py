"""``bncli data fetch``: download the official files, verify their published checksums, resume partial downloads,
extract archives safely (download.py and archive.py do the two jobs; this module decides what a dataset needs).

- Downloads go to ``<file>.part`` and are renamed into place only once the MD5 matches the published one. A
  ``.part`` left by an interrupted download is resumed with an HTTP ``Range`` request (a server that ignores it and
  answers 200 makes the download start over). A wrong checksum deletes the ``.part``: nothing bad is kept.
- Archives (CIFAR-10) are extracted member by member into a hidden staging folder inside the dataset folder, then
  renamed into place. Refused: absolute names, ``..`` components, links of any kind, devices, FIFOs — the whole
  archive is refused and nothing is written outside the staging folder (Python's ``tarfile.data_filter`` is
  applied as well where it exists). The archive is deleted after extraction; its checksums are kept in
  ``manifest.json`` with the SHA-256 of every extracted file (``bncli data list`` re-checks them).
- The base URL can be overridden (tests, mirrors): ``mirror=`` / ``--mirror URL`` (the dataset's files directly
  under it), or ``$BNCLI_DATA_MIRROR`` (a tree ``<mirror>/<name>/<file>``).
- Progress is reported to any object following the small protocol documented on ``download.Progress``; this module imports
  no UI library.
"""

from __future__ import annotations

import json
import os
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .. import atomic
from ..errors import BncliError, UsageError
from . import cifar, sources
from .archive import extract_tar
from .datasets import DataCorruptError
from .download import TIMEOUT, FetchError, Progress, Unreachable, _check_url, _part_path, download, file_hashes

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 << 20  # a real one is a few KB
_HEX_FIELDS = {"sha256": 64, "md5": 32, "published_md5": 32}


@dataclass
class FetchReport:
    name: str
    folder: Path
    actions: list = field(default_factory=list)  # (file, what happened)

    @property
    def did_nothing(self):
        return all(what == "present" for _, what in self.actions)


# -- manifest ----------------------------------------------------------------------------------------------------
def load_manifest(folder) -> tuple[dict, str | None]:
    """(manifest, problem). ``problem`` is None when ``manifest.json`` is absent or sound; otherwise it says why the
    file is damaged (not JSON, not an object, an entry that is not an object, a field of the wrong type, ...), and
    the manifest returned is empty: nothing in a damaged manifest is trusted. Never raises for a damaged file."""
    p = Path(folder) / MANIFEST
    empty = {"files": {}}
    try:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode):
            return empty, "not a regular file"
        if st.st_size > MAX_MANIFEST_BYTES:
            return empty, f"{st.st_size} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may have"
        with open(p, "rb") as f:
            text = f.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        return empty, None
    except OSError as e:
        return empty, f"cannot read it: {e.strerror or e}"
    try:
        d = json.loads(text.decode("utf-8"))
    except RecursionError:
        return empty, "not valid JSON: nested too deeply"
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return empty, f"not valid JSON: {str(e)[:80] or type(e).__name__}"
    problem = _manifest_problem(d)
    return (empty, problem) if problem else (d, None)


def _manifest_problem(d) -> str | None:
    if not isinstance(d, dict):
        return f"expected a JSON object, got {type(d).__name__}"
    if not isinstance(d.get("dataset", ""), str):
        return "'dataset' is not a string"
    files = d.get("files")
    if not isinstance(files, dict):
        return "'files' is missing or not an object"
    for rel, entry in files.items():
        if not isinstance(entry, dict):
            return f"the entry of {rel[:200]!r} is not an object (got {type(entry).__name__})"
        size = entry.get("size", 0)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return f"the size of {rel[:200]!r} is not a whole number of bytes"
        for key, n in _HEX_FIELDS.items():
            v = entry.get(key)
            if v is not None and not (isinstance(v, str) and len(v) == n
                                      and all(c in "0123456789abcdef" for c in v)):
                return f"the {key} of {rel[:200]!r} is not {n} hex digits"
        for key in ("url", "recorded"):
            if not isinstance(entry.get(key, ""), str):
                return f"the {key} of {rel[:200]!r} is not a string"
        if not isinstance(entry.get("extracted_from", {}), dict):
            return f"the extracted_from of {rel[:200]!r} is not an object"
    return None


def read_manifest(folder) -> dict:
    """The manifest of ``folder`` (empty if absent or damaged: see ``load_manifest``)."""
    return load_manifest(folder)[0]


def write_manifest(folder, manifest: dict):
    atomic.write_text(Path(folder) / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


# -- fetching a dataset ------------------------------------------------------------------------------------------
def base_url(name: str, mirror: str | None = None) -> str:
    if mirror:
        url = mirror
    elif os.environ.get("BNCLI_DATA_MIRROR"):
        url = os.environ["BNCLI_DATA_MIRROR"].rstrip("/") + f"/{name}/"
    else:
        url = sources.BASE_URLS[name]
    return url if url.endswith("/") else url + "/"


@contextmanager
def _lock(folder: Path):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".fetch.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise BncliError(f"another 'bncli data fetch' is writing {folder}; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def fetch(name: str, root=None, fmt: str = "bin", *, mirror: str | None = None, progress: Progress | None = None,
          force=False, timeout=TIMEOUT) -> FetchReport:
    """Download (if needed) ``name`` into ``<root>/<name>/`` (root default: $BNCLI_DATA, else the cache)."""
    sources.check_name(name, sources.REAL)
    if name == "cifar10" and fmt not in sources.CIFAR_ARCHIVES:
        raise UsageError(f"--format {fmt!r}: expected one of {', '.join(sources.CIFAR_ARCHIVES)}")
    root = Path(root).expanduser() if root is not None else sources.default_root()
    folder = root / name
    url0 = base_url(name, mirror)
    _check_url(url0)
    report = FetchReport(name, folder)
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first: what a failed fetch removes
    new_lock = not (folder / ".fetch.lock").exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BncliError(f"cannot create {folder} ({e.strerror or e})") from None
    try:
        with _lock(folder):
            manifest, problem = load_manifest(folder)
            manifest.setdefault("dataset", name)
            if problem:  # nothing in it is trusted; it is rewritten below from what is verified now
                again = "; the extracted files cannot be verified: fetched again" if name == "cifar10" else ""
                report.actions.append((MANIFEST, f"damaged ({problem}): rebuilt{again}"))
            reached = True
            try:
                if name == "cifar10":
                    _fetch_cifar(folder, fmt, url0, manifest, report, progress, force or bool(problem), timeout)
                else:
                    _fetch_idx(folder, name, url0, manifest, report, progress, force, timeout)
            except Unreachable:
                reached = False
                raise
            finally:  # what was verified before a failure stays recorded; a server never reached, nothing new
                if reached or manifest.get("files") or (folder / MANIFEST).exists():
                    write_manifest(folder, manifest)
    except Unreachable as e:
        _remove_if_untouched(folder, made, new_lock)
        raise FetchError(f"{e}. No network? Place the files {', '.join(_names(name, fmt))} in {folder} yourself "
                         f"(bncli checks them), or point a run at a folder holding them with data.path=DIR") from None
    return report


def _names(name: str, fmt: str) -> list[str]:
    """The files a user can put in place by hand instead of fetching."""
    return [sources.CIFAR_ARCHIVES[fmt]] if name == "cifar10" else list(sources.MD5[name])


def _remove_if_untouched(folder: Path, made: list[Path], new_lock: bool):
    """Take away the lock file and the folders a fetch created (deepest first, while they hold nothing else): a
    fetch that could reach no server leaves no trace (a partial download is kept, and its folders, for resuming).
    Another fetch that opened the lock file in the instant between its release and its removal would hold a lock
    nobody else sees; both would have to be started within that instant, with no network."""
    try:
        if new_lock and folder not in made:
            (folder / ".fetch.lock").unlink(missing_ok=True)
        for folder in made:
            if not {p.name for p in folder.iterdir()} <= {".fetch.lock"}:
                return
            (folder / ".fetch.lock").unlink(missing_ok=True)
            folder.rmdir()
    except OSError:
        pass


def _record(manifest, rel, hashes, url=None, published_md5=None, extracted_from=None):
    entry = {"size": hashes["size"], "sha256": hashes["sha256"]}
    if "md5" in hashes:
        entry["md5"] = hashes["md5"]
    if url:
        entry["url"] = url
    if published_md5:
        entry["published_md5"] = published_md5
    if extracted_from:
        entry["extracted_from"] = extracted_from
    entry["recorded"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest["files"][rel] = entry


def _fetch_idx(folder, name, url0, manifest, report, progress, force, timeout):
    for fname, md5 in sources.MD5[name].items():
        dest = folder / fname
        raw = folder / fname.removesuffix(".gz")
        if not force and dest.is_file():
            hashes = file_hashes(dest)
            if hashes["md5"] == md5:
                report.actions.append((fname, "present"))
                if fname not in manifest["files"]:
                    _record(manifest, fname, {**hashes, "size": dest.stat().st_size}, published_md5=md5)
                continue
            report.actions.append((fname, "checksum mismatch: downloading again"))
            dest.unlink()
        elif not force and raw.is_file():
            report.actions.append((raw.name, "present (uncompressed: no published checksum to check)"))
            continue
        url = url0 + fname
        res = _download_reported(url, dest, md5, report, progress, timeout)
        _record(manifest, fname, res, url=url, published_md5=md5)


def _download_reported(url, dest: Path, md5, report, progress, timeout) -> dict:
    """``download``, with a report line saying whether it resumed a partial download or had to start over."""
    part = _part_path(dest)
    had_part = part.is_file() and part.stat().st_size > 0
    res = download(url, dest, md5, progress=progress, timeout=timeout)
    report.actions.append((dest.name, _how(res, had_part)))
    return res


def _how(res, had_part):
    if res["resumed_from"]:
        return f"downloaded (resumed from byte {res['resumed_from']})"
    return "downloaded (the partial download could not be resumed)" if had_part else "downloaded"


def _cifar_expected(fmt):
    sub = cifar.BIN_DIR if fmt == "bin" else cifar.PY_DIR
    files = cifar.BIN_TRAIN + cifar.BIN_TEST if fmt == "bin" else cifar.PY_TRAIN + cifar.PY_TEST
    return sub, [f"{sub}/{f}" for f in files]


def _fetch_cifar(folder, fmt, url0, manifest, report, progress, force, timeout):
    sub, expected = _cifar_expected(fmt)
    if not force and _cifar_present(folder, sub, expected, manifest["files"], report):
        return
    archive_name = sources.CIFAR_ARCHIVES[fmt]
    md5 = sources.MD5["cifar10"][archive_name]
    archive, url = folder / archive_name, url0 + archive_name
    res = _cifar_archive(archive, url, md5, report, progress, timeout)
    written = _extract_cifar(archive, folder, sub, expected)
    source = {"file": archive_name, "url": url, "md5": md5, "sha256": res["sha256"], "size": res["size"]}
    _record_extracted(manifest, folder, sub, written, source)
    archive.unlink(missing_ok=True)  # the extracted files are what is used; the manifest keeps the archive's hashes
    report.actions.append((sub, f"extracted {len(written)} files"))


def _cifar_present(folder, sub, expected, entries, report) -> bool:
    """Whether the extracted files are all there, as the manifest recorded them (or not recorded at all: a copy
    put there by hand is used as it is)."""
    if not all((folder / rel).is_file() for rel in expected):
        return False
    recorded = [entries.get(rel) for rel in expected]
    if all(e is None for e in recorded):
        report.actions.append((sub, "present (not fetched by bncli: unverified)"))
        return True
    if all(e and e.get("size") == (folder / rel).stat().st_size for e, rel in zip(recorded, expected)):
        report.actions.append((sub, "present"))
        return True
    report.actions.append((sub, "files differ from the manifest: fetching again"))
    return False


def _cifar_archive(archive: Path, url, md5, report, progress, timeout) -> dict:
    """The archive's hashes and size, downloading it unless a copy with the published MD5 is there already."""
    if archive.is_file() and file_hashes(archive, ("md5",))["md5"] == md5:
        res = {**file_hashes(archive), "size": archive.stat().st_size}
        report.actions.append((archive.name, "present"))
        return res
    archive.unlink(missing_ok=True)
    return _download_reported(url, archive, md5, report, progress, timeout)


def _extract_cifar(archive: Path, folder, sub, expected) -> list:
    try:
        written = extract_tar(archive, folder, only_under=(sub,))
    except DataCorruptError:
        archive.unlink(missing_ok=True)  # its checksum matched but it is unusable: do not keep it
        raise
    missing = [rel for rel in expected if rel not in written]
    if missing:
        raise DataCorruptError(f"{archive}: the archive lacks {', '.join(missing)}")
    return written


def _record_extracted(manifest, folder, sub, written, source):
    """Replace the manifest entries under ``sub`` by the files just extracted from ``source``."""
    entries = manifest["files"]
    for rel in list(entries):
        if rel.startswith(sub + "/"):
            del entries[rel]
    for rel in written:
        h = file_hashes(folder / rel, ("sha256",))
        _record(manifest, rel, {**h, "size": (folder / rel).stat().st_size}, extracted_from=source)


# -- what is there -----------------------------------------------------------------------------------------------
def _du(paths) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def status(name: str, folder: Path, check=True) -> list[dict]:
    """One row per copy of ``name`` in ``folder`` (and per partial download): format, files, bytes, checksums."""
    folder = Path(folder)
    rows = []
    if not folder.is_dir():
        return rows
    manifest, problem = load_manifest(folder)
    if name == "cifar10":
        for fmt, sub in (("bin", cifar.BIN_DIR), ("python", cifar.PY_DIR)):
            if (folder / sub).is_dir():
                _, expected = _cifar_expected(fmt)
                present = [rel for rel in expected if (folder / rel).is_file()]
                rows.append(_status_row(name, folder / sub, fmt, folder, present, len(present) == len(expected),
                                        manifest, check, {}, problem))
    else:
        present, complete = [], True
        for stem in sources.IDX_FILES.values():
            here = [f for f in (stem, f"{stem}.gz") if (folder / f).is_file()]
            present += here
            complete &= bool(here)
        if present:
            rows.append(_status_row(name, folder, "idx", folder, present, complete, manifest, check,
                                    sources.MD5[name], problem))
    for p in sorted(folder.glob("*.part")):
        rows.append({"dataset": name, "location": str(p), "format": "partial download", "files": 1,
                     "complete": False, "bytes": p.stat().st_size, "checksums": "incomplete (fetch resumes it)"})
    return rows


def _status_row(name, location, fmt, folder, present, complete, manifest, check, published, problem=None):
    checks = []
    if check:
        for rel in present:
            try:
                checks.append(_check_file(folder / rel, rel, published.get(rel), manifest["files"].get(rel)))
            except OSError as e:  # unreadable: said in the row, not a failure of the whole listing
                checks.append(f"UNREADABLE {rel} ({e.strerror or e})")
    bad = [c for c in checks if c.startswith("MISMATCH")]
    unreadable = [c for c in checks if c.startswith("UNREADABLE")]
    if not check:
        summary = "not checked"
    elif bad or unreadable:
        summary = "; ".join(
            ([f"MISMATCH {len(bad)}/{len(checks)}: " + ", ".join(b.removeprefix("MISMATCH ") for b in bad)]
             if bad else [])
            + ([f"UNREADABLE {len(unreadable)}/{len(checks)}: "
                + ", ".join(u.removeprefix("UNREADABLE ") for u in unreadable)] if unreadable else []))
    elif checks and all(c == "ok" for c in checks):
        summary = f"ok ({len(checks)} files)"
    elif "ok" in checks:
        summary = f"ok {checks.count('ok')}, unverified {checks.count('unverified')}"
    else:
        summary = "unverified (no published checksum or manifest entry)"
    if problem:
        summary += f"; {MANIFEST} damaged ({problem}): bncli data fetch {name} rebuilds it"
    return {"dataset": name, "location": str(location), "format": fmt, "files": len(present), "complete": complete,
            "bytes": sum(_size_of(folder / rel) for rel in present), "checksums": summary}


def _check_file(p: Path, rel: str, want_md5, entry) -> str:
    if want_md5:
        return "ok" if file_hashes(p, ("md5",))["md5"] == want_md5 else f"MISMATCH {rel}"
    if entry and entry.get("sha256"):
        return "ok" if file_hashes(p, ("sha256",))["sha256"] == entry["sha256"] else f"MISMATCH {rel}"
    return "unverified"


def _size_of(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:  # gone since it was listed
        return 0
