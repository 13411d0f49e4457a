"""`python -m bncli` and the `bncli` script. A Ctrl-C while the command line is still being imported (typer, numpy:
the first few tenths of a second) ends like one at any later moment: one line, exit 130, no traceback. The signal is
noted while importing, not raised inside an import (a half-imported module is no state to unwind from).

The standard streams are made usable first, whatever the process was started with. A closed one (`bncli train
x.yaml >&-`) is opened on /dev/null and the command runs as usual, its exit code and error line unchanged: every
result is a file in the output folder, and running the command again prints its tables from them (finished runs are
reused), so nothing is lost, whereas stopping would throw the work away for a console the user closed (as `print`
does in any Python program, what would have gone to a closed stdout is dropped). Left closed, the descriptor would
go to the next file bncli opens, and a stray write to stdout (a library's, a worker's) would land inside a result
file. A stream whose encoding lacks the tables' characters (PYTHONIOENCODING=ascii, latin-1) gets them in ASCII:
"±" as "+-", "…" as "..." (cli/ui.py)."""

import os
import signal
import sys


def reopen_closed_streams():
    """Open /dev/null on each closed standard descriptor, and a stream on it where Python left None."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        if null != fd:  # with fd 0 open and fd 1 closed, os.open took fd 1 already
            os.dup2(null, fd)
            os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", encoding="utf-8", errors="replace", closefd=False))


def main():
    reopen_closed_streams()
    noted = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    try:
        from .cli import main as cli_main
        from .cli.ui import degrade_streams
    finally:
        signal.signal(signal.SIGINT, previous)
    if noted:
        print("interrupted: nothing was started", file=sys.stderr)
        sys.exit(130)
    degrade_streams()
    try:
        cli_main()
    except KeyboardInterrupt:  # between the import and a command's own handler (cli/errors.py): the same one line
        print("interrupted: finished work is kept; run the command again to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
