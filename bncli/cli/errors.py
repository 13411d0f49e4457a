"""The one place where failures become a message and an exit code.

    UsageError (bad command line or config: file, line, key)      one line, exit 2
    BncliError, DataError (runtime: damaged file, failed run)     one line, exit 1
    OSError (full disk, read-only or missing folder, ...)         one line naming the file, exit 1
    Ctrl-C                                                        one line, exit 130 (finished work is kept)
    kill (SIGTERM)                                                one line, exit 143: stopped like Ctrl-C, workers too
    anything else (a bug)                                         one line and where the traceback was saved, exit 1;
                                                                  with --debug (or BNCLI_DEBUG=1) the traceback itself
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import sys
import threading
import tempfile
import time
import traceback
from pathlib import Path

import typer

from ..errors import BncliError, UsageError

try:  # typer 0.2x carries its own copy of click, whose exceptions are not click's
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - a typer on the click package
    from click import exceptions as click_errors

DEBUG = {"on": bool(os.environ.get("BNCLI_DEBUG"))}

_HINTS = {errno.ENOSPC: "free some space and run the command again (finished runs are kept)",
          errno.EDQUOT: "free some space and run the command again (finished runs are kept)",
          errno.EFBIG: "a file-size limit was reached; raise it (ulimit -f) and run the command again",
          errno.EROFS: "the file system is read-only; pass --out to write elsewhere",
          errno.EACCES: "no permission; pass --out to write elsewhere",
          errno.EPERM: "no permission; pass --out to write elsewhere"}


def say_error(message: str, code: int):
    from .ui import err_console

    err_console.print("[bold red]error:[/] ", end="", highlight=False)
    err_console.print(message, markup=False, highlight=False)  # user text (paths, values) printed literally
    raise typer.Exit(code)


def click_message(e, argv: list[str]) -> str:
    """A click usage error (unknown option or command, missing argument, bad value) as one line with a way forward,
    instead of click's usage block. ``argv``: the command line as given, to find the value of an unknown option."""
    import difflib

    ctx = e.ctx
    path = ctx.command_path if ctx is not None else "bncli"
    see = f"see {path} --help"
    if isinstance(e, click_errors.NoSuchOption):
        name = e.option_name
        takes_config = ctx is not None and any(p.name == "overrides" for p in ctx.command.params)
        key = _config_key(name) if takes_config else None
        if key:
            value = _value_after(name, argv)
            return (f"no option {name}; config values are set as key=value, e.g. {key}={value}; {see}")
        near = sorted(set(e.possibilities or ()) - {"--help"})
        near = near if len(near) <= 2 else []  # click's list is loose: three are no suggestion
        return f"no option {name}" + (f" (did you mean {' or '.join(near)}?)" if near else "") + f"; {see}"
    text = e.format_message().rstrip(".")
    if ctx is not None and hasattr(ctx.command, "list_commands") and text.startswith("No such command"):
        name = text.split("'")[1] if text.count("'") >= 2 else "?"
        names = list(ctx.command.list_commands(ctx))
        near = difflib.get_close_matches(name, names, n=1)
        return (f"no command '{name}'" + (f" (did you mean {near[0]}?)" if near else "")
                + f"; commands: {', '.join(names)}; {see}")
    if isinstance(e, click_errors.MissingParameter) and e.param is not None and e.param.name == "config":
        return (f"{path}: missing CONFIG: an experiment YAML file or the name of a shipped experiment (`bncli "
                f"examples` lists them); {see}")
    return f"{path}: {text[:1].lower()}{text[1:]}; {see}"


def _config_key(option: str) -> str | None:
    """The config key an option name looks like (--lr -> optimizer.lr, --batch-size -> train.batch_size)."""
    from ..config import dotted_keys, suggest_key

    name = option.lstrip("-").partition("=")[0].replace("-", "_")
    if not name:
        return None
    if name in dotted_keys():
        return name
    return suggest_key(name)


def _value_after(option: str, argv: list[str]) -> str:
    """The value typed with an unknown option (`--lr 0.1`, `--lr=0.1`), else VALUE."""
    for i, a in enumerate(argv):
        if a.startswith(option + "="):
            return a.partition("=")[2] or "VALUE"
        if a == option and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            return argv[i + 1] if "=" not in argv[i + 1] else "VALUE"
    return "VALUE"


def os_message(e: OSError) -> str:
    where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    text = e.strerror or str(e)
    hint = _HINTS.get(e.errno)
    return (f"{where}: " if where else "") + text + (f" ({hint})" if hint else "")


def crash_report(exc: BaseException) -> Path | None:
    """Write the traceback of an unexpected exception to a file; its path, or None if nothing could be written."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    for folder in (Path(state) / "bncli", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"bncli-crash-{stamp}-{os.getpid()}.txt"
            # errors=: an argument that is not UTF-8 (a file name's bytes) must not stop the report being written
            path.write_text(f"bncli {' '.join(sys.argv[1:])}\n\n{text}", encoding="utf-8", errors="backslashreplace")
            return path
        except OSError:
            continue
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill PID``), raised in the main thread: it takes Ctrl-C's way out, so the worker pool is shut
    down and its processes terminated (by default the signal would end this process alone, and its workers would
    compute on, orphaned, until their current run ends)."""


def _terminate(signum, frame):
    raise Terminated


def handled(fn):
    """Wrap a command: every failure becomes one line on stderr and its exit code (see the module docstring)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt as e:
            from .ui import err_console

            what, code = ("terminated", 143) if isinstance(e, Terminated) else ("interrupted", 130)
            err_console.print(f"[yellow]{what}[/]: finished work is kept; run the command again to resume",
                              highlight=False)
            raise typer.Exit(code) from None
        except UsageError as e:
            say_error(str(e), 2)
        except BncliError as e:
            say_error(str(e), getattr(e, "exit_code", 1))
        except OSError as e:
            say_error(os_message(e), 1)
        except Exception as e:  # noqa: BLE001 - a bug: one line here, the traceback in a file
            if DEBUG["on"]:
                traceback.print_exc()
                raise typer.Exit(1) from None
            path = crash_report(e)
            where = f"the traceback is in {path}" if path else "no traceback file could be written"
            say_error(f"unexpected {type(e).__name__}: {e} (a bug in bncli: {where}; run with --debug to print "
                      "it)", 1)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return wrapper
