"""The experiments shipped inside the package: listed, found by name from any folder, copied out to be edited.

In a checkout ``bncli/experiments`` is a symlink to the top-level ``experiments/``; a built wheel carries the files
themselves (package data), so an installed bncli runs ``bncli train quickstart`` or ``bncli report`` from any folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import atomic
from .errors import UsageError

SHIPPED = Path(__file__).resolve().parent / "experiments"


def shipped() -> dict[str, Path]:
    """{name: path} of the shipped experiment configs, sorted by name."""
    return {p.stem: p for p in sorted(SHIPPED.glob("*.yaml"))}


def describe(path: Path, limit=150) -> str:
    """The first sentence of the config's opening comment: every shipped experiment says there what it tests."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        words += line.lstrip("#").split()
    text = " ".join(words)
    for i, ch in enumerate(text):
        abbreviation = text[max(0, i - 3):i].endswith(("sec", "e.g", "i.e", "Fig", " al", " vs"))
        if ch in ".?" and (i + 1 == len(text) or text[i + 1] == " ") and not abbreviation:
            text = text[:i + 1]
            break
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _exists(p: Path) -> bool:
    """Whether anything is at ``p``; a name the file system cannot even look up (too long, ...) is left for the
    config reader to report."""
    try:
        return p.exists() or p.is_symlink()
    except OSError:
        return True


def shipped_name(arg: str | Path) -> str | None:
    """The shipped experiment a config argument names when no such file exists here: ``quickstart``,
    ``quickstart.yaml`` or the README's ``experiments/quickstart.yaml`` typed outside the checkout."""
    p = Path(arg)
    if _exists(p):
        return None
    if p.parent not in (Path("."), Path("experiments")) or p.suffix not in ("", ".yaml"):
        return None
    name = p.stem if p.suffix == ".yaml" else p.name
    return name if name in shipped() else None


def locate(arg: str | Path) -> Path:
    """The file a config argument means: the file itself if it exists, else the shipped experiment it names; an
    argument that is neither is returned unchanged, for the reader to report as not found."""
    name = shipped_name(arg)
    if name:
        return shipped()[name]
    p = Path(arg)
    if p.parent == Path(".") and p.suffix == "" and not _exists(p):
        import difflib

        close = difflib.get_close_matches(p.name, list(shipped()), n=1)
        raise UsageError(f"{str(arg)[:200]}: no such file, and no shipped experiment of that name"
                         + (f" (did you mean {close[0]}?)" if close else "") + "; `bncli examples` lists them")
    return p


def copy_out(dest: str | Path, names: list[str] | None = None, force: bool = False) -> tuple[list[Path], list[Path]]:
    """Copy shipped experiments into ``dest`` (created if needed). Returns (written, unchanged). A file there that
    differs is never overwritten without ``force``: it may be the user's edited copy."""
    dest = Path(dest)
    available = shipped()
    unknown = [n for n in names or [] if n.removesuffix(".yaml") not in available]
    if unknown:
        raise UsageError(f"{unknown[0]}: no shipped experiment of that name; `bncli examples` lists them")
    chosen = [available[n.removesuffix(".yaml")] for n in names] if names else list(available.values())
    try:
        if _exists(dest) and not dest.is_dir():
            raise UsageError(f"{str(dest)[:200]}: exists and is not a folder")
    except OSError as e:  # a name too long to look up, ...
        raise UsageError(f"{str(dest)[:200]}: not a usable folder ({e.strerror or e})") from None
    plan = [(src, dest / src.name) for src in chosen]
    clashes = [t for s, t in plan if t.exists() and (not t.is_file() or t.read_bytes() != s.read_bytes())]
    if clashes and not force:
        raise UsageError(f"{clashes[0]}: exists and differs from the shipped copy (perhaps edited); "
                         f"{len(clashes)} such file{'s' if len(clashes) > 1 else ''}, nothing copied; pass --force "
                         "to overwrite")
    try:
        os.makedirs(dest, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{str(dest)[:200]}: cannot create the folder ({e.strerror or e})") from None
    written, unchanged = [], []
    for src, target in plan:
        if target.is_file() and target.read_bytes() == src.read_bytes():
            unchanged.append(target)
            continue
        atomic.write_bytes(target, src.read_bytes())
        written.append(target)
    return written, unchanged
