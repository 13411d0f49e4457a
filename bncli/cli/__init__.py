"""The command line — the only part of bncli that imports typer and rich. Commands are thin: parse, call a library
function, render; failures become one line and an exit code in ``errors.py``."""

from . import run_commands, report_commands, data  # noqa: F401, I001 - registers the commands in this order
from .app import app


def main():
    app(prog_name="bncli")


__all__ = ["app", "main"]
