"""The Typer application, its global options and the shared command options. Help text is plain text (no rich
markup), so nothing in square brackets is swallowed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from .. import __version__
from .errors import DEBUG, handled

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="bncli: see, measure and trust what Batch Normalization does.")
data_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                       rich_markup_mode=None, help="Fetch, list and describe datasets (MNIST, Fashion-MNIST, CIFAR-10).")
app.add_typer(data_app, name="data")

CONFIG = typer.Argument(..., help="Experiment YAML file.", show_default=False, metavar="CONFIG")
OVERRIDES = typer.Argument(None, help="key=value overrides, e.g. optimizer.lr=0.05 (train.steps=N replaces the "
                                      "file's train.epochs and vice versa).", show_default=False,
                           metavar="[KEY=VALUE]...")
OUT = typer.Option(None, "--out", help="Output directory [default: results/<name>].", show_default=False)
WORKERS = typer.Option(0, "--workers", "-j", min=0, help="Worker processes (0 = one per core).")
EXECUTOR = typer.Option("local", "--executor", help="local, or dask://HOST:PORT (needs the bncli[dask] extra).")


def command(group: typer.Typer = app, **kw):
    """Register a command whose failures go through the one error mapper (cli/errors.py)."""
    def register(fn):
        return group.command(**kw)(handled(fn))
    return register


def _version(value: bool):
    if value:
        print(f"bncli {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Show the version and exit."),
         debug: bool = typer.Option(False, "--debug", help="Print the full traceback of an unexpected error "
                                                           "(also BNCLI_DEBUG=1).")):
    """bncli: see, measure and trust what Batch Normalization does."""
    DEBUG["on"] = debug or bool(os.environ.get("BNCLI_DEBUG"))


def workers_for(workers: int, n: int) -> int:
    return max(1, min(workers or os.cpu_count() or 1, n))


def default_out(out: Optional[Path], name: str) -> Path:
    return out if out is not None else Path("results") / name
