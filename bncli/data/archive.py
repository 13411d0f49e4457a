"""Safe extraction of a tar archive: member by member into a hidden staging folder beside the target, then renamed
into place. Refused: absolute names, ``..`` components, links of any kind, devices, FIFOs, duplicates, a file and a
folder of the same name (or a member inside a file), more than ``max_bytes`` — the whole archive is refused and
nothing is written outside the staging folder (Python's ``tarfile.data_filter`` is applied as well where it exists).

Bounded whatever the headers say: the archive is decompressed here (gzip, bzip2, xz or none, from its first bytes)
and handed to ``tarfile`` through a reader that refuses any single header read over ``MAX_HEADER_READ`` (a GNU
long name or pax header announcing gigabytes would otherwise be read in one allocation), more than
``MAX_EXT_HEADER_TOTAL`` of such headers in all (``tarfile``'s pax parser is quadratic in the worst case), and
any position past ``max_bytes`` + ``STREAM_SLACK`` (skipped members are not decompressed forever). At most
``MAX_MEMBERS`` members, names of at most ``MAX_NAME`` characters and ``MAX_DEPTH`` levels."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from ..atomic import fsync_dir, hidden_sibling
from .datasets import DataCorruptError
from .download import CHUNK

MAX_EXTRACT_BYTES = 2 << 30  # the CIFAR-10 archives extract to ~180 MB
STREAM_SLACK = 256 << 20  # tar headers and skipped members, on top of max_bytes
MAX_MEMBERS = 1_000  # the CIFAR-10 archives hold 8 or 9
MAX_NAME = 4096  # characters in a member's name (PATH_MAX)
MAX_DEPTH = 64  # folders in a member's path
MAX_PART = 255  # bytes in one file or folder name (NAME_MAX)
MAX_HEADER_READ = 16 << 10  # one GNU long name or pax extended header (a path of 4096 characters fits)
MAX_EXT_HEADER_TOTAL = 256 << 10  # all such headers together
_DAMAGE = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError)  # what damaged data can raise


class UnsafeArchiveError(DataCorruptError):
    """An archive member would escape the target folder or is not a plain file or directory."""


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
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_PART for p in parts):
        raise UnsafeArchiveError(f"{archive}: refused member {name[:60]!r}...: a name part longer than {MAX_PART} "
                                 "bytes (no file system stores it)")
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
    written, total, kinds = [], 0, {}
    with _open_tar(archive, max_bytes) as (tf, stream):
        for m in _members(tf, archive):
            rel = _check_member(m, archive, staging)
            _check_structure(m, rel, kinds, archive)
            if only_under is not None and rel.parts[0] not in only_under:
                continue  # checked all the same: one hostile member refuses the whole archive
            if m.isreg():
                total += m.size
                if total > max_bytes:  # before anything of it is read or written
                    raise UnsafeArchiveError(f"{archive}: refused: it unpacks to more than {max_bytes} bytes "
                                             f"(member {m.name!r} announces {m.size})")
            target = _staged_target(m, rel, staging, archive, dest)
            if m.isdir():
                continue
            with stream.data():
                _write_member(tf, m, target, archive)
            written.append(rel.as_posix())
        _drain(stream, archive)
    return written


def _drain(stream: _BoundedStream, archive):
    """Read the stream to its end (the tar padding after the last member, usually a few KB), so that the
    compressor's own check (gzip's CRC-32, ...) is verified: a damaged byte in the data of a member is otherwise
    only noticed by a checksum of the whole archive."""
    try:
        with stream.data():
            while stream.read(CHUNK):
                pass
    except _DAMAGE as e:
        raise DataCorruptError(f"{archive}: damaged archive ({e})") from None


def _check_structure(m: tarfile.TarInfo, rel: PurePosixPath, kinds: dict, archive):
    """Refuse a member that conflicts with an earlier one: the same file twice, a file and a folder of the same
    name, or a member inside something the archive holds as a file. ``kinds``: path -> "file" or "folder" so far
    (the folders a member implies included)."""
    if len(rel.parts) > MAX_DEPTH:
        raise UnsafeArchiveError(f"{archive}: refused member {m.name[:60]!r}...: {len(rel.parts)} levels of "
                                 f"folders (at most {MAX_DEPTH})")
    for parent in reversed(rel.parents[:-1]):
        if kinds.get(parent) == "file":
            raise UnsafeArchiveError(f"{archive}: refused member {m.name!r}: {parent.as_posix()!r} is a file in "
                                     "this archive, not a folder")
        kinds[parent] = "folder"
    kind, seen = ("folder" if m.isdir() else "file"), kinds.get(rel)
    if seen == "file" and kind == "file":
        raise UnsafeArchiveError(f"{archive}: refused: member {m.name!r} appears twice")
    if seen is not None and seen != kind:
        raise UnsafeArchiveError(f"{archive}: refused member {m.name!r}: the archive holds {rel.as_posix()!r} both "
                                 "as a file and as a folder")
    kinds[rel] = kind


class _BoundedStream:
    """The decompressed archive as ``tarfile`` reads it, with every read and seek bounded (see the module
    docstring). Header reads (outside ``data()``) are capped at ``MAX_HEADER_READ``; member data is read in
    chunks of ``CHUNK`` by ``_write_member``."""

    def __init__(self, f, archive, limit: int):
        self.f, self.archive, self.limit = f, archive, limit
        self.cap, self.ext_total = MAX_HEADER_READ, 0
        self.name = str(archive)

    @contextmanager
    def data(self):
        self.cap = 2 * CHUNK
        try:
            yield
        finally:
            self.cap = MAX_HEADER_READ

    def read(self, n=-1):
        if n is None or n < 0 or n > self.cap:
            what = "everything" if n is None or n < 0 else f"{n} bytes"
            raise UnsafeArchiveError(f"{self.archive}: refused: a member header asks to read {what} at once (at most "
                                     f"{self.cap}; a damaged or hostile GNU long name or pax header)")
        if self.cap == MAX_HEADER_READ and n > tarfile.BLOCKSIZE:
            self.ext_total += n
            if self.ext_total > MAX_EXT_HEADER_TOTAL:
                raise UnsafeArchiveError(f"{self.archive}: refused: more than {MAX_EXT_HEADER_TOTAL} bytes of GNU "
                                         "long names and pax headers")
        self._check_position(self.f.tell() + n)
        return self.f.read(n)

    def seek(self, pos, whence=os.SEEK_SET):
        if whence == os.SEEK_SET:
            self._check_position(pos)
        elif whence == os.SEEK_CUR:
            self._check_position(self.f.tell() + pos)
        else:
            raise OSError("seek from the end of a compressed archive")
        return self.f.seek(pos, whence)

    def tell(self):
        return self.f.tell()

    def _check_position(self, pos):
        if pos > self.limit + tarfile.BLOCKSIZE:
            raise UnsafeArchiveError(f"{self.archive}: refused: it unpacks to more than {self.limit} bytes "
                                     "(members, skipped ones included, and their headers)")


def _decompressed(archive: Path):
    """The archive file, decompressed as its first bytes say (gzip, bzip2, xz or a plain tar)."""
    raw = open(archive, "rb")  # noqa: SIM115 - closed by the caller through the returned object
    try:
        magic = raw.read(6)
        raw.seek(0)
        if magic[:2] == b"\x1f\x8b":
            return gzip.GzipFile(fileobj=raw, mode="rb"), raw
        if magic[:3] == b"BZh":
            return bz2.BZ2File(raw, "rb"), raw
        if magic == b"\xfd7zXZ\x00":
            return lzma.LZMAFile(raw, "rb"), raw
        return raw, raw
    except BaseException:
        raw.close()
        raise


@contextmanager
def _open_tar(archive: Path, max_bytes=MAX_EXTRACT_BYTES):
    """(tarfile.TarFile, its bounded stream), reading ``archive`` through ``_BoundedStream``."""
    try:
        if not stat.S_ISREG(os.stat(archive).st_mode):
            raise DataCorruptError(f"{archive}: not a readable tar archive (not a regular file)")
        f, raw = _decompressed(archive)
    except OSError as e:
        raise DataCorruptError(f"{archive}: not a readable tar archive ({e.strerror or e})") from None
    stream = _BoundedStream(f, archive, max_bytes + STREAM_SLACK)
    try:
        try:
            tf = tarfile.open(fileobj=stream, mode="r:")  # noqa: SIM115 - closed just below
        except _DAMAGE as e:
            raise DataCorruptError(f"{archive}: not a readable tar archive ({e})") from None
        with tf:
            yield tf, stream
    finally:
        f.close()
        raw.close()


def _members(tf: tarfile.TarFile, archive):
    """The members one at a time, each checked before the next is read (not ``getmembers()``, which would read the
    whole index first); damage shows as a ``DataCorruptError``."""
    count = 0
    while True:
        try:
            m = tf.next()
        except _DAMAGE as e:
            raise DataCorruptError(f"{archive}: damaged tar archive ({e})") from None
        if m is None:
            return
        count += 1
        if count > MAX_MEMBERS:
            raise UnsafeArchiveError(f"{archive}: refused: more than {MAX_MEMBERS} members (a dataset archive holds "
                                     "a few)")
        if len(m.name) > MAX_NAME:
            raise UnsafeArchiveError(f"{archive}: refused member {m.name[:60]!r}...: a name of {len(m.name)} "
                                     f"characters (at most {MAX_NAME})")
        pax = sum(len(k) + len(v) for k, v in m.pax_headers.items())
        if pax > MAX_HEADER_READ:
            raise UnsafeArchiveError(f"{archive}: refused member {m.name!r}: {pax} bytes of pax headers (at most "
                                     f"{MAX_HEADER_READ})")
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
    try:
        if m.isdir():
            target.mkdir(parents=True, exist_ok=True)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # _check_structure refuses these first; a second guard
        raise UnsafeArchiveError(f"{archive}: refused member {m.name!r}: it conflicts with an earlier member (a "
                                 "file and a folder of the same name)") from None
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
    except (FileExistsError, IsADirectoryError):  # _check_structure refuses these first; a second guard
        raise UnsafeArchiveError(f"{archive}: refused: member {m.name!r} appears twice (or as a file and a "
                                 "folder)") from None
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
    except _DAMAGE as e:
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
