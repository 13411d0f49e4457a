"""Progress of many runs. On a terminal: an overall bar (done/total, ETA, diverged and failed so far) and one bar
per run in flight, labelled with its swept values, arm and seed. Piped (CI logs, files): a plain line at a steady
rhythm (done/total, diverged, failed, running, elapsed, ETA), and one when the last run finishes.

Both plug into ``runs.dispatch``: ``on_progress(spec, step, total, loss, acc)``, ``on_done(spec, result)``. A late
progress message for a run that has already finished is ignored (it would otherwise bring back its bar)."""

from __future__ import annotations

import math
import threading
import time

from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .ui import VERBOSITY, console

PLAIN_EVERY_S = 10.0


def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class _Counts:
    """Runs done, and the share of the work done: runs differ in size (a report mixes runs of 189 and 50,000
    steps), so the ETA is the elapsed time scaled by the work left, each run weighted by its matrix products
    (``runs.cost``) and a running run counted by its steps done."""

    def __init__(self, total: int, label, work: dict | None = None):
        self.total, self.label = total, label
        self.done = self.diverged = self.failed = 0
        self.finished: set[str] = set()
        self.work = work or {}
        self.work_total = sum(self.work.values()) if work else float(total)
        self.work_done = 0.0
        self.partial: dict[str, float] = {}  # running run -> its work done so far
        self.t0 = time.monotonic()

    def weight(self, spec) -> float:
        return self.work.get(spec.hash, 1.0) if self.work else 1.0

    def step(self, spec, step, total):
        if total:
            self.partial[spec.hash] = self.weight(spec) * min(step, total) / total

    def fraction(self) -> float:
        if not self.work_total:
            return 1.0
        return min(1.0, (self.work_done + sum(self.partial.values())) / self.work_total)

    def eta(self) -> str:
        f, elapsed = self.fraction(), time.monotonic() - self.t0
        return "ETA " + (_duration(elapsed * (1 - f) / f) if f > 0 else "unknown")

    def finish(self, spec, res) -> str | None:
        """Count a finished run; the line to print now (a failure), if any."""
        self.finished.add(spec.hash)
        self.partial.pop(spec.hash, None)
        self.work_done += self.weight(spec)
        self.done += 1
        if isinstance(res, BaseException):
            self.failed += 1
            return f"failed {self.label(spec)}: {res}"
        if isinstance(res, dict) and res.get("status") == "diverged":
            self.diverged += 1
        return None

    def tally(self) -> str:
        return ", ".join(f"{n} {w}" for n, w in ((self.diverged, "diverged"), (self.failed, "failed")) if n)


def _run_line(label: str, res) -> str:
    """--verbose: one finished run, its outcome in a few numbers."""
    if not isinstance(res, dict):
        return f"done {label}"
    parts = [str(res.get("status", "?"))]
    for key, name in (("final_test_acc", "final acc"), ("steps_to_target", "steps to target")):
        v = res.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            parts.append(f"{name} {v:.4g}")
    if isinstance(res.get("time_s"), (int, float)):
        parts.append(f"{res['time_s']:.1f} s")
    return f"done {label}: " + ", ".join(parts)


class RunProgress:
    """Use as a context manager around ``dispatch``; picks bars or plain lines from the console."""

    def __init__(self, total: int, title="runs", label=lambda spec: spec.label(), plain=None,
                 every_s=PLAIN_EVERY_S, out=None, work: dict | None = None):
        self.out = out or console
        # --quiet: no bars, no lines (failures are listed by the command when it ends); --verbose: a line per run
        self.verbose = VERBOSITY["level"] > 0
        total = 0 if VERBOSITY["level"] < 0 else total
        self.counts = _Counts(total, label, work)
        self.title = title
        self.plain = (not self.out.is_terminal) if plain is None else plain
        self.every_s = every_s
        self.running: dict[str, int] = {}  # hash -> rich task id (bars) or last step (plain)
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # -- context ---------------------------------------------------------------------------------------------
    def __enter__(self):
        if self.counts.total == 0:
            return self
        if self.plain:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        else:
            # the overall bar advances by work (per mille), so its ETA is weighted like the plain line's
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
                                     TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                     console=self.out)
            self.progress.__enter__()
            self.overall = self.progress.add_task(f"[bold]{escape(self.title)}", total=1000, info="",
                                                  count=f"0/{self.counts.total} runs")
        return self

    def __exit__(self, *exc):
        if self.counts.total == 0:
            return False
        if self.plain:
            self._stop.set()
            self._thread.join(timeout=1)
            return False
        return self.progress.__exit__(*exc)

    # -- callbacks -------------------------------------------------------------------------------------------
    def on_progress(self, spec, step, total, loss, acc):
        with self._lock:
            if spec.hash in self.counts.finished or self.counts.total == 0:
                return
            self.counts.step(spec, step, total)
            if self.plain:
                self.running[spec.hash] = step
                return
            if spec.hash not in self.running:
                self.running[spec.hash] = self.progress.add_task(f"  {escape(self.counts.label(spec))}",
                                                                 total=total, info="", count="")
            loss_s = "" if loss is None or not math.isfinite(loss) else f"loss {loss:.4f}  "
            acc_s = "" if acc is None or not math.isfinite(acc) else f"test acc {acc:.3f}"
            self.progress.update(self.running[spec.hash], completed=step, info=loss_s + acc_s,
                                 count=f"{step}/{total}")
            self.progress.update(self.overall, completed=round(1000 * self.counts.fraction()))

    def on_done(self, spec, res):
        with self._lock:
            if self.counts.total == 0:
                return
            task = self.running.pop(spec.hash, None)
            line = self.counts.finish(spec, res) or (self.verbose and _run_line(self.counts.label(spec), res)) or None
            if self.plain:
                if line:
                    self.out.print(line, markup=False, highlight=False)
                if self.counts.done == self.counts.total:
                    self._line()
                return
            if task is not None:
                self.progress.remove_task(task)
            if line and line.startswith("failed "):
                self.progress.console.print(f"[red]failed[/] {escape(line[len('failed '):])}", highlight=False)
            elif line:
                self.progress.console.print(line, markup=False, highlight=False)
            self.progress.update(self.overall, completed=round(1000 * self.counts.fraction()), info=self.counts.tally(),
                                 count=f"{self.counts.done}/{self.counts.total} runs")

    # -- plain lines -----------------------------------------------------------------------------------------
    def _tick(self):
        while not self._stop.wait(self.every_s):
            with self._lock:
                if self.counts.done < self.counts.total:
                    self._line()

    def _line(self):
        c = self.counts
        elapsed = time.monotonic() - c.t0
        tally = c.tally()
        work = f" ({c.fraction():.0%} of the work)" if c.work and c.done < c.total else ""
        self.out.print(f"[{_duration(elapsed)}] {self.title}: {c.done}/{c.total} done{work}"
                       + (f" ({tally})" if tally else "") + f", {len(self.running)} running, "
                       + (c.eta() if c.done < c.total else "finished"), markup=False, highlight=False)
