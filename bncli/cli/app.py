"""The Typer application, its global options and the shared command options. Help text is plain text (no rich
markup), so nothing in square brackets is swallowed."""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from .._version import __version__
from .errors import DEBUG, click_errors, click_message, handled, say_error


class OneLineGroup(TyperGroup):
    """The application's group: a usage error of click's (unknown option or command, missing argument, bad value)
    anywhere in the command line becomes one line `error: ...` with a way forward and exit 2, like every other
    refusal, instead of click's three-line usage block. Asking for no arguments still prints the help."""

    def make_context(self, info_name, args, parent=None, **extra):
        if parent is None:
            self.argv = list(args)
        return self._one_line(lambda: super(OneLineGroup, self).make_context(info_name, args, parent, **extra))

    def invoke(self, ctx):
        return self._one_line(lambda: super(OneLineGroup, self).invoke(ctx))

    def _one_line(self, call):
        try:
            return call()
        except click_errors.NoArgsIsHelpError:
            raise
        except click_errors.UsageError as e:
            say_error(click_message(e, getattr(self, "argv", [])), 2)

# Completion: `bncli --install-completion` (bash, zsh, fish, PowerShell); config arguments complete to files and the
# shipped experiment names.
app = typer.Typer(cls=OneLineGroup, add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="bncli: see, measure and trust what Batch Normalization does.")
data_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                       rich_markup_mode=None, help="Fetch, list and describe datasets (MNIST, Fashion-MNIST, CIFAR-10).")
app.add_typer(data_app, name="data")


def _complete_config(incomplete: str) -> list[str]:
    """Shipped experiment names; file names are completed by the shell itself."""
    from ..examples import shipped

    return [n for n in shipped() if n.startswith(incomplete)]


CONFIG = typer.Argument(..., help="Experiment YAML file, or the name of a shipped experiment (see `bncli examples`).",
                        show_default=False, metavar="CONFIG", autocompletion=_complete_config)
OVERRIDES = typer.Argument(None, help="key=value overrides, e.g. optimizer.lr=0.05 (train.steps=N replaces the "
                                      "file's train.epochs and vice versa).", show_default=False,
                           metavar="[KEY=VALUE]...")
OUT = typer.Option(None, "--out", help="Output directory [default: results/<name>].", show_default=False)
WORKERS = typer.Option(0, "--workers", "-j", min=0, help="Worker processes (0 = one per core).")
EXECUTOR = typer.Option("local", "--executor", help="local, or dask://HOST:PORT (needs the bncli[dask] extra).")
FORCE = typer.Option(False, "--force", help="Write into --out even if it holds files bncli did not write or results "
                                            "of another command.")


def command(group: typer.Typer = app, **kw):
    """Register a command whose failures go through the one error mapper (cli/errors.py) and whose results folder
    (``hold``) is released when it ends."""
    def register(fn):
        return group.command(**kw)(handled(_releasing(fn)))
    return register


_HOLDING: list[contextlib.ExitStack] = []  # the folders each running command holds (innermost last)


def _releasing(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with contextlib.ExitStack() as stack:
            _HOLDING.append(stack)
            try:
                return fn(*args, **kwargs)
            finally:
                _HOLDING.pop()
    return wrapper


def _version(value: bool):
    if value:
        print(f"bncli {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Show the version and exit."),
         debug: bool = typer.Option(False, "--debug", help="Print the full traceback of an unexpected error "
                                                           "(also BNCLI_DEBUG=1)."),
         quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only results tables, warnings and errors: "
                                                                 "no progress or status lines."),
         verbose: bool = typer.Option(False, "--verbose", "-v", help="Also print each run as it finishes and the "
                                                                     "machine it runs on (CPU, BLAS).")):
    """bncli: see, measure and trust what Batch Normalization does."""
    from .ui import set_verbosity

    if quiet and verbose:
        raise typer.BadParameter("give either --quiet or --verbose, not both", param_hint="-q / -v")
    DEBUG["on"] = debug or bool(os.environ.get("BNCLI_DEBUG"))
    set_verbosity(-1 if quiet else 1 if verbose else 0)


def workers_for(workers: int, n: int) -> int:
    return max(1, min(workers or os.cpu_count() or 1, n))


def default_out(out: Optional[str], name: str, force: bool = False) -> Path:
    """The folder ``--out`` names (its text: empty text is refused unless --force), else results/<name>."""
    from ..runs.owner import out_path

    return out_path(out, force) or Path("results") / name


def hold(out: Path, kind: str, force: bool, **kw):
    """Hold the results folder ``out`` for the rest of the command, released when the command ends however it ends
    (runs/owner.py): a second command on it is refused before this one prints anything."""
    from ..runs.owner import claim

    return _HOLDING[-1].enter_context(claim(out, kind, force=force, **kw))
