"""The command line — the only part of bncli that imports typer and rich. Commands are thin: parse, call a library
function, render; failures become one line and an exit code in ``errors.py``."""

import sys

from . import run_commands, report_commands, examples, data  # noqa: F401, I001 - registers the commands in this order
from .app import app


GLOBAL_FLAGS = ("-q", "--quiet", "-v", "--verbose", "--debug")


def main(argv=None):
    # -q / -v / --debug belong to the app, but users type them after the command too (`bncli train x.yaml -v`):
    # they are moved to the front, up to a `--`. No command has an option of these names.
    argv = list(sys.argv[1:] if argv is None else argv)
    end = argv.index("--") if "--" in argv else len(argv)
    flags = [a for a in argv[:end] if a in GLOBAL_FLAGS]
    rest = [a for a in argv[:end] if a not in GLOBAL_FLAGS] + argv[end:]
    app(args=flags + rest, prog_name="bncli")


__all__ = ["app", "main"]
