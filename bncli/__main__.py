"""`python -m bncli` and the `bncli` script. A Ctrl-C while the command line is still being imported (typer, numpy:
the first few tenths of a second) ends like one at any later moment: one line, exit 130, no traceback. The signal is
noted while importing, not raised inside an import (a half-imported module is no state to unwind from)."""

import signal
import sys


def main():
    noted = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    try:
        from .cli import main as cli_main
    finally:
        signal.signal(signal.SIGINT, previous)
    if noted:
        print("interrupted: nothing was started", file=sys.stderr)
        sys.exit(130)
    cli_main()


if __name__ == "__main__":
    main()
