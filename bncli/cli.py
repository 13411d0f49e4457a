"""The command line: parse, call a library function, render with rich. Errors become messages and exit codes in
``cli_errors`` — the one place where that happens."""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__, stats
from .config import load_config
from .errors import BncliError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="bncli: see, measure and trust what Batch Normalization does.")
# Piped output (CI logs, files) gets 120 columns instead of rich's 80, so the tables are not folded.
_WIDTH = None if sys.stdout.isatty() else 120
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH)


def cli_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BncliError as e:
            err_console.print(f"[bold red]error:[/] {_escape(str(e))}", highlight=False)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: finished runs are kept")
            raise typer.Exit(130) from None
    return wrapper


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _version(value: bool):
    if value:
        console.print(f"bncli {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Show the version and exit.")):
    """bncli: see, measure and trust what Batch Normalization does."""


@app.command()
@cli_errors
def train(
    config: Path = typer.Argument(..., help="Experiment YAML file.", show_default=False),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. optimizer.lr=0.05",
                                                    show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory [default: results/<name>]."),
    workers: int = typer.Option(0, "--workers", "-j", min=0, help="Worker processes (0 = one per core)."),
):
    """Train the arms (BN placements) of an experiment over its seeds; write results and a figure."""
    from .experiment import run_experiment

    cfg, src = load_config(config, overrides or [])
    out_dir = out or Path("results") / cfg.name
    n_runs = len(cfg.model.bn) * len(cfg.train.seeds)
    workers = workers or min(os.cpu_count() or 1, n_runs)
    console.print(f"[bold]{cfg.name}[/]: {len(cfg.model.bn)} arms x {len(cfg.train.seeds)} seeds = {n_runs} runs "
                  f"on {workers} worker{'s' if workers > 1 else ''} -> {out_dir}")
    t0 = time.perf_counter()
    labels = [(arm, seed) for arm in cfg.model.bn for seed in cfg.train.seeds]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False) as progress:
        overall = progress.add_task("[bold]runs", total=n_runs, info="")
        bars = {}

        def on_progress(i, step, total, loss, acc):
            if i not in bars:
                arm, seed = labels[i]
                bars[i] = progress.add_task(f"  {arm:<6} seed {seed}", total=total, info="")
            loss_s = "" if loss is None or loss != loss else f"loss {loss:.4f}"
            progress.update(bars[i], completed=step, info=f"{loss_s}  test acc {acc:.3f}")

        def on_done(i, res):
            if i in bars:
                progress.remove_task(bars[i])
            arm, seed = labels[i]
            if isinstance(res, BaseException):
                progress.console.print(f"[red]failed[/] {arm} seed {seed}: {_escape(str(res))}")
            elif res["status"] != "ok":
                progress.console.print(f"[yellow]{res['status']}[/] {arm} seed {seed} at step "
                                       f"{res.get('diverged_at_step')}")
            progress.advance(overall)

        result = run_experiment(cfg, src, out_dir, workers=workers, on_progress=on_progress, on_done=on_done)
    render_result(cfg, result, time.perf_counter() - t0)
    if any(r["status"] == "failed" for r in result.runs):
        raise typer.Exit(1)


def render_result(cfg, result, elapsed):
    t = cfg.train
    table = Table(title=f"{cfg.name}: mean ± sd over seeds (test split, eval mode)", title_justify="left",
                  caption=f"steps to target: mean ± sd over the runs that reached {t.target_accuracy:g} "
                          f"on the {t.target_split} split (reached/runs)", caption_justify="left")
    for name in ("arm", "ok/runs", "final acc", "best acc", "steps to target", "train loss", "s/run"):
        table.add_column(name, justify="left" if name == "arm" else "right", no_wrap=True)
    for arm, a in result.arms.items():
        S = lambda m: stats.Summary(**{k: a[m][k] for k in ("n", "mean", "sd", "ci_low", "ci_high")})  # noqa: E731
        status = a["status"]
        runs = f"{status['ok']}/{a['n_runs']}" + (f" ({status['diverged']} div)" if status["diverged"] else "") + \
            (f" ({status['failed']} failed)" if status["failed"] else "")
        steps = stats.fmt(S("steps_to_target"), 0) + f" ({a['reached_target']}/{a['n_runs']})"
        table.add_row(arm, runs, stats.fmt(S("final_test_acc")), stats.fmt(S("best_test_acc")), steps,
                      stats.fmt(S("final_train_loss")), stats.fmt(S("time_s"), 2))
    console.print(table)
    if result.comparisons:
        comp = Table(title="paired differences by seed (95% t-interval)", title_justify="left")
        for c in ("difference", "metric", "n", "mean", "95% CI"):
            comp.add_column(c, justify="right" if c != "difference" else "left")
        for c in result.comparisons:
            s = stats.Summary(c["n"], c["mean"], c["sd"], c["ci_low"], c["ci_high"])
            digits = 0 if c["metric"] == "steps_to_target" else 4
            comp.add_row(c["difference"], c["metric"], str(s.n), f"{s.mean:+.{digits}f}" if s.n else "—",
                         stats.fmt_ci(s, digits))
        console.print(comp)
    console.print(f"wrote {result.out_dir}/ (summary.csv, experiment.json, per-run directories)"
                  + (f" and {result.figure}" if result.figure else "") + f" in {elapsed:.1f} s")
