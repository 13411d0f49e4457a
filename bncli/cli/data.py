"""``bncli data``: fetch, list and describe datasets. Failures go through the one error mapper (cli/errors.py):
corrupt or hostile files and failed downloads exit 1, unknown names and bad options exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..data import sources
from ..errors import UsageError
from .app import command, data_app
from .ui import console

NAME = typer.Argument(..., help=f"Dataset: {', '.join(sources.REAL + sources.BUNDLED)}.", show_default=False)
ROOT = typer.Option(None, "--root", help="Data root holding <name>/ folders [default: $BNCLI_DATA, else "
                                         "$XDG_CACHE_HOME/bncli or ~/.cache/bncli].")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


class _Bar:
    """A rich progress bar (bytes, speed, time left) per downloaded file, for ``fetch.download``."""

    def __init__(self, console):
        self.console = console
        self.progress = self.task = None

    def start(self, label, total, completed=0):
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self.finish()
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=self.console)
        self.progress.start()
        self.task = self.progress.add_task(f"  {label}", total=total, completed=completed)

    def update(self, completed):
        if self.progress is not None:
            self.progress.update(self.task, completed=completed)

    def finish(self):
        if self.progress is not None:
            self.progress.stop()
        self.progress = self.task = None


@command(data_app)
def fetch(name: str = NAME, root: Optional[Path] = ROOT,
          fmt: str = typer.Option("bin", "--format", help="CIFAR-10 only: bin (no pickle) or python."),
          mirror: Optional[str] = typer.Option(None, "--mirror", help="Base URL holding the files [default: the "
                                                                     "official one; or $BNCLI_DATA_MIRROR/<name>/]."),
          force: bool = typer.Option(False, "--force", help="Download again even when the files are present.")):
    """Download a dataset's official files, verify their published checksums and extract them."""
    from ..data.fetch import fetch as do_fetch

    sources.check_name(name)
    if name in sources.BUNDLED:
        console.print(f"{name} is {'bundled with bncli' if name == 'mnist-5k' else 'generated on the fly'}: "
                      "nothing to fetch")
        return
    if name != "cifar10" and fmt != "bin":
        raise UsageError(f"--format is for cifar10 only (got --format {fmt} for {name})")
    target = root if root is not None else sources.default_root()
    console.print(f"[bold]{name}[/] -> {escape(str(target / name))}", soft_wrap=True)
    report = do_fetch(name, root, fmt, mirror=mirror, progress=_Bar(console), force=force)
    for file, what in report.actions:
        console.print(f"  {escape(file)}: {escape(what)}", soft_wrap=True)
    if report.did_nothing:
        console.print(f"{name}: already present in {escape(str(report.folder))}; nothing to do", soft_wrap=True)
    else:
        console.print(f"{name}: ready in {escape(str(report.folder))} ({sources.CREDITS[name]})", soft_wrap=True)


@command(data_app, name="list")
def list_(root: Optional[Path] = ROOT,
          check: bool = typer.Option(True, "--check/--no-check", help="Verify checksums (reads every file).")):
    """What is available locally: where, format, size and checksum status."""
    from ..data.datasets import MNIST5K_SHA256
    from ..data.fetch import status

    table = Table(title="datasets", title_justify="left")
    for c in ("dataset", "location", "format", "files", "size", "checksums"):
        table.add_column(c, justify="right" if c in ("files", "size") else "left",
                         overflow="fold" if c == "location" else "ellipsis")
    if root is None:
        import hashlib
        from importlib import resources

        ref = resources.files("bncli.data").joinpath("mnist5k.npz")
        raw = ref.read_bytes()
        ok = hashlib.sha256(raw).hexdigest() == MNIST5K_SHA256 if check else None
        table.add_row("mnist-5k", "bundled", "npz", "1", _size(len(raw)),
                      "not checked" if ok is None else ("ok (sha256)" if ok else "MISMATCH: reinstall bncli"))
        table.add_row("synthetic", "generated", "-", "-", "-", "-")
    places = sources.roots(root)
    for name in sources.REAL:
        found = False
        for r, origin in places:
            for row in status(name, r / name, check=check):
                found = True
                state = "" if row["complete"] or row["format"] == "partial download" else " (incomplete)"
                table.add_row(name, escape(f"{row['location']} ({origin})"), escape(row["format"] + state),
                              str(row["files"]), _size(row["bytes"]), escape(row["checksums"]))
        if not found:
            table.add_row(name, "[dim]not found[/]", "", "", "", f"[dim]bncli data fetch {name}[/]")
    console.print(table)
    console.print("searched: " + "; ".join(f"{r} ({o})" for r, o in places)
                  + ("; plus data.path when a config sets it" if root is None else ""), highlight=False, markup=False,
                  soft_wrap=True)


@command(data_app)
def info(name: str = NAME, root: Optional[Path] = ROOT,
         path: Optional[Path] = typer.Option(None, "--path", help="A folder holding the files (as data.path).")):
    """Shapes, class balance and pixel statistics of a dataset (as read, before any preprocessing)."""
    from ..data import cifar
    from ..data.datasets import load_mnist5k

    sources.check_name(name)
    if name == "mnist-5k":
        arrays, where, fmt = load_mnist5k(), "bundled mnist5k.npz", "npz"
    elif name == "synthetic":
        raise UsageError("synthetic data is generated from data.synthetic.* in a config; nothing to describe here")
    else:
        arrays, loc = sources.load_raw(name, path, root)
        where, fmt = f"{loc.folder} ({loc.origin})", loc.format
    X_train, y_train, X_test, y_test = arrays
    classes = sources.CLASSES.get(name, sources.CLASSES["mnist"])
    console.print(f"[bold]{name}[/] from {escape(where)}, format {fmt}", soft_wrap=True)
    console.print(f"  train: X {X_train.shape} {X_train.dtype}, y {y_train.shape}; "
                  f"test: X {X_test.shape} {X_test.dtype}, y {y_test.shape}", highlight=False)
    if name == "cifar10":
        console.print(f"  features: {cifar.CHANNEL_ORDER} (reshape to (N, 3, 32, 32) for channel, row, column)")
    else:
        console.print("  features: 28x28 grey levels, row-major (reshape to (N, 28, 28))")
    import numpy as np

    bal = Table(title="class balance", title_justify="left")
    for c in ("class", "name", "train", "train %", "test", "test %"):
        bal.add_column(c, justify="left" if c == "name" else "right")
    tr = np.bincount(y_train, minlength=10)
    te = np.bincount(y_test, minlength=10)
    for k in range(10):
        bal.add_row(str(k), classes[k], str(tr[k]), f"{100 * tr[k] / max(1, len(y_train)):.1f}", str(te[k]),
                    f"{100 * te[k] / max(1, len(y_test)):.1f}")
    console.print(bal)
    px = Table(title="pixel statistics (raw 0-255; /255 gives the [0, 1] values training sees)", title_justify="left")
    for c in ("split", "channel", "mean", "std", "min", "max", "mean/255", "std/255"):
        px.add_column(c, justify="left" if c in ("split", "channel") else "right")
    for split, X in (("train", X_train), ("test", X_test)):
        groups = [("all", X)]
        if name == "cifar10":
            groups += [(ch, X[:, i * 1024:(i + 1) * 1024]) for i, ch in enumerate(("red", "green", "blue"))]
        for ch, part in groups:
            s = sources.pixel_stats(part)
            px.add_row(split, ch, f"{s['mean']:.2f}", f"{s['std']:.2f}", str(s["min"]), str(s["max"]),
                       f"{s['mean'] / 255:.4f}", f"{s['std'] / 255:.4f}")
    console.print(px)
    if name in sources.CREDITS:
        console.print(f"[dim]{sources.CREDITS[name]}[/]")
