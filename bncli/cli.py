"""The command line: parse, call a library function, render with rich. Errors become messages and exit codes in
``cli_errors`` — the one place where that happens."""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from . import __version__
from .config import load_config
from .errors import BncliError
from .ui import RunProgress, console, err_console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="bncli: see, measure and trust what Batch Normalization does.")

CONFIG = typer.Argument(..., help="Experiment YAML file.", show_default=False)
OVERRIDES = typer.Argument(None, help="key=value overrides, e.g. optimizer.lr=0.05", show_default=False)
OUT = typer.Option(None, "--out", help="Output directory [default: results/<name>].")
WORKERS = typer.Option(0, "--workers", "-j", min=0, help="Worker processes (0 = one per core).")


def cli_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BncliError as e:
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: finished runs are kept; run the command again to resume")
            raise typer.Exit(130) from None
    return wrapper


def _version(value: bool):
    if value:
        console.print(f"bncli {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Show the version and exit.")):
    """bncli: see, measure and trust what Batch Normalization does."""


def _workers(workers: int, n: int) -> int:
    return max(1, min(workers or os.cpu_count() or 1, n))


@app.command()
@cli_errors
def train(config: Path = CONFIG, overrides: Optional[List[str]] = OVERRIDES, out: Optional[Path] = OUT,
          workers: int = WORKERS):
    """Train the arms (BN placements) of an experiment over its seeds; write results and a figure."""
    from .experiment import run_experiment
    from .ui import experiment_tables

    cfg, src = load_config(config, overrides or [])
    out_dir = out or Path("results") / cfg.name
    n_runs = len(cfg.model.bn) * len(cfg.train.seeds)
    workers = _workers(workers, n_runs)
    console.print(f"[bold]{cfg.name}[/]: {len(cfg.model.bn)} arms x {len(cfg.train.seeds)} seeds = {n_runs} runs "
                  f"on {workers} worker{'s' if workers > 1 else ''} -> {out_dir}")
    t0 = time.perf_counter()
    labels = [f"{arm:<6} seed {seed}" for arm in cfg.model.bn for seed in cfg.train.seeds]
    with RunProgress(labels) as ui:
        result = run_experiment(cfg, src, out_dir, workers=workers, on_progress=ui.on_progress, on_done=ui.on_done)
    for table in experiment_tables(cfg, result):
        console.print(table)
    console.print(f"wrote {result.out_dir}/ (summary.csv, experiment.json, per-run directories)"
                  + (f" and {result.figure}" if result.figure else "") + f" in {time.perf_counter() - t0:.1f} s")
    if any(r["status"] == "failed" for r in result.runs):
        raise typer.Exit(1)


@app.command()
@cli_errors
def sweep(config: Path = CONFIG, overrides: Optional[List[str]] = typer.Argument(
              None, show_default=False,
              help="key=value overrides; key=v1,v2,... or key=logrange(min,max,per_decade) or "
                   "key=linrange(min,max,num) add swept keys."),
          out: Optional[Path] = OUT, workers: int = WORKERS,
          executor: str = typer.Option("local", "--executor", help="local, or dask://HOST:PORT (bncli[dask])."),
          dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and their count; run nothing.")):
    """Hyperparameter-range study: the sweep grid x arms x seeds, in parallel, resumable."""
    from .sweep import plan, run_sweep
    from .ui import plan_table, usable_table

    from .executor import check_executor

    check_executor(executor)
    cfg, src = load_config(config, overrides or [], sweep_overrides=True)
    out_dir = out or Path("results") / cfg.name
    runs = plan(cfg, src, out_dir)
    keys = list(cfg.sweep.parameters)
    todo = [r for r in runs if not r.done]
    workers = _workers(workers, len(todo))
    console.print(f"[bold]{cfg.name}[/]: {len(runs)} runs = {len(runs) // max(1, len(cfg.model.bn) * len(cfg.train.seeds))}"
                  f" points x {len(cfg.model.bn)} arms x {len(cfg.train.seeds)} seeds; {len(runs) - len(todo)} "
                  f"already done, {len(todo)} to run -> {out_dir}")
    if dry_run:
        console.print(plan_table(runs, keys))
        return
    if executor == "local":
        console.print(f"on {workers} local worker process{'es' if workers > 1 else ''} (one BLAS thread each)")
    else:
        console.print(f"on the Dask cluster at {executor}")
    t0 = time.perf_counter()
    labels = [", ".join(f"{k.split('.')[-1]}={r.point[k]}" for k in keys) + f" {r.arm} s{r.seed}" for r in todo]
    with RunProgress(labels) as ui:
        result = run_sweep(cfg, src, out_dir, workers=workers, executor=executor, runs=runs,
                           on_progress=ui.on_progress, on_done=ui.on_done)
    table = usable_table(result)
    if table is not None:
        console.print(table)
    n_div = sum(bool(r.get("diverged")) for r in result.rows)
    console.print(f"{len(result.rows)} runs ({result.skipped} reused, {n_div} diverged, {len(result.failed)} failed); "
                  f"wrote {out_dir}/ (summary.csv, range.csv, ranges.csv, sweep.json) in "
                  f"{time.perf_counter() - t0:.1f} s")
    if result.failed:
        for f in result.failed:
            err_console.print(f"[red]failed[/] {escape(str(f['point']))} {f['arm']} seed {f['seed']}: "
                              f"{escape(f['error'])}")
        raise typer.Exit(1)


@app.command()
@cli_errors
def lrfind(config: Path = CONFIG, overrides: Optional[List[str]] = OVERRIDES, out: Optional[Path] = OUT,
           start: float = typer.Option(1e-7, "--start", min=0, help="First learning rate."),
           end: float = typer.Option(10.0, "--end", min=0, help="Last learning rate."),
           iters: int = typer.Option(100, "--iters", min=2, help="Iterations of the geometric ramp."),
           beta: float = typer.Option(0.98, "--beta", min=0, max=0.9999, help="Loss smoothing."),
           stop_factor: float = typer.Option(4.0, "--stop-factor", min=1, help="Stop above this x best loss.")):
    """Learning-rate range test (Smith 2015): one short run per arm with a geometric learning-rate ramp."""
    from .errors import UsageError
    from .lrfind import run_lrfind

    if not 0 < start < end:
        raise UsageError(f"--start {start:g} / --end {end:g}: expected 0 < start < end")
    cfg, src = load_config(config, overrides or [])
    out_dir = out or Path("results") / f"{cfg.name}-lrfind"
    result = run_lrfind(cfg, src, out_dir, start=start, end=end, iters=iters, beta=beta, stop_factor=stop_factor)
    from rich.table import Table

    table = Table(title=f"{cfg.name}: learning-rate range test (seed {cfg.train.seeds[0]}, {iters} iterations "
                        f"{start:g} -> {end:g})", title_justify="left")
    for c in ("arm", "iterations", "stopped at lr", "min loss at lr", "loss drop", "steepest", "minimum/10"):
        table.add_column(c, justify="left" if c == "arm" else "right")
    for arm, s in result.suggestions.items():
        table.add_row(arm, str(s["iterations"]), f"{s['stop_lr']:.3g}", f"{s['min_lr']:.3g}",
                      f"{s['descent']:.0%}", f"{s['steep_lr']:.3g}", f"{s['min_lr'] / 10:.3g}")
    console.print(table)
    flat = [arm for arm, s in result.suggestions.items() if not s["descent"] >= 0.05]
    if flat:
        console.print(f"[yellow]no clear descent[/] (smoothed loss fell < 5%) for {', '.join(flat)}: "
                      "their suggestions are not meaningful; try more iterations or another range")
    console.print(f"wrote {out_dir}/ (lr_find.csv, lr_find.json, lr_find.png)")


@app.command()
@cli_errors
def plot(results_dir: Path = typer.Argument(..., help="A results directory (train, sweep, lrfind or report).",
                                            show_default=False),
         fmt: str = typer.Option("png", "--format", help="png, svg or pdf."),
         out: Optional[Path] = typer.Option(None, "--out", help="Where to write the figures [default: RESULTS_DIR].")):
    """Draw the figures for a results directory (recognises what it holds)."""
    from .plot import plot_dir

    for path in plot_dir(results_dir, fmt, out):
        console.print(f"wrote {path}")


@app.command()
@cli_errors
def report(quick: bool = typer.Option(True, "--quick/--full", help="Quick budget on the bundled data (<= 15 min "
                                                                   "on two cores), or the full budget on real data."),
           out: Optional[Path] = typer.Option(None, "--out", help="[default: results/report-quick or -full]"),
           workers: int = WORKERS,
           executor: str = typer.Option("local", "--executor", help="local, or dask://HOST:PORT (bncli[dask])."),
           experiments: Path = typer.Option(Path("experiments"), "--experiments", help="Folder of c01_*.yaml ..."),
           only: Optional[List[str]] = typer.Option(None, "--only", help="Claim ids to include, e.g. --only C1."),
           readme: Optional[Path] = typer.Option(None, "--readme", help="Also rewrite this README's summary block.")):
    """Measure every claim of CLAIMS.md: run what is missing, then write REPORT.md, report.html and figures."""
    from rich.table import Table

    from .executor import check_executor
    from .report import run_report

    check_executor(executor)
    mode = "quick" if quick else "full"
    t0 = time.perf_counter()
    state = {}

    def on_plan(studies, todo):
        from .report import IN_PROCESS

        n = len({r.hash for s in studies.values() if s.name not in IN_PROCESS for r in s.runs})
        console.print(f"[bold]report ({mode})[/]: {len(studies)} studies, {n} distinct runs, {n - len(todo)} reused, "
                      f"{len(todo)} to train on {_workers(workers, len(todo))} workers")
        labels = [f"{r.config.name[:22]} {r.arm} s{r.seed}" for r in todo]
        state["ui"] = RunProgress(labels).__enter__()

    def on_progress(*a):
        state["ui"].on_progress(*a)

    def on_done(*a):
        state["ui"].on_done(*a)

    try:
        claims = run_report(mode, out, experiments, workers=_workers(workers, 10**6), executor=executor, only=only,
                            on_plan=on_plan, on_progress=on_progress, on_done=on_done)
    finally:
        if "ui" in state:
            state["ui"].__exit__(None, None, None)
    table = Table(title="claims", title_justify="left")
    for col in ("claim", "verdict", "primary effect (estimate, 95% interval)"):
        table.add_column(col)
    colors = {"supported": "green", "contradicted": "red", "inconclusive": "yellow"}
    for c in claims:
        prim = "; ".join(f"{escape(c.effects[i].estimate_text())} {escape(c.effects[i].interval_text())}"
                         for i in c.primary)
        fragile = " [bold](fragile)[/]" if c.stability.get("fragile") else ""
        table.add_row(f"{c.id} {c.title}", f"[{colors[c.verdict]}]{c.verdict}[/]{fragile}", prim)
    console.print(table)
    out_dir = out or Path(f"results/report-{mode}")
    if readme:
        from .report.render import update_readme

        update_readme(readme, out_dir, claims, mode)
        console.print(f"updated the summary in {readme}")
    console.print(f"wrote {out_dir}/REPORT.md, report.html, report.json and figures/ in "
                  f"{time.perf_counter() - t0:.0f} s")


from .data.cli import app as _data_app  # noqa: E402 - `bncli data ...` lives with the dataset code

app.add_typer(_data_app, name="data", help="Fetch, list and describe datasets (MNIST, Fashion-MNIST, CIFAR-10).")
