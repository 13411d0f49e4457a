"""Safe extraction of a tar archive: member by member into a hidden staging folder beside the target, then renamed
into place. Refused: absolute names, ``..`` components, links of any kind, devices, FIFOs, duplicates, more than
``max_bytes`` — the whole archive is refused and nothing is written outside the staging folder (Python's
``tarfile.data_filter`` is applied as well where it exists)."""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from ..atomic import fsync_dir, hidden_sibling
from .datasets import DataCorruptError
from .download import CHUNK

MAX_EXTRACT_BYTES = 2 << 30  # the CIFAR-10 archives extract to ~180 MB


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
