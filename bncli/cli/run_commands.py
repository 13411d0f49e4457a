"""`bncli train`, `sweep` and `lrfind`: parse, call the library function, render. Every one resumes: a run that
finished (with this code) is kept and never trained again."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from ..config import load_config
from ..examples import locate, shipped_name
from ..errors import UsageError
from ..executor import check_executor
from .app import CONFIG, EXECUTOR, FORCE, OUT, OVERRIDES, WORKERS, command, default_out, hold
from .progress import RunProgress
from .ui import console, detail, err_console, status, warn


def _where(executor: str, workers: int) -> str:
    if executor != "local":
        return f"on the Dask cluster at {executor}"
    return f"on {workers} local worker process{'es' if workers > 1 else ''} (one BLAS thread each)"


def _work(specs) -> dict:
    """Each run's matrix-product work, which weights the progress ETA."""
    from ..runs.cost import plan_work

    return {h: w.flops for h, w in plan_work([s for s in specs if not s.done]).items()}


def _machine():
    from ..runs import platform_info

    p = platform_info()
    detail(f"machine: {p.get('cpu_model') or '?'}, {p.get('cpu_count') or '?'} cores, {p.get('machine')}; BLAS: "
           f"{blas_text(p)}; one BLAS thread per worker", markup=False, highlight=False)


def blas_text(p: dict) -> str:
    """The BLAS this process runs, as meta.json records it: the kernel OpenBLAS picked for this CPU (threadpoolctl's
    ``architecture``), not the target numpy's wheel was built for, which is another CPU's name."""
    libs = [lib for lib in (p.get("blas") or []) if isinstance(lib, dict)]
    if not libs:
        return "unknown (threadpoolctl found no BLAS library)"
    lib = libs[0]
    name = " ".join(str(x) for x in (lib.get("internal_api"), lib.get("version")) if x) or "?"
    return f"{name}, running kernel {lib.get('architecture') or '?'}"


def _again(specs) -> str:
    n = sum(s.stale is not None for s in specs)
    return f" ({n} of them again: their folders did not verify)" if n else ""


def _stale(specs, keys=None):
    """Which runs found on disk did not verify and are trained again, and why (runs/verify.py)."""
    from ..runs import stale_lines

    for line in stale_lines(specs, keys):
        warn(line)


def _failures(failures: list[dict]):
    for f in failures:
        point = " ".join(f"{k}={v}" for k, v in f["point"].items())
        err_console.print(f"[red]failed[/] {escape(point)} {f['arm']} seed {f['seed']}: {escape(f['error'])}",
                          highlight=False)
    if failures:
        raise typer.Exit(1)


def _plan(kind: str, config: Path, overrides, out, force=False):
    """The plan of a train or sweep (bncli.api, the one the notebook API uses), saying so when a shipped experiment
    was picked by name."""
    from ..api import plan
    from ..runs.owner import out_path

    _note_shipped(config)
    return plan(kind, config, overrides or [], out_path(out, force), force=force)


def _note_shipped(config: Path):
    if shipped_name(config):
        status(f"{config}: using the experiment shipped with bncli ({locate(config)}); `bncli examples DIR` copies "
               "them out to edit", markup=False, highlight=False)


def _no_sweep(cfg, config: Path, overrides):
    """`bncli train` of an experiment with a sweep section is refused: it would train the base point alone, under
    a header that reads like the study, and the user would take one point's numbers for the sweep's. `sweep=null`
    says the base point is what is wanted."""
    if cfg.sweep is None:
        return
    same = " with the same overrides" if overrides else ""
    raise UsageError(f"{config}: this experiment is a sweep ({', '.join(cfg.sweep.parameters) or 'random'}); "
                     f"`bncli train` would train its base point only. Run `bncli sweep {config}`{same}, or add "
                     "sweep=null to train the base point")


@command()
def train(config: Path = CONFIG, overrides: Optional[List[str]] = OVERRIDES, out: Optional[str] = OUT,
          workers: int = WORKERS, executor: str = EXECUTOR, force: bool = FORCE):
    """Train the arms (BN placements) of an experiment over its seeds; write results and a figure."""
    from .ui import experiment_tables

    check_executor(executor)
    p = _plan("train", config, overrides, out, force)
    _no_sweep(p.cfg, config, overrides)
    hold(p.out, "train", force)
    cfg, workers = p.cfg, p.workers(workers)
    _machine()
    status(f"[bold]{escape(cfg.name)}[/]: {len(cfg.model.bn)} arms x {len(cfg.train.seeds)} seeds = "
           f"{len(p.specs)} runs; {len(p.specs) - p.todo} already done, {p.todo} to train{_again(p.specs)} "
           f"{_where(executor, workers)} -> {escape(str(p.out))}", highlight=False)
    _stale(p.specs)
    t0 = time.perf_counter()
    with RunProgress(p.todo, label=lambda s: f"{s.arm:<6} seed {s.seed}", work=_work(p.specs)) as ui:
        result = p.run(workers, executor, on_progress=ui.on_progress, on_done=ui.on_done, force=force).outcome
    for table in experiment_tables(cfg, result):
        console.print(table)
    status(f"wrote {result.out_dir}/ (summary.csv, experiment.json, runs/)"
           + (f" and {result.figure}" if result.figure else "") + f" in {time.perf_counter() - t0:.1f} s",
           markup=False, highlight=False)
    _failures(result.failures)


@command()
def sweep(config: Path = CONFIG, overrides: Optional[List[str]] = typer.Argument(
              None, show_default=False,
              help="key=value overrides; key=v1,v2,... or key=logrange(min,max,per_decade) or "
                   "key=linrange(min,max,num) add swept keys (quote them in the shell)."),
          out: Optional[str] = OUT, workers: int = WORKERS, executor: str = EXECUTOR,
          dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and their count; run nothing."),
          force: bool = FORCE):
    """Hyperparameter-range study: the sweep grid x arms x seeds, in parallel, resumable."""
    from .ui import plan_table, usable_table

    check_executor(executor)
    p = _plan("sweep", config, overrides, out, force)
    if not dry_run:  # a dry run writes nothing
        hold(p.out, "sweep", force)
    cfg, runs, workers = p.cfg, p.specs, p.workers(workers)
    keys = list(cfg.sweep.parameters)
    n_points = len(runs) // max(1, len(cfg.model.bn) * len(cfg.train.seeds))
    status(f"[bold]{escape(cfg.name)}[/]: {len(runs)} runs = {n_points} points x {len(cfg.model.bn)} arms x "
           f"{len(cfg.train.seeds)} seeds; {len(runs) - p.todo} already done, {p.todo} to run{_again(runs)} -> "
           f"{escape(str(p.out))}", highlight=False)
    _stale(runs, keys)
    if dry_run:
        console.print(plan_table(runs, keys))
        return
    _machine()
    status(_where(executor, workers), markup=False)
    t0 = time.perf_counter()
    with RunProgress(p.todo, label=lambda s: s.label(keys), work=_work(runs)) as ui:
        result = p.run(workers, executor, on_progress=ui.on_progress, on_done=ui.on_done, force=force).outcome
    table = usable_table(result)
    if table is not None:
        console.print(table)
    n_div = sum(bool(r.get("diverged")) for r in result.rows)
    figure = ", range.png" if not result.figure_skipped and (p.out / "range.png").is_file() else ""
    status(f"{len(result.rows)} runs ({result.skipped} reused, {n_div} diverged, {len(result.failed)} failed); "
           f"wrote {p.out}/ (summary.csv, range.csv, ranges.csv, sweep.json{figure}) in "
           f"{time.perf_counter() - t0:.1f} s", markup=False, highlight=False)
    if result.figure_skipped:
        warn(f"range.png not drawn: {result.figure_skipped}; the tables hold every number")
    _failures(result.failed)


@command()
def lrfind(config: Path = CONFIG, overrides: Optional[List[str]] = OVERRIDES,
           out: Optional[str] = typer.Option(None, "--out", help="Output directory [default: results/<name>-lrfind].",
                                             show_default=False),
           start: float = typer.Option(1e-7, "--start", min=0, help="First learning rate."),
           end: float = typer.Option(10.0, "--end", min=0, help="Last learning rate."),
           iters: int = typer.Option(100, "--iters", min=2, help="Iterations of the geometric ramp."),
           beta: float = typer.Option(0.98, "--beta", min=0, max=0.9999, help="Loss smoothing."),
           stop_factor: float = typer.Option(4.0, "--stop-factor", min=1, help="Stop above this x best loss."),
           force: bool = FORCE):
    """Learning-rate range test (Smith 2015): one short run per arm with a geometric learning-rate ramp."""
    from rich.table import Table

    from ..lrfind import MIN_DESCENT, flat_arms, run_lrfind

    for option, value in (("--start", start), ("--end", end), ("--beta", beta), ("--stop-factor", stop_factor)):
        if not math.isfinite(value):  # the range checks let nan through, and inf is no learning rate
            raise UsageError(f"{option} {value}: expected a finite number")
    if not 0 < start < end:
        raise UsageError(f"--start {start:g} / --end {end:g}: expected 0 < start < end")
    _note_shipped(config)
    cfg, src = load_config(locate(config), overrides or [])
    out_dir = default_out(out, f"{cfg.name}-lrfind", force)
    result = run_lrfind(cfg, src, out_dir, force=force, start=start, end=end, iters=iters, beta=beta,
                        stop_factor=stop_factor)
    table = Table(title=f"{escape(cfg.name)}: learning-rate range test (seed {cfg.train.seeds[0]}, {iters} "
                        f"iterations {start:g} -> {end:g})", title_justify="left")
    for c in ("arm", "iterations", "stopped at lr", "min loss at lr", "loss drop", "steepest", "minimum/10"):
        table.add_column(c, justify="left" if c == "arm" else "right")
    flat = flat_arms(result.suggestions)
    for arm, s in result.suggestions.items():
        # a curve without a clear descent suggests nothing: its row shows where it stopped, not a learning rate
        lr = (lambda v: "—") if arm in flat else (lambda v: f"{v:.3g}")  # noqa: E731
        table.add_row(arm, str(s["iterations"]), f"{s['stop_lr']:.3g}", lr(s["min_lr"]),
                      f"{s['descent']:.0%}", lr(s["steep_lr"]), lr(s["min_lr"] / 10))
    console.print(table)
    if flat:
        warn(f"no clear descent (smoothed loss fell < {MIN_DESCENT:.0%}) for {', '.join(flat)}: no learning rate is suggested "
             f"for {'them' if len(flat) > 1 else 'it'}; try more iterations or another range")
    status(f"wrote {out_dir}/ (lr_find.csv, lr_find.json, lr_find.png)", markup=False, highlight=False)
