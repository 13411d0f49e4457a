"""Downloads: the official file to ``<file>.part``, resumed with an HTTP ``Range`` request when a ``.part`` is left
(a server that ignores it and answers 200 makes the download start over), renamed into place only once the MD5
matches the published one; a wrong checksum deletes the ``.part``. Progress goes to any object following the small
protocol of ``Progress``; this module imports no UI library."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..atomic import fsync_dir
from ..errors import BncliError, UsageError
from .datasets import DataCorruptError

CHUNK = 1 << 20
TIMEOUT = 60
USER_AGENT = "bncli-data-fetch (+https://github.com/; urllib)"


class FetchError(BncliError):
    """A download failed (network, HTTP status): exit code 1; a partial download is kept for resuming."""


class ChecksumError(DataCorruptError):
    """A downloaded file does not match its published checksum."""


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


class Unreachable(FetchError):
    """The server could not be reached at all (no network, unknown host, connection refused or timed out): nothing
    was received, so the caller can say how to do without the download."""


def _net_error(url, e) -> FetchError:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        return Unreachable(f"download of {url} failed: {e.reason}")
    if isinstance(e, (ConnectionRefusedError, TimeoutError)):
        return Unreachable(f"download of {url} failed: {type(e).__name__}: {e}")
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
