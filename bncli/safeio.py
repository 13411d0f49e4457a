"""Bounded reading of files that someone else may have put there: a results folder, a cache entry, a run folder.

Whatever the path claims to be, a read ends in bounded time and memory: only regular files are read (a FIFO would
block forever, /dev/zero never ends), never more than ``limit`` bytes (a 2 GB sparse file is refused from its size,
before a byte is read), JSON no deeper than ``MAX_DEPTH``. Every refusal is an ``Unreadable`` (a ValueError, so the
callers that already turn a parse error into "damaged file" do the same with these) whose text says why, or the
OSError of the open itself (FileNotFoundError, IsADirectoryError, ...), which callers already handle.
"""

from __future__ import annotations

import json
import os
import stat

MIB = 1 << 20
LIMIT = 64 * MIB  # the largest file bncli writes into a results folder is a few MB (a report's figures.json)
MAX_DEPTH = 64  # bncli's own JSON is at most 6 levels deep


class Unreadable(ValueError):
    """A file that is not read: not a regular file, too large, a link where none is allowed, too deeply nested."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_bytes(path, limit: int = LIMIT, *, follow: bool = True) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them. ``follow=False`` refuses a symbolic link
    (a run folder's files are never links: a link could point at another run's numbers)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must not wait for a writer
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if not follow and os.path.islink(path):
            raise Unreadable("a symbolic link, where bncli writes a file") from None
        raise e from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Unreadable(f"{_kind(st.st_mode)}, not a file")
        if st.st_size > limit:
            raise Unreadable(f"{st.st_size:,} bytes, more than the {limit:,} such a file can hold")
        chunks, left = [], limit + 1
        while left > 0:  # the size may grow after fstat: never read past the limit anyway
            chunk = os.read(fd, min(left, MIB))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise Unreadable(f"more than the {limit:,} bytes such a file can hold")
        return data
    finally:
        os.close(fd)


def read_text(path, limit: int = LIMIT, *, follow: bool = True) -> str:
    """UTF-8 text, bounded as ``read_bytes`` (a UnicodeDecodeError is a ValueError too)."""
    return read_bytes(path, limit, follow=follow).decode("utf-8")


def _depth(x, limit: int) -> int:
    """Nesting depth of parsed JSON, walked without recursion (a deep document must not blow the stack twice)."""
    deepest, stack = 0, [(x, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            if d > limit:
                return d
            deepest = max(deepest, d)
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def loads(text: str | bytes, max_depth: int = MAX_DEPTH):
    """``json.loads`` that refuses documents nested deeper than ``max_depth`` (and never raises RecursionError)."""
    try:
        doc = json.loads(text)
    except RecursionError:
        raise Unreadable("JSON nested too deeply") from None
    if _depth(doc, max_depth) > max_depth:
        raise Unreadable(f"JSON nested more than {max_depth} levels deep")
    return doc


def read_json(path, limit: int = LIMIT, *, follow: bool = True, max_depth: int = MAX_DEPTH):
    """A JSON document from a bounded read (any JSON type: callers check what they expect)."""
    return loads(read_bytes(path, limit, follow=follow), max_depth)
