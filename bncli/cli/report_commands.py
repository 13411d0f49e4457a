"""`bncli report` (every claim measured and judged; resumable) and `bncli plot` (figures redrawn from stored
numbers)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..executor import check_executor
from .app import EXECUTOR, FORCE, WORKERS, command, hold, workers_for
from .progress import RunProgress
from .ui import console, status


@command()
def plot(results_dir: Path = typer.Argument(..., help="A results directory (train, sweep, lrfind or report).",
                                            show_default=False),
         fmt: str = typer.Option("png", "--format", help="png, svg or pdf."),
         out: Optional[str] = typer.Option(None, "--out", help="Where to write the figures [default: RESULTS_DIR].",
                                           show_default=False),
         force: bool = FORCE):
    """Redraw the figures of a results directory from its stored numbers (no dataset, no training)."""
    from ..plot import FORMATS, kind_of, plot_dir
    from ..runs.owner import out_path

    target = out_path(out, force)
    if fmt in FORMATS and _is_dir(results_dir):  # else plot_dir says what is wrong, before anything is created
        if target is None or _same(target, results_dir):
            # figures added to the results folder they are drawn from: only the figures it may replace are checked
            hold(results_dir, kind_of(results_dir), force, only=fmt)
        else:
            hold(target, "plot", force)
    for path in plot_dir(results_dir, fmt, target):
        status(f"wrote {path}", markup=False, highlight=False)


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:  # a name too long to look up, ...
        return False


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and a.samefile(b)
    except OSError:
        return False


def _report_label(spec) -> str:
    return f"{spec.config.name[:22]} {spec.label()}"


@command()
def report(quick: bool = typer.Option(True, "--quick/--full", help="Quick budget on the bundled data (<= 15 min "
                                                                   "on two cores), or the full budget on real data."),
           out: Optional[str] = typer.Option(None, "--out", help="Output directory [default: results/report-quick "
                                                                 "or results/report-full].", show_default=False),
           workers: int = WORKERS, executor: str = EXECUTOR,
           experiments: Optional[Path] = typer.Option(None, "--experiments", show_default=False,
                                                      help="Folder of the claim experiments c01_*.yaml ... "
                                                           "[default: the ones shipped with bncli]"),
           only: Optional[List[str]] = typer.Option(None, "--only", help="Claim ids to include, e.g. --only C1.",
                                                    show_default=False),
           readme: Optional[Path] = typer.Option(None, "--readme", help="Also rewrite this README's summary block.",
                                                 show_default=False),
           force: bool = FORCE):
    """Measure every claim of CLAIMS.md: run what is missing, then write REPORT.md, report.html and figures."""
    from ..report import plan_report, run_report
    from ..report.render import primary_text
    from ..runs.cost import plan_work
    from ..runs.owner import out_path

    check_executor(executor)
    mode = "quick" if quick else "full"
    t0 = time.perf_counter()
    out_dir, studies = plan_report(mode, out_path(out, force), experiments, only)
    hold(out_dir, "report", force)
    specs = {r.hash: r for s in studies.values() for r in s.runs}
    todo = [r for r in specs.values() if not r.done]
    workers = workers_for(workers, len(todo))
    work = {h: w.flops for h, w in plan_work(todo).items()}
    status(f"[bold]report ({mode})[/]: {len(studies)} studies, {len(specs)} distinct runs, "
           f"{len(specs) - len(todo)} reused, {len(todo)} to train ({sum(work.values()) / 1e12:,.1f} TFLOP of matrix "
           f"products) on {workers} worker{'s' * (workers != 1)} -> {escape(str(out_dir))}", highlight=False)
    with RunProgress(len(todo), title="report runs", label=_report_label, work=work) as ui:
        claims = run_report(mode, out_dir, experiments, workers=workers, executor=executor, studies=studies,
                            on_progress=ui.on_progress, on_done=ui.on_done, force=force)
    table = Table(title="claims", title_justify="left")
    for col in ("claim", "verdict", "primary effect: estimate [95% interval]"):
        table.add_column(col)
    colors = {"supported": "green", "contradicted": "red", "inconclusive": "yellow"}
    for c in claims:
        prim = escape(primary_text(c))  # each number with its label, as in REPORT.md
        fragile = " [bold](fragile)[/]" if c.stability.get("fragile") else ""
        table.add_row(f"{c.id} {escape(c.title)}", f"[{colors[c.verdict]}]{c.verdict}[/]{fragile}", prim)
    console.print(table)
    if readme:
        from ..report.render import update_readme

        update_readme(readme, out_dir, claims, mode)
        status(f"updated the summary in {readme}", markup=False, highlight=False)
    status(f"wrote {out_dir}/REPORT.md, report.html, report.json and figures/ in "
                  f"{time.perf_counter() - t0:.0f} s", markup=False, highlight=False)
