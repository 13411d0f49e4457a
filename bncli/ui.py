"""Rich rendering shared by the commands: the live progress of many runs, and the result tables."""

from __future__ import annotations

import math
import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import stats

# Piped output (CI logs, files) gets 120 columns instead of rich's 80, so the tables are not folded.
_WIDTH = None if sys.stdout.isatty() else 120
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH, soft_wrap=True)  # paths stay on one line


class RunProgress:
    """An overall bar (runs done / total, ETA, diverged and failed so far) and one bar per run in flight.
    ``labels[i]`` names task i; ``on_progress``/``on_done`` plug into ``executor.execute``."""

    def __init__(self, labels: list[str], title="runs"):
        self.labels = labels
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=console)
        self.overall = self.progress.add_task(f"[bold]{title}", total=len(labels), info="")
        self.bars: dict[int, int] = {}
        self.diverged = self.failed = 0

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def on_progress(self, i, step, total, loss, acc):
        if i not in self.bars:
            self.bars[i] = self.progress.add_task(f"  {self.labels[i]}", total=total, info="")
        loss_s = "" if loss is None or not math.isfinite(loss) else f"loss {loss:.4f}  "
        self.progress.update(self.bars[i], completed=step, info=f"{loss_s}test acc {acc:.3f}")

    def on_done(self, i, res):
        if i in self.bars:
            self.progress.remove_task(self.bars.pop(i))
        if isinstance(res, BaseException):
            self.failed += 1
            self.progress.console.print(f"[red]failed[/] {escape(self.labels[i])}: {escape(str(res))}")
        elif res.get("status") == "diverged":
            self.diverged += 1
        counts = ", ".join(f"{n} {w}" for n, w in ((self.diverged, "diverged"), (self.failed, "failed")) if n)
        self.progress.update(self.overall, advance=1, info=counts)


def _summary(d: dict) -> stats.Summary:
    return stats.Summary(**{k: d[k] for k in ("n", "mean", "sd", "ci_low", "ci_high")})


def experiment_tables(cfg, result):
    t = cfg.train
    table = Table(title=f"{cfg.name}: mean ± sd over seeds (test split, eval mode)", title_justify="left",
                  caption=f"steps to target: mean ± sd over the runs that reached {t.target_accuracy:g} "
                          f"on the {t.target_split} split (reached/runs)", caption_justify="left")
    for name in ("arm", "ok/runs", "final acc", "best acc", "steps to target", "train loss", "s/run"):
        table.add_column(name, justify="left" if name == "arm" else "right", no_wrap=True)
    for arm, a in result.arms.items():
        status = a["status"]
        runs = f"{status['ok']}/{a['n_runs']}" + (f" ({status['diverged']} div)" if status["diverged"] else "") + \
            (f" ({status['failed']} failed)" if status["failed"] else "")
        steps = stats.fmt(_summary(a["steps_to_target"]), 0) + f" ({a['reached_target']}/{a['n_runs']})"
        table.add_row(arm, runs, stats.fmt(_summary(a["final_test_acc"])), stats.fmt(_summary(a["best_test_acc"])),
                      steps, stats.fmt(_summary(a["final_train_loss"])), stats.fmt(_summary(a["time_s"]), 2))
    tables = [table]
    if result.comparisons:
        comp = Table(title="paired differences by seed (95% t-interval)", title_justify="left")
        for c in ("difference", "metric", "n", "mean", "95% CI"):
            comp.add_column(c, justify="left" if c == "difference" else "right")
        for c in result.comparisons:
            s = _summary(c)
            digits = 0 if c["metric"] == "steps_to_target" else 4
            comp.add_row(c["difference"], c["metric"], str(s.n), f"{s.mean:+.{digits}f}" if s.n else "—",
                         stats.fmt_ci(s, digits))
        tables.append(comp)
    return tables


def _fmt_value(v):
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def plan_table(runs, keys, limit=60):
    table = Table(title=f"{len(runs)} runs ({sum(r.done for r in runs)} already done)", title_justify="left")
    for c in ("#", *keys, "arm", "seed", "hash", "status"):
        table.add_column(c, justify="right" if c in ("#", "seed") else "left")
    for i, r in enumerate(runs[:limit]):
        table.add_row(str(i), *(_fmt_value(r.point[k]) for k in keys), r.arm, str(r.seed), r.hash,
                      "done" if r.done else "pending")
    if len(runs) > limit:
        table.caption = f"... and {len(runs) - limit} more"
    return table


def usable_table(result):
    if not result.usable:
        return None
    rk = result.usable[0]["range_key"]
    pts = [k[len("decades_"):-2] for k in result.usable[0] if k.startswith("decades_")]
    table = Table(title=f"usable range of {rk}: values whose mean final test accuracy is within N points of "
                        f"the arm's best (contiguous, width in decades)", title_justify="left")
    others = [k for k in result.keys if k != rk]
    for c in ("arm", *others, "best value", "best acc", *(f"within {p} pt" for p in pts), "diverged runs"):
        table.add_column(c, justify="left" if c in ("arm", *others) else "right")
    div = {}
    for r in result.range_rows:
        key = (r["arm"], *(str(r[k]) for k in others))
        div[key] = div.get(key, 0) + r["diverged"]
    for u in result.usable:
        cells = [f"{u[f'decades_{p}pt']:.2f} dec [{_fmt_value(u[f'lo_{p}pt'])}, {_fmt_value(u[f'hi_{p}pt'])}]"
                 for p in pts]
        key = (u["arm"], *(str(u[k]) for k in others))
        table.add_row(u["arm"], *(_fmt_value(u[k]) for k in others), _fmt_value(u["best_value"]),
                      f"{u['best_acc']:.3f}", *cells, str(div.get(key, 0)))
    return table
