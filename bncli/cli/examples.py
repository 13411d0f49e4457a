"""`bncli examples`: list the experiments shipped with bncli, or copy them into a folder to edit."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from .app import command
from .ui import console, status


@command()
def examples(dest: Optional[Path] = typer.Argument(None, help="Folder to copy the experiments into (created if "
                                                              "needed). Without it, list them.", show_default=False,
                                                   metavar="[DIR]"),
             only: Optional[List[str]] = typer.Option(None, "--only", help="Copy only these (names as listed).",
                                                      show_default=False),
             force: bool = typer.Option(False, "--force", help="Overwrite files in DIR that differ from the shipped "
                                                               "copy.")):
    """The experiment configs shipped with bncli: run any of them by name from any folder (`bncli train
    quickstart`), or copy them out to edit (`bncli examples my-experiments`)."""
    from ..examples import SHIPPED, copy_out, describe, shipped

    if dest is None:
        table = Table(title=f"experiments shipped with bncli ({SHIPPED})", title_justify="left",
                      caption="run one by name: bncli train quickstart; copy them to edit: bncli examples DIR",
                      caption_justify="left")
        table.add_column("name", no_wrap=True)
        table.add_column("what it tests")
        for name, path in shipped().items():
            table.add_row(name, describe(path))
        console.print(table)
        return
    written, unchanged = copy_out(dest, only, force)
    status(f"copied {len(written)} experiment{'s' if len(written) != 1 else ''} to {dest}"
           + (f" ({len(unchanged)} already there, identical)" if unchanged else "")
           + f"; run one with: bncli train {_example(dest, written + unchanged)}", markup=False, highlight=False)


def _example(dest: Path, files: list[Path]) -> Path:
    names = [f.name for f in files]
    return dest / ("quickstart.yaml" if "quickstart.yaml" in names else names[0])
