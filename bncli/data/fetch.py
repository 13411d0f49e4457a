"""``bncli data fetch``: download the official files, verify their published checksums, resume partial downloads,
extract archives safely.

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
- Progress is reported to any object following the small protocol documented on ``Progress``; this module imports
  no UI library.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .. import atomic
from ..atomic import fsync_dir, hidden_sibling
from ..errors import BncliError, UsageError
from . import cifar, sources
from .datasets import DataCorruptError

CHUNK = 1 << 20
TIMEOUT = 60
MAX_EXTRACT_BYTES = 2 << 30  # the CIFAR-10 archives extract to ~180 MB
MANIFEST = "manifest.json"
USER_AGENT = "bncli-data-fetch (+https://github.com/; urllib)"


class FetchError(BncliError):
    """A download failed (network, HTTP status): exit code 1; a partial download is kept for resuming."""


class ChecksumError(DataCorruptError):
    """A downloaded file does not match its published checksum."""


class UnsafeArchiveError(DataCorruptError):
    """An archive member would escape the target folder or is not a plain file or directory."""


class Progress:
    """The progress protocol of ``download``, and its silent default. Duck-typed: any object with these three
    methods will do (the command line passes a progress bar of its own; this module imports no UI library).

    - ``start(label, total, completed)``: a transfer begins. ``label`` is the file name, ``total`` the full size
      in bytes (None when the server does not say), ``completed`` the bytes already there (a resumed download).
    - ``update(completed)``: the bytes of the file now on disk, after every block.
    - ``finish()``: once after every ``start``, also when the transfer fails or is interrupted.

    Nothing is called when no transfer happens (a ``.part`` found complete already)."""

    def start(self, label: str, total: int | None, completed: int = 0):
        pass

    def update(self, completed: int):
        pass

    def finish(self):
        pass


@dataclass
class FetchReport:
    name: str
    folder: Path
    actions: list = field(default_factory=list)  # (file, what happened)

    @property
    def did_nothing(self):
        return all(what == "present" for _, what in self.actions)


# -- hashing -----------------------------------------------------------------------------------------------------
def file_hashes(path, algorithms=("md5", "sha256")) -> dict:
    hs = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            for h in hs.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hs.items()}


# -- downloading -------------------------------------------------------------------------------------------------
def _check_url(url: str):
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise UsageError(f"{url}: only http:// and https:// URLs are fetched")


def _net_error(url, e) -> FetchError:
    if isinstance(e, urllib.error.HTTPError):
        reason = f"HTTP {e.code} {e.reason}"
    elif isinstance(e, urllib.error.URLError):
        reason = str(e.reason)
    elif isinstance(e, http.client.IncompleteRead):
        reason = f"connection closed early ({len(e.partial)} more bytes received, {e.expected} missing)"
    else:
        reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return FetchError(f"download of {url} failed: {reason}")


def download(url: str, dest, md5: str, *, progress: Progress | None = None, timeout=TIMEOUT) -> dict:
    """Download ``url`` to ``dest`` through ``dest.part`` (resumed if present), verify ``md5``, rename into place.
    ``progress``: any object following the ``Progress`` protocol. Returns {"md5", "sha256", "size", "resumed_from"}."""
    _check_url(url)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    resumed_from = _fill_part(url, part, md5, dest.name, progress or Progress(), timeout)
    hashes = _verify_and_rename(part, dest, url, md5)
    return {**hashes, "size": dest.stat().st_size, "resumed_from": resumed_from}


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _fill_part(url, part: Path, md5, label, progress, timeout) -> int:
    """Bring ``part`` to the whole of ``url``, resuming from what it holds; returns the byte resumed from (0: the
    download started from scratch)."""
    offset = part.stat().st_size if part.is_file() else 0
    resp = _request(url, offset, timeout)
    if resp is None:  # 416: nothing left to send, so the .part is either complete already or bogus
        if file_hashes(part, ("md5",))["md5"] == md5:
            return offset
        part.unlink(missing_ok=True)
        offset = 0
        resp = _request(url, offset, timeout)  # without Range, so never None
    with resp:
        start = _response_start(resp, url, part, offset)
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        done = _stream_to_part(resp, part, start, total, url, label, progress)
    if total is not None and done < total:
        raise FetchError(f"download of {url} failed: connection closed after {done} of {total} bytes; "
                         f"the partial download {part} is kept: run the command again to resume")
    return start


def _request(url, offset: int, timeout):
    """The open response to a GET of ``url`` from byte ``offset``, or None when the server answers a Range request
    with 416 (Range Not Satisfiable)."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (the scheme is checked by the callers)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            return None
        raise _net_error(url, e) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _net_error(url, e) from None


def _response_start(resp, url, part: Path, offset: int) -> int:
    """The byte of the file the body of ``resp`` starts at: ``offset`` for a 206 answering our Range request, 0 for
    anything else (a server ignoring Range answers 200 with the whole file, so the download starts over)."""
    if not (offset and getattr(resp, "status", 200) == 206):
        return 0
    if _content_range_start(resp.headers.get("Content-Range", "")) != offset:
        # appending bytes from elsewhere in the file would corrupt the .part in a way only the MD5 would notice
        raise FetchError(f"download of {url} failed: asked for bytes from {offset}, the server sent "
                         f"{resp.headers.get('Content-Range')!r}; delete {part} to start over")
    return offset


def _stream_to_part(resp, part: Path, start: int, total, url, label, progress) -> int:
    """Write the body of ``resp`` to ``part`` (appended when ``start`` > 0, else replacing it), reporting to
    ``progress``; returns the size ``part`` then has. A failure keeps the bytes received, for the next resume."""
    progress.start(label, total, start)
    done = start
    try:
        with open(part, "ab" if start else "wb") as f:
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                f.write(block)
                done += len(block)
                progress.update(done)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename publishes it: a crash must not leave a hollow file
    except (OSError, http.client.HTTPException) as e:
        err = _net_error(url, e)
        raise FetchError(f"{err}; the partial download {part} is kept: run the command again to resume") from None
    finally:  # also on Ctrl-C: the bar stops, the .part stays for the next run
        progress.finish()
    return done


def _verify_and_rename(part: Path, dest: Path, url, md5) -> dict:
    """Move ``part`` to ``dest`` if its MD5 is ``md5``; returns its MD5 and SHA-256."""
    hashes = file_hashes(part)
    if hashes["md5"] != md5:
        part.unlink(missing_ok=True)  # never keep (or resume from) a file that failed its check
        raise ChecksumError(f"{dest}: checksum mismatch for {url}: MD5 {hashes['md5']}, the published one is {md5}; "
                            "the download was deleted (a damaged transfer or a changed file on the server)")
    os.replace(part, dest)
    fsync_dir(dest.parent)  # the rename itself must survive a crash, or a verified file could vanish
    return hashes


def _content_range_start(value: str):
    # "bytes 100-999/1000"
    try:
        unit, _, rest = value.strip().partition(" ")
        return int(rest.split("-", 1)[0]) if unit == "bytes" else None
    except ValueError:
        return None


# -- safe extraction ---------------------------------------------------------------------------------------------
def _member_path(name: str, archive) -> PurePosixPath:
    if not name or "\x00" in name:
        raise UnsafeArchiveError(f"{archive}: refused member with an empty or invalid name {name!r}")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: refused member {name!r}: absolute path")
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: refused member {name!r}: '..' in its path")
    if not parts:
        raise UnsafeArchiveError(f"{archive}: refused member {name!r}: empty path")
    return PurePosixPath(*parts)


def _within(path: Path, base: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(base))
        return True
    except ValueError:
        return False


def extract_tar(archive, dest, *, only_under: tuple[str, ...] | None = None, max_bytes=MAX_EXTRACT_BYTES) -> list:
    """Extract the regular files and directories of ``archive`` into ``dest`` (created), safely: any unsafe
    member refuses the whole archive (``UnsafeArchiveError`` naming it) and leaves ``dest``'s old contents alone.
    ``only_under``: keep only members under these top-level folders (others are skipped, still checked).
    Returns the relative paths of the files extracted."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    staging = hidden_sibling(dest, "extract", ".tmp")
    try:
        written = _extract_to_staging(archive, dest, staging, only_under, max_bytes)
        _move_into_place(staging, dest)  # only once every member is checked and written
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_to_staging(archive: Path, dest: Path, staging: Path, only_under, max_bytes) -> list:
    written, total = [], 0
    with _open_tar(archive) as tf:
        for m in _members(tf, archive):
            rel = _check_member(m, archive, staging)
            if only_under is not None and rel.parts[0] not in only_under:
                continue  # checked all the same: one hostile member refuses the whole archive
            target = _staged_target(m, rel, staging, archive, dest)
            if m.isdir():
                continue
            total += m.size
            if total > max_bytes:
                raise UnsafeArchiveError(f"{archive}: refused: it unpacks to more than {max_bytes} bytes")
            _write_member(tf, m, target, archive)
            written.append(rel.as_posix())
    return written


def _open_tar(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataCorruptError(f"{archive}: not a readable tar archive ({e})") from None


def _members(tf: tarfile.TarFile, archive):
    """The members one at a time, each checked before the next is read (not ``getmembers()``, which would read the
    whole index first); damage shows as a ``DataCorruptError``."""
    while True:
        try:
            m = tf.next()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataCorruptError(f"{archive}: damaged tar archive ({e})") from None
        if m is None:
            return
        yield m


def _check_member(m: tarfile.TarInfo, archive, staging: Path) -> PurePosixPath:
    """The member's safe relative path; ``UnsafeArchiveError`` for an absolute or ``..`` name, a link, a device,
    a FIFO or anything else ``tarfile.data_filter`` (where it exists) refuses for ``staging``."""
    rel = _member_path(m.name, archive)
    if m.issym() or m.islnk():
        raise UnsafeArchiveError(f"{archive}: refused member {m.name!r}: a "
                                 f"{'symbolic' if m.issym() else 'hard'} link (to {m.linkname!r}); "
                                 "the dataset archives hold only files and folders")
    if not (m.isreg() or m.isdir()):
        raise UnsafeArchiveError(f"{archive}: refused member {m.name!r}: not a regular file or folder "
                                 "(device, FIFO or other special file)")
    if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4/3.12: a second opinion
        try:
            tarfile.data_filter(m, str(staging))
        except tarfile.FilterError as e:
            raise UnsafeArchiveError(f"{archive}: refused member {m.name!r}: {e}") from None
    return rel


def _staged_target(m: tarfile.TarInfo, rel: PurePosixPath, staging: Path, archive, dest) -> Path:
    """Where ``m`` goes inside ``staging``, its folders created; refused if that resolves outside ``staging``."""
    target = staging.joinpath(*rel.parts)
    if not _within(target.parent if m.isreg() else target, staging):
        raise _outside(m, archive, dest)
    if m.isdir():
        target.mkdir(parents=True, exist_ok=True)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if not _within(target.parent, staging):  # again, now that the folders exist and can be resolved for real
        raise _outside(m, archive, dest)
    return target


def _outside(m: tarfile.TarInfo, archive, dest) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"{archive}: refused member {m.name!r}: it would land outside {dest}")


def _write_member(tf: tarfile.TarFile, m: tarfile.TarInfo, target: Path, archive):
    src = tf.extractfile(m)
    # O_EXCL: a second member of the same name must not overwrite the first; O_NOFOLLOW: never write through a link
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(target, flags, 0o644)
    except FileExistsError:
        raise UnsafeArchiveError(f"{archive}: refused: member {m.name!r} appears twice") from None
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataCorruptError(f"{archive}: damaged tar archive at member {m.name!r} ({e})") from None


def _move_into_place(staging: Path, dest: Path):
    """Move the top-level entries of ``staging`` into ``dest``, replacing older copies (a symbolic link of that name
    is removed, never followed)."""
    for top in sorted(p.name for p in staging.iterdir()):
        final = dest / top
        if final.is_symlink() or final.is_file():
            final.unlink()
        elif final.is_dir():
            old = hidden_sibling(dest, top, ".old")
            os.replace(final, old / top)  # out of the way in one rename, then deleted: never a half-deleted copy
            shutil.rmtree(old, ignore_errors=True)
        os.replace(staging / top, final)
    fsync_dir(dest)


# -- manifest ----------------------------------------------------------------------------------------------------
def read_manifest(folder) -> dict:
    p = Path(folder) / MANIFEST
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        return d if isinstance(d, dict) and isinstance(d.get("files"), dict) else {"files": {}}
    except (OSError, ValueError):
        return {"files": {}}


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
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BncliError(f"cannot create {folder} ({e.strerror or e})") from None
    with _lock(folder):
        manifest = read_manifest(folder)
        manifest.setdefault("dataset", name)
        try:
            if name == "cifar10":
                _fetch_cifar(folder, fmt, url0, manifest, report, progress, force, timeout)
            else:
                _fetch_idx(folder, name, url0, manifest, report, progress, force, timeout)
        finally:  # what was verified before a failure stays recorded
            write_manifest(folder, manifest)
    return report


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
    manifest = read_manifest(folder)
    if name == "cifar10":
        for fmt, sub in (("bin", cifar.BIN_DIR), ("python", cifar.PY_DIR)):
            if (folder / sub).is_dir():
                _, expected = _cifar_expected(fmt)
                present = [rel for rel in expected if (folder / rel).is_file()]
                rows.append(_status_row(name, folder / sub, fmt, folder, present, len(present) == len(expected),
                                        manifest, check, {}))
    else:
        present, complete = [], True
        for stem in sources.IDX_FILES.values():
            here = [f for f in (stem, f"{stem}.gz") if (folder / f).is_file()]
            present += here
            complete &= bool(here)
        if present:
            rows.append(_status_row(name, folder, "idx", folder, present, complete, manifest, check,
                                    sources.MD5[name]))
    for p in sorted(folder.glob("*.part")):
        rows.append({"dataset": name, "location": str(p), "format": "partial download", "files": 1,
                     "complete": False, "bytes": p.stat().st_size, "checksums": "incomplete (fetch resumes it)"})
    return rows


def _status_row(name, location, fmt, folder, present, complete, manifest, check, published):
    checks = []
    if check:
        for rel in present:
            p = folder / rel
            want_md5 = published.get(rel)
            entry = manifest["files"].get(rel)
            if want_md5:
                checks.append("ok" if file_hashes(p, ("md5",))["md5"] == want_md5 else f"MISMATCH {rel}")
            elif entry and entry.get("sha256"):
                checks.append("ok" if file_hashes(p, ("sha256",))["sha256"] == entry["sha256"] else f"MISMATCH {rel}")
            else:
                checks.append("unverified")
    bad = [c for c in checks if c.startswith("MISMATCH")]
    if not check:
        summary = "not checked"
    elif bad:
        summary = f"MISMATCH {len(bad)}/{len(checks)}: " + ", ".join(b.removeprefix("MISMATCH ") for b in bad)
    elif checks and all(c == "ok" for c in checks):
        summary = f"ok ({len(checks)} files)"
    elif "ok" in checks:
        summary = f"ok {checks.count('ok')}, unverified {checks.count('unverified')}"
    else:
        summary = "unverified (no published checksum or manifest entry)"
    return {"dataset": name, "location": str(location), "format": fmt, "files": len(present), "complete": complete,
            "bytes": sum((folder / rel).stat().st_size for rel in present), "checksums": summary}
