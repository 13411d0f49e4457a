"""One writer per results folder, and bncli writes only where it owns.

A command that writes a results folder (train, sweep, lrfind, report, and plot for its figures) *claims* it for its
whole duration (``claim``):

- **One writer.** An exclusive ``flock`` on the hidden ``.bncli.lock`` in the folder, holding the claimant's pid,
  start time and command line. A second command on the same folder is refused at once (exit 1) with one line naming
  the first, rather than made to wait: a report holds its folder for hours, and a command that waits unseen looks
  hung (bncli promises bounded time whatever the input). The kernel drops the lock when its process dies (kill -9
  too), so no lock is ever stale; the file is removed when the command ends. The ``runs/`` cache inside is not
  locked: run folders are written whole and shared by design.
- **Still the same folder.** Every file bncli writes into the folder, and the tables above all (``publishing``),
  first checks that the folder and its lock file are the ones locked (same inode): a folder deleted or replaced
  meanwhile is an error (exit 1), never tables written into whatever is at that path now.
- **A manifest.** The hidden ``.bncli.json`` records the kind of command that writes the folder (train, sweep,
  lrfind, report, or plot for a folder of figures only) and every file bncli wrote there with its sha256, recorded
  as it is written: ``atomic.write_bytes`` (which every table, JSON file and figure goes through) tells this module
  of each file before renaming it into place. The file's previous checksum is kept beside the new one, so a command
  interrupted between the two steps leaves a file that still verifies.
- **Only where it owns.** Unless ``--force``, a command refuses (exit 2, one line listing a few such files) a folder
  that holds files bncli did not write (not in the manifest, or edited since: another checksum) or the results of
  another kind of command. ``runs/``, ``failed/``, hidden names (bncli's temp files) and subfolders with a manifest
  of their own are bncli's. A published folder without a manifest is therefore refused too: no command replaces a
  published result unless told to. ``bncli plot`` into the results folder it draws adds figures to it: it checks
  only the figures it may replace. An ``--out`` of empty text is refused unless --force (then it is the current
  folder). A folder inside the installed package (the shipped experiments) is refused even with --force: results
  written there would become experiments of every user of this installation.
- **--force** means the user takes responsibility for the folder: a file bncli writes replaces the file of that name
  whoever wrote it (other files are left alone), and the results of another kind of command are removed first — the
  files the manifest lists, and the file a folder's kind is recognised by (experiment.json, sweep.json,
  lr_find.json, report.json) — so that `bncli plot` and `bncli.load` never read stale results of another kind.
  Without --force, bncli never replaces a file it did not write.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import signal
import stat
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from .. import atomic, safeio
from ..errors import BncliError, UsageError
from .verify import sha256

LOCK = ".bncli.lock"
MANIFEST = ".bncli.json"
KINDS = ("train", "sweep", "lrfind", "report", "plot")
CACHE = ("runs", "failed")  # bncli's run cache: shared by every command that writes the folder
MARKERS = {"train": "experiment.json", "sweep": "sweep.json", "lrfind": "lr_find.json", "report": "report.json"}
MANIFEST_LIMIT = 16 * safeio.MIB
FILE_LIMIT = safeio.LIMIT  # a larger file was not written by bncli (its largest is a report's few MB)
MOST_ENTRIES = 20_000  # entries looked at in a folder before it counts as holding more than bncli writes
MOST_HASHED = 512 * safeio.MIB  # bytes checksummed per claim; bncli's largest folder (a report) holds ~10 MB
SHOWN = 3  # foreign files named in a message

_HELD: dict[str, "Owner"] = {}  # absolute path -> the folder this process holds there
_GUARD = threading.Lock()


def _ident(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _clip(text, n=200) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return text if len(text) <= n else text[:n - 1] + "…"


def out_path(text, force: bool = False) -> Path | None:
    """The folder an ``--out`` text names (None when not given). Empty text is refused unless ``force`` (then the
    current folder): an unset shell variable must not send results into whatever folder the command runs in."""
    if text is None:
        return None
    if not str(text).strip():
        if not force:
            raise UsageError("--out '': empty; expected a folder (--out . writes into the current folder; --force "
                             "accepts the empty text as the current folder)")
        return Path(".")
    return Path(text)


# -- the manifest ----------------------------------------------------------------------------------------------------
def _valid_rel(rel) -> bool:
    """A path bncli may have written inside the folder: relative, no '..', no hidden part, not in the run cache."""
    if not isinstance(rel, str) or not rel or len(rel) > 4096 or "\x00" in rel or "\\" in rel:
        return False
    parts = rel.split("/")
    return all(p and not p.startswith(".") for p in parts) and parts[0] not in CACHE


def _valid_shas(v) -> bool:
    return isinstance(v, list) and 0 < len(v) <= 4 and all(
        isinstance(s, str) and len(s) == 64 and all(c in "0123456789abcdef" for c in s) for s in v)


def read_manifest(folder) -> tuple[dict, str | None]:
    """({"kind": ..., "files": {relative path: [sha256, ...]}}, None), or an empty manifest and why the file there
    is not one (None when there is no file at all)."""
    empty = {"kind": None, "files": {}}
    try:
        doc = safeio.read_json(Path(folder) / MANIFEST, MANIFEST_LIMIT, follow=False, max_depth=4)
    except FileNotFoundError:
        return empty, None
    except (OSError, ValueError) as e:  # safeio.Unreadable, JSON errors, EISDIR, ...
        return empty, _clip(str(e) or type(e).__name__, 80)
    if not (isinstance(doc, dict) and doc.get("kind") in (None, *KINDS) and isinstance(doc.get("files"), dict)):
        return empty, "not a bncli manifest"
    files = doc["files"]
    if not all(_valid_rel(k) and _valid_shas(v) for k, v in files.items()):
        return empty, "a listed file is not a plain path inside the folder with its checksums"
    return {"kind": doc["kind"], "files": {k: list(v) for k, v in files.items()}}, None


# -- the lock --------------------------------------------------------------------------------------------------------
def _command(kind: str) -> str:
    argv = sys.argv or [""]
    prog = Path(argv[0] or "python")
    if prog.name == "bncli" or (prog.name == "__main__.py" and prog.parent.name == "bncli"):
        return "bncli " + shlex.join(argv[1:])
    return f"bncli.{kind}() in {prog.name}"


def _holder(fd: int) -> str:
    """Who holds the lock, from what it wrote into the lock file (it may be a moment from writing it)."""
    raw = b""
    for _ in range(25):
        raw = os.pread(fd, 8192, 0)
        if raw:
            break
        time.sleep(0.02)
    try:
        info = safeio.loads(raw, 3)
        pid, started, command = info["pid"], info["started"], info["command"]
        when = datetime.fromisoformat(started)
    except (ValueError, KeyError, TypeError):
        return "pid unknown"
    shown = when.strftime("%H:%M:%S" if when.date() == datetime.now().date() else "%Y-%m-%d %H:%M:%S")
    return f"pid {_clip(pid, 12)}, started {shown}: {_clip(command, 160)}"


def _lock(root: str, shown: str, kind: str) -> tuple[int, tuple]:
    path = os.path.join(root, LOCK)
    for _ in range(20):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o666)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise UsageError(f"{shown}/{LOCK}: a symbolic link where bncli keeps its lock file; remove it") \
                    from None
            if os.path.lexists(path):
                raise UsageError(f"{shown}/{LOCK}: cannot open bncli's lock file ({e.strerror or e}); remove it") \
                    from None
            raise UsageError(f"--out {shown}: cannot write there ({e.strerror or e})") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UsageError(f"{shown}/{LOCK}: not a regular file (bncli keeps its lock file there); remove it")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BncliError(f"{shown} is in use by another bncli ({_holder(fd)}); wait for it to finish or "
                                 "choose another --out") from None
            except OSError as e:  # a file system without locks (some network mounts)
                raise BncliError(f"{shown}: cannot lock {LOCK} ({e.strerror or e}); choose an --out on a local "
                                 "disk") from None
            try:
                now = os.lstat(path)
            except FileNotFoundError:
                now = None
            if now is not None and _ident(now) == _ident(st):
                info = {"pid": os.getpid(), "started": datetime.now().isoformat(timespec="seconds"),
                        "command": _command(kind)}
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info).encode(), 0)
                return fd, _ident(st)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the previous holder removed the file after we opened it: lock the one there now
    raise BncliError(f"{shown}: could not take its lock ({LOCK} kept changing); run the command again")


def _unlock(root: str, fd: int, lock_id: tuple):
    path = os.path.join(root, LOCK)
    try:
        if _ident(os.lstat(path)) == lock_id:
            os.unlink(path)  # the next claimant creates its own; one that opened this one sees it gone and retries
    except OSError:
        pass
    os.close(fd)


# -- the held folder -------------------------------------------------------------------------------------------------
class Owner:
    """A results folder this process holds: its lock, its identity and its manifest."""

    def __init__(self, root: str, shown: str, kind: str, force: bool, fd: int, lock_id: tuple, folder_id: tuple):
        self.root, self.shown, self.kind, self.force = root, shown, kind, force
        self.fd, self.lock_id, self.folder_id = fd, lock_id, folder_id
        self.pid = os.getpid()
        self.manifest, self.damaged = read_manifest(root)
        self.hashed = 0

    # identity
    def verify(self):
        """A BncliError unless the folder and its lock file are still the ones locked."""
        try:
            same = (_ident(os.stat(self.root)) == self.folder_id
                    and _ident(os.lstat(os.path.join(self.root, LOCK))) == self.lock_id)
        except OSError:
            same = False
        if not same:
            raise BncliError(f"{self.shown}: deleted or replaced while this bncli {self.kind} ran; nothing more is "
                             "written there (runs that finished are kept where they were written); run the command "
                             "again")

    # ownership
    def _why_foreign(self, rel: str, path: str) -> str | None:
        """None when the file at ``rel`` is one bncli wrote (its checksum is listed), else why not ("" when it is
        not listed at all)."""
        shas = self.manifest["files"].get(rel)
        if shas is None:
            return ""
        if self.hashed > MOST_HASHED:
            return "not checked: more data than bncli writes"
        try:
            data = safeio.read_bytes(path, FILE_LIMIT, follow=False)
        except (OSError, ValueError) as e:
            return _clip(getattr(e, "strerror", None) or e, 60)
        self.hashed += len(data)
        sha = sha256(data)
        if sha not in shas:
            return "edited since bncli wrote it"
        self.manifest["files"][rel] = [sha]
        return None

    def foreign(self, suffix: str | None = None) -> tuple[list[str], bool]:
        """Up to SHOWN files of the folder bncli did not write (only names ending ``.suffix`` if given), and whether
        there are more. Bounded: at most MOST_ENTRIES entries looked at, MOST_HASHED bytes checksummed."""
        found, seen, stack = [], 0, [("", self.root)]
        while stack:
            prefix, folder = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = []
                    for e in it:
                        entries.append(e)
                        if seen + len(entries) > MOST_ENTRIES:
                            return found or ["(more files than bncli writes)"], True
            except OSError as e:
                found.append(f"{prefix or './'}, {_clip(e.strerror or e, 60)}")
                continue
            seen += len(entries)
            for e in sorted(entries, key=lambda e: e.name):
                if e.name.startswith(".") or (not prefix and e.name in CACHE):
                    continue
                rel = prefix + e.name
                try:
                    is_dir = e.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                if is_dir:
                    if not os.path.lexists(os.path.join(e.path, MANIFEST)):  # a folder of bncli's own otherwise
                        stack.append((rel + "/", e.path))
                    continue
                if suffix is not None and not e.name.endswith("." + suffix):
                    continue
                why = self._why_foreign(rel, e.path)
                if why is not None:
                    found.append(f"{rel}, {why}" if why else rel)
                    if len(found) > SHOWN:
                        return found[:SHOWN], True
        return found, False

    def _no_manifest(self) -> str:
        """Why no file of the folder is listed as bncli's, if that is why, for a refusal."""
        if self.damaged:
            return f"; its manifest {MANIFEST} is damaged: {self.damaged}"
        results = any(os.path.lexists(os.path.join(self.root, n)) for n in MARKERS.values())
        if results and not os.path.lexists(os.path.join(self.root, MANIFEST)):
            return f"; bncli results without a manifest {MANIFEST}: published, or written by an older bncli"
        return ""

    def _listed_present(self) -> list[str]:
        return [rel for rel in sorted(self.manifest["files"]) if os.path.lexists(os.path.join(self.root, rel))]

    def check(self, only: str | None):
        """Refuse the folder (UsageError) unless it is bncli's for this command; with --force, clear the results of
        another kind. ``only``: the suffix of the only files this command writes into a folder of another kind
        (plot's figures), which alone are checked."""
        m = self.manifest
        if os.path.isdir(os.path.join(self.root, MANIFEST)):  # the one name bncli must be able to write
            raise UsageError(f"{self.shown}/{MANIFEST}: a folder where bncli keeps its manifest; remove it")
        if only is not None:
            m["kind"] = m["kind"] or self.kind
            if not self.force:
                found, more = self.foreign(only)
                if found:
                    raise UsageError(f"{self.shown}: holds figures bncli did not write ({_few(found, more)}"
                                     f"{self._no_manifest()}); bncli plot would replace them: pass --out to draw "
                                     "elsewhere, or --force to replace them")
            return
        other = m["kind"] if m["kind"] not in (None, self.kind) else None
        theirs = self._listed_present() if other else []
        if not self.force:
            if theirs:
                listed = _few(theirs[:SHOWN], len(theirs) > SHOWN, ", ")
                raise UsageError(f"--out {self.shown}: holds the results of bncli {other} ({listed}); bncli "
                                 f"{self.kind} would mix its results with them: choose another --out, or pass --force "
                                 "to remove them first")
            found, more = self.foreign()
            if found:
                raise UsageError(f"--out {self.shown}: holds files bncli did not write ({_few(found, more)}"
                                 f"{self._no_manifest()}); "
                                 "bncli writes only into a new folder or one it wrote: choose another --out, or "
                                 "pass --force to write there anyway")
            if other:  # the other kind's files are gone already: its entries are of nothing
                m["files"] = {}
        elif other or self.damaged or any(os.path.lexists(os.path.join(self.root, n))
                                          for k, n in MARKERS.items() if k != self.kind):
            for rel in theirs + [n for k, n in MARKERS.items() if k != self.kind]:
                self._remove(rel)
            if other:
                m["files"] = {}
            m["kind"] = self.kind
            self.save()
        m["kind"] = self.kind

    def _remove(self, rel: str):
        """Remove the file ``rel`` of the folder, never anything outside it (every parent a real folder)."""
        path = self.root
        for part in rel.split("/")[:-1]:
            path = os.path.join(path, part)
            try:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    return
            except OSError:
                return
        path = os.path.join(path, rel.rsplit("/", 1)[-1])
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                os.unlink(path)
        except FileNotFoundError:
            pass
        self.manifest["files"].pop(rel, None)

    # recording
    def record(self, path: Path, data: bytes):
        """Called by atomic.write_bytes before ``path`` is renamed into place: refuse to replace a file bncli did not
        write (unless --force), then list the new file's checksum (beside the old one, until the rename is done)."""
        rel = os.path.relpath(os.path.abspath(path), self.root).replace(os.sep, "/")
        parts = rel.split("/")
        if any(p.startswith(".") for p in parts) or parts[0] in CACHE:
            return  # bncli's own: the manifest itself, temp files, the run cache
        self.verify()
        keep = []
        if os.path.isdir(path) and not os.path.islink(path):
            raise UsageError(f"{_clip(path, 300)}: a folder where bncli writes a file; move it away (finished runs "
                             "are kept) and run the command again")
        if os.path.lexists(path):
            why = self._why_foreign(rel, str(path))
            if why is not None and not self.force:
                reason = why or f"not in the folder's manifest {MANIFEST}"
                raise UsageError(f"{_clip(path, 300)}: exists and bncli did not write it ({reason}); bncli does not "
                                 "replace it (pass --force to)")
            keep = self.manifest["files"].get(rel, []) if why is None else []
        self.manifest["files"][rel] = list(dict.fromkeys([*keep, sha256(data)]))
        self.save()

    def save(self):
        atomic.write_bytes(Path(self.root) / MANIFEST, json.dumps(
            {"bncli": "results folder manifest", "kind": self.manifest["kind"], "files": self.manifest["files"]},
            indent=1, sort_keys=True).encode())


def _few(found: list[str], more: bool, sep="; ") -> str:
    return sep.join(found) + (" and more" if more else "")


def _check_place(out, shown: str):
    """Never inside the installed package: `bncli examples` would list results written there as experiments."""
    from ..examples import SHIPPED

    try:
        where = Path(out).resolve()
        places = [(SHIPPED.resolve(), "the experiments shipped with bncli"),
                  (Path(__file__).resolve().parents[1], "the installed bncli package")]
    except (OSError, RuntimeError):  # a name the file system cannot look up: the mkdir says why
        return
    for place, what in places:
        if where == place or place in where.parents:
            raise UsageError(f"--out {shown}: inside {what} ({place}); bncli never writes results there, not even "
                             "with --force: choose another --out")


def _make(out, shown: str):
    try:
        os.makedirs(out, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"--out {shown}: not a directory (expected a folder for bncli's results)") from None
    except OSError as e:
        raise UsageError(f"--out {shown}: cannot write there ({e.strerror or e})") from None


@contextmanager
def claim(out, kind: str, *, force: bool = False, only: str | None = None):
    """Hold the results folder ``out`` for a command of ``kind`` (see the module docstring): created if missing,
    locked, checked, its manifest kept up to date as files are written. A claim of a folder this process already
    holds is the same claim (the CLI claims before it prints the plan, the library function it calls claims again).
    ``only``: plot's figures suffix when it draws into the folder it reads (see Owner.check)."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {KINDS}")
    root = os.path.abspath(out)
    with _GUARD:
        held = _HELD.get(root)
    if held is not None and held.pid == os.getpid():
        yield held
        return
    shown = _clip(out, 300)
    _check_place(out, shown)
    _make(out, shown)
    fd, lock_id = _lock(root, shown, kind)
    try:
        owner = Owner(root, shown, kind, force, fd, lock_id, _ident(os.stat(root)))
        owner.check(only)
        with _GUARD:
            _HELD[root] = owner
        try:
            yield owner
        finally:
            with _GUARD:
                _HELD.pop(root, None)
    finally:
        _unlock(root, fd, lock_id)


def holder_of(path) -> Owner | None:
    """The held folder ``path`` is in (the innermost), if this process holds one."""
    if not _HELD:
        return None
    p = os.path.abspath(path)
    with _GUARD:
        owners = list(_HELD.values())
    inside = [o for o in owners
              if o.pid == os.getpid() and (p == o.root or p.startswith(o.root.rstrip(os.sep) + os.sep))]
    return max(inside, key=lambda o: len(o.root), default=None)


def _before_write(path: Path, data: bytes):
    owner = holder_of(path)
    if owner is not None:
        owner.record(path, data)


atomic.BEFORE_WRITE.append(_before_write)


# -- writing the tables ----------------------------------------------------------------------------------------------
def withdraw(folder, names=()):
    """Check that the folder is still the one held (else a BncliError), then remove the results files ``names``
    that are about to be replaced: the file the folder's kind is recognised by, its figure. Written again last,
    they are never seen beside tables or a config of another invocation."""
    owner = holder_of(folder)
    if owner is not None:
        owner.verify()
    for name in names:
        path = Path(folder) / name
        if not path.is_dir() or path.is_symlink():  # a folder of that name is not bncli's: writing there says so
            path.unlink(missing_ok=True)


@contextmanager
def publishing(folder, replacing=()):
    """Around the writing of a command's tables: ``withdraw(folder, replacing)`` first, and Ctrl-C or a kill
    (SIGTERM) waits until the block has written everything, so that the tables are of one invocation."""
    withdraw(folder, replacing)
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread: a notebook's worker thread writes without the guard
        return
    caught = []
    previous = {}
    try:
        for s in (signal.SIGINT, signal.SIGTERM):
            previous[s] = signal.signal(s, lambda signum, frame: caught.append(signum))
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        if caught:
            signal.raise_signal(caught[0])  # delivered now, through the command's own handler


__all__ = ["LOCK", "MANIFEST", "Owner", "claim", "holder_of", "out_path", "publishing", "read_manifest", "withdraw"]
