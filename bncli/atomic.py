"""Atomic writes: a reader (or a crash) sees the old file or the new file, never half of one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def fsync_dir(path: Path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_UMASK = os.umask(0)
os.umask(_UMASK)


# Told of every file before it is written (called with its path and bytes; may refuse it by raising): the results
# folder a command holds records what bncli wrote there (runs/owner.py).
BEFORE_WRITE: list = []


def write_bytes(path, data: bytes):
    path = Path(path)
    for hook in BEFORE_WRITE:
        hook(path, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would make results unreadable to the rest of a team
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text(path, text: str):
    write_bytes(path, text.encode("utf-8"))


def hidden_sibling(parent: Path, name: str, suffix: str) -> Path:
    """A new hidden directory ``.<name>.<pid>.<random><suffix>`` in ``parent``. The pid in the name lets
    clean_stale() tell a dead writer's leftovers from a live writer's work."""
    return Path(tempfile.mkdtemp(prefix=f".{name}.{os.getpid()}.", suffix=suffix, dir=parent))


def write_dir(path, files: dict[str, bytes | str]):
    """Create directory ``path`` holding ``files`` in one step: written into a hidden sibling, then renamed.
    An existing directory of that name is replaced whole (also when another process writes it at the same time:
    each attempt leaves either its directory or the other's, both complete)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = hidden_sibling(path.parent, path.name, ".tmp")
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp's 0700, likewise
        for name, data in files.items():
            with open(tmp / name, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
        fsync_dir(tmp)
        for attempt in range(5):
            old = None
            if path.exists():
                old = hidden_sibling(path.parent, path.name, ".old")
                try:
                    os.replace(path, old / path.name)
                except FileNotFoundError:  # another writer moved it first
                    pass
            try:
                os.replace(tmp, path)
            except OSError:  # another writer put its directory there in between: go round again
                if old is not None and (old / path.name).exists() and not path.exists():
                    os.replace(old / path.name, path)  # never leave the place empty
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
                if attempt == 4:
                    raise
                continue
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            break
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clean_stale(directory) -> int:
    """Remove hidden .tmp/.old leftovers of writers that no longer run (a kill -9). Returns how many."""
    directory = Path(directory)
    removed = 0
    if not directory.is_dir():
        return 0
    for p in directory.iterdir():
        if not (p.name.startswith(".") and p.name.endswith((".tmp", ".old"))):
            continue
        parts = p.name.split(".")
        pid = next((int(x) for x in parts[2:-1] if x.isdigit()), None)
        if pid is not None and _alive(pid):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) answers kill(pid, 0) but writes nothing any more
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def check_writable(directory) -> None:
    """Raise OSError unless files can be created in ``directory`` (created if missing; a probe file is removed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".bncli-probe.", dir=directory)
    os.close(fd)
    os.unlink(probe)
