"""The Python API, for notebooks: the same experiments as `bncli train` and `bncli sweep`, returning their results.

    >>> import bncli
    >>> r = bncli.train("quickstart", "train.steps=300", "train.seeds=[0,1,2]")
    >>> r.runs[0]["final_test_acc"], r.arms["before"]["final_test_acc"]["mean"]
    >>> fig = r.figure()                # a matplotlib Figure (shown by Jupyter)
    >>> df = r.to_dataframe()           # one row per run, when pandas is installed
    >>> bncli.load("results/quickstart") == r    # reopened from disk: the same runs
    >>> r.comparisons                   # the paired differences with the no-BN arm (the headline)
    >>> bncli.lrfind("quickstart").suggestions, bncli.report(only=["C7"])

A call in which any run failed raises `RunsFailed` (one line: the first error, the run's folder) carrying the
partial results as ``err.results``. It works from a notebook, ``python -c``, a ``python -`` heredoc and a script
without an ``if __name__ == "__main__":`` guard (the worker processes do not re-run the caller's script).

Results are written where the CLI writes them (``results/<name>`` unless ``out`` says otherwise), so a notebook
and the command line share their runs, and calling again resumes instead of training again.
"""

from __future__ import annotations

import html
import math
import os
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from . import safeio
from .config import load_config
from .errors import BncliError, UsageError
from .examples import locate
from .runs import Stale, run_rows, verify
from .runs.verify import read_config
from .runs.store import failure_path

# One call that trains at a time per process: the BLAS thread limit every run is computed with is process-wide, so
# two calls from two threads would change each other's rounding (a run computed with 2 BLAS threads is not the run
# its key names). A second concurrent call is refused in one line rather than queued behind a long sweep unseen.
_BUSY = threading.Lock()


@contextmanager
def _one_at_a_time(what: str):
    if not _BUSY.acquire(blocking=False):
        raise BncliError(f"bncli.{what}: another bncli call is running in this process (another thread); bncli "
                         "trains one experiment at a time per process (use workers= for parallel runs)")
    try:
        yield
    finally:
        _BUSY.release()


class RunsFailed(BncliError):
    """Some runs of a call failed: ``results`` holds what the call returns otherwise (the finished runs are kept on
    disk too, and calling again trains only the failed ones); ``failures`` one dict per failed run."""

    def __init__(self, message: str, results=None, failures=()):
        super().__init__(message)
        self.results = results
        self.failures = list(failures)


def _raise_if_failed(what: str, out: Path, failures: list[dict], total: int, results):
    if not failures:
        return results
    f = failures[0]
    point = "".join(f"{k}={v} " for k, v in (f.get("point") or {}).items())
    where = out / "runs" / str(f.get("hash"))
    error = " ".join(str(f.get("error")).split())  # one line, whatever the exception's text holds
    error = error if len(error) <= 300 else error[:297] + "..."
    raise RunsFailed(f"bncli.{what}: {len(failures)} of {total} runs failed; first: {point}{f.get('arm')} seed "
                     f"{f.get('seed')} (run folder {where}): {error}; the finished runs are kept (in "
                     f"err.results and in {out}): call again to retry the failed ones", results, failures)


@dataclass(eq=False)
class Results:
    """A finished `train` or `sweep`: ``runs`` holds one dict per planned run (arm, seed, swept values, status,
    final/best/tail accuracy, steps to target, ...); ``info`` what experiment.json or sweep.json holds;
    ``outcome`` the in-memory ExperimentResult / SweepResult when the runs were trained in this process."""
    kind: str  # "train" or "sweep"
    path: Path
    name: str
    runs: list[dict]
    info: dict = field(repr=False)
    failures: list[dict] = field(default_factory=list, repr=False)
    outcome: object = field(default=None, repr=False)

    @property
    def arms(self) -> dict:
        """Per-arm statistics over seeds (train): mean, sd and 95% interval of each metric, steps to target."""
        return self.info.get("arms", {})

    @property
    def usable(self) -> list[dict]:
        """Per-arm usable ranges (sweep)."""
        return self.info.get("usable_ranges", [])

    @property
    def comparisons(self) -> list[dict]:
        """The paired comparisons of each arm with the no-BN arm over seeds (train), as experiment.json holds them:
        metric, difference ("before - none"), n, mean (or median) and 95% interval, method."""
        return self.info.get("comparisons", [])

    def _repr_html_(self) -> str:
        """A compact table for Jupyter: per-arm statistics and the comparisons (train), usable ranges (sweep)."""
        head = f"<p><b>{html.escape(repr(self))}</b></p>"
        if self.failures:
            head += f"<p>{len(self.failures)} runs failed (see .failures)</p>"
        if self.kind == "train":
            rows = [[arm, _status(a.get("status")), _interval(a.get("final_test_acc")),
                     _interval(a.get("best_test_acc")), (a.get("steps_to_target") or {}).get("median_text", "—")]
                    for arm, a in self.arms.items()]
            body = _table(["arm", "runs", "final test acc (95% CI)", "best test acc (95% CI)",
                           "median steps to target"], rows)
            comps = [[c.get("difference", c.get("arm")), c.get("metric"), c.get("n"),
                      c["median_text"] if "median_text" in c else _interval(c)] for c in self.comparisons]
            if comps:
                body += _table(["paired by seed", "metric", "n", "estimate (95% CI)"], comps)
            return head + body
        rows = [[u.get("arm"), u.get("range_key"), _num(u.get("lo")), _num(u.get("hi")),
                 _interval({"mean": u.get("decades"), "ci_low": u.get("decades_ci_low"),
                            "ci_high": u.get("decades_ci_high")}), _num(u.get("best_value")),
                 _num(u.get("best_acc_mean"))] for u in self.usable]
        return head + _table(["arm", "swept", "usable from", "to", "decades (95% CI)", "best value", "best acc"], rows)

    def figure(self):
        """The experiment's figure as a matplotlib Figure: learning curves (train) or accuracy against the swept
        value with the usable ranges (sweep), drawn as `bncli plot` draws it. Nothing is written to disk."""
        from .plot import sweep_figure, train_figure

        return (train_figure if self.kind == "train" else sweep_figure)(self.path)

    def to_dataframe(self):
        """One row per run as a pandas DataFrame (pandas is not a dependency of bncli: install it to use this)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_dataframe() needs pandas, which bncli does not install: pip install pandas") \
                from None
        return pd.DataFrame(self.runs)

    def __eq__(self, other):
        # the same folder given as a relative or an absolute path is the same results
        return isinstance(other, Results) and (self.kind, self.path.resolve(), _resolved(self.runs)) == \
            (other.kind, other.path.resolve(), _resolved(other.runs))

    def __repr__(self):
        status = {}
        for r in self.runs:
            status[r["status"]] = status.get(r["status"], 0) + 1
        counts = ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
        return f"<bncli {self.kind} {self.name!r}: {len(self.runs)} runs ({counts}) in {self.path}>"


def _num(v) -> str:
    if v is None or isinstance(v, float) and math.isnan(v):
        return "—"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _interval(stat) -> str:
    if not isinstance(stat, dict) or stat.get("mean") is None:
        return "—"
    return f"{_num(stat['mean'])} [{_num(stat.get('ci_low'))}, {_num(stat.get('ci_high'))}]"


def _status(counts) -> str:
    return ", ".join(f"{n} {k}" for k, n in (counts or {}).items() if n) or "—"


def _table(columns: list[str], rows: list[list]) -> str:
    def cells(tag, values):
        return "".join(f"<{tag}>{html.escape(str(v))}</{tag}>" for v in values)

    return ("<table><thead><tr>" + cells("th", columns) + "</tr></thead><tbody>"
            + "".join(f"<tr>{cells('td', r)}</tr>" for r in rows) + "</tbody></table>")


@dataclass
class Plan:
    """The runs of a `train` or `sweep` before anything runs: what the CLI shows before it starts."""
    kind: str
    cfg: object
    src: object
    out: Path
    specs: list
    force: bool = False  # write into ``out`` even if it holds files bncli did not write (runs/owner.py)

    @property
    def todo(self) -> int:
        return sum(not s.done for s in self.specs)

    def workers(self, workers: int = 0) -> int:
        """Worker processes for the runs left: ``workers`` (0 = one per core), at most one per run."""
        return max(1, min(workers or os.cpu_count() or 1, self.todo))

    def run(self, workers: int = 0, executor="local", on_progress=None, on_done=None, force: bool = False) -> Results:
        """Train what is missing, write the tables and figure, return the results."""
        kw = dict(workers=self.workers(workers), executor=executor, on_progress=on_progress, on_done=on_done,
                  force=force or self.force)
        if self.kind == "train":
            from .experiment import run_experiment

            res = run_experiment(self.cfg, self.src, self.out, specs=self.specs, **kw)
            return Results("train", self.out, self.cfg.name, res.runs, _read_json(self.out / "experiment.json"),
                           res.failures, res)
        from .sweeps import run_sweep

        res = run_sweep(self.cfg, self.src, self.out, runs=self.specs, **kw)
        return Results("sweep", self.out, self.cfg.name, res.rows, _read_json(self.out / "sweep.json"), res.failed,
                       res)


def _resolved(runs: list[dict]) -> list[dict]:
    return [{**r, "run_dir": str(Path(r["run_dir"]).resolve())} if "run_dir" in r else r for r in runs]


def _check_args(what: str, config, overrides, out=None, workers=0):
    """The API's arguments, checked as the command line checks them: one UsageError naming the argument."""
    if not isinstance(config, (str, os.PathLike)) or not str(config):
        raise UsageError(f"bncli.{what}: config must be a YAML path or a shipped experiment's name such as "
                         f"'quickstart', not {_show(config)}")
    if isinstance(overrides, (str, bytes)) or not all(isinstance(o, str) for o in overrides):
        bad = overrides if isinstance(overrides, (str, bytes)) else next(o for o in overrides if not isinstance(o, str))
        raise UsageError(f"bncli.{what}: overrides are strings such as 'optimizer.lr=0.1', not {_show(bad)}")
    _check_out_workers(what, out, workers)


def _check_out_workers(what: str, out, workers):
    if out is not None and (not isinstance(out, (str, os.PathLike)) or not str(out).strip()):
        raise UsageError(f"bncli.{what}: out must be a folder path, not {_show(out)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise UsageError(f"bncli.{what}: workers must be a whole number >= 0 (0 = one per core), not "
                         f"{_show(workers)}")


def _show(v) -> str:
    text = repr(v)
    return (text if len(text) <= 60 else text[:56] + "...") + f" ({type(v).__name__})"


def plan(kind: str, config, overrides=(), out=None, force: bool = False) -> Plan:
    """Read the config (a YAML path or a shipped experiment's name), apply the overrides and plan every run; the
    runs already finished in ``out`` (default ``results/<name>``) are marked done."""
    if kind not in ("train", "sweep"):
        raise ValueError(f"kind {kind!r}: expected 'train' or 'sweep'")
    overrides = tuple(overrides) if isinstance(overrides, (list, tuple)) else overrides
    _check_args(kind, config, overrides, out)
    cfg, src = load_config(locate(config), list(overrides), sweep_overrides=kind == "sweep")
    out_dir = Path(out) if out is not None else Path("results") / cfg.name
    if kind == "train":
        from .experiment import plan_experiment

        return Plan(kind, cfg, src, out_dir, plan_experiment(cfg, src, out_dir), force)
    from .sweeps import plan_sweep

    return Plan(kind, cfg, src, out_dir, plan_sweep(cfg, src, out_dir), force)


def train(config, *overrides: str, out=None, workers: int = 0, executor="local", progress: bool = True,
          force: bool = False) -> Results:
    """Train every arm x seed of an experiment (a YAML path or a shipped name such as "quickstart"), resuming what
    is already in ``out``; overrides as on the command line ("optimizer.lr=0.05")."""
    _check_args("train", config, overrides, out, workers)
    _check_executor(executor)
    with _one_at_a_time("train"):
        p = plan("train", config, overrides, out, force)
        if p.cfg.sweep is not None:  # training the base point alone would read as the study (as `bncli train`)
            raise UsageError(f"bncli.train: {p.cfg.name} is a sweep ({', '.join(p.cfg.sweep.parameters)}); "
                             f"call bncli.sweep({str(config)!r}, ...), or pass 'sweep=null' to train its base point")
        r = p.run(workers, executor, on_done=_printer(p.cfg.name, p.todo, progress))
    return _raise_if_failed("train", p.out, r.failures, len(r.runs), r)


def sweep(config, *overrides: str, out=None, workers: int = 0, executor="local", progress: bool = True,
          force: bool = False) -> Results:
    """Run a hyperparameter sweep: the config's sweep section, plus swept overrides as on the command line
    ("optimizer.lr=logrange(1e-3,10,2)", "model.bn=[none,before]")."""
    _check_args("sweep", config, overrides, out, workers)
    _check_executor(executor)
    with _one_at_a_time("sweep"):
        p = plan("sweep", config, overrides, out, force)
        r = p.run(workers, executor, on_done=_printer(p.cfg.name, p.todo, progress))
    return _raise_if_failed("sweep", p.out, r.failures, len(r.runs), r)


def lrfind(config, *overrides: str, out=None, start: float = 1e-7, end: float = 10.0, iters: int = 100,
           force: bool = False):
    """The learning-rate range test of `bncli lrfind`: one short run per arm with a geometric learning-rate ramp
    from ``start`` to ``end`` over ``iters`` iterations, written to ``out`` (default ``results/<name>-lrfind``).
    Returns an LrFindResult: ``suggestions`` per arm, ``curves``, ``out_dir``."""
    _check_args("lrfind", config, overrides, out)
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UsageError(f"bncli.lrfind: {name} must be a finite number, not {_show(value)}")
    if not 0 < start < end:
        raise UsageError(f"bncli.lrfind: start {start:g} / end {end:g}: expected 0 < start < end")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 2:
        raise UsageError(f"bncli.lrfind: iters must be a whole number >= 2, not {_show(iters)}")
    from .lrfind import run_lrfind

    with _one_at_a_time("lrfind"):
        cfg, src = load_config(locate(config), list(overrides))
        out_dir = Path(out) if out is not None else Path("results") / f"{cfg.name}-lrfind"
        return run_lrfind(cfg, src, out_dir, force=force, start=float(start), end=float(end), iters=iters)


def report(mode: str = "quick", out=None, only=None, workers: int = 0, executor="local", experiments=None,
           progress: bool = True, force: bool = False) -> list:
    """`bncli report`: measure the claims of CLAIMS.md (``only``: claim ids such as ["C7"]; default all), resuming
    what is in ``out`` (default ``results/report-<mode>``), and write REPORT.md, report.html and the figures.
    Returns the judged claims (``id``, ``title``, ``verdict``, ``effects``)."""
    if mode not in ("quick", "full"):
        raise UsageError(f"bncli.report: mode must be 'quick' or 'full', not {_show(mode)}")
    only = [only] if isinstance(only, str) else only
    if only is not None and (not isinstance(only, (list, tuple)) or not only
                             or not all(isinstance(o, str) and o.strip() for o in only)):
        raise UsageError(f"bncli.report: only must be claim ids such as ['C7'], not {_show(only)}")
    _check_out_workers("report", out, workers)
    if experiments is not None and (not isinstance(experiments, (str, os.PathLike)) or not str(experiments)):
        raise UsageError(f"bncli.report: experiments must be a folder path, not {_show(experiments)}")
    _check_executor(executor)
    from .report import plan_report, run_report

    with _one_at_a_time("report"):
        out_dir, studies = plan_report(mode, out, experiments, list(only) if only else None)
        todo = len({r.hash for st in studies.values() for r in st.runs if not r.done})
        n_workers = max(1, min(workers or os.cpu_count() or 1, todo))
        claims = run_report(mode, out_dir, experiments, workers=n_workers, executor=executor, studies=studies,
                            on_done=_printer(f"report-{mode}", todo, progress), force=force)
    failed = _read_json(Path(out_dir) / "report.json", "report").get("failed") or []
    total = len({r.hash for st in studies.values() for r in st.runs})
    return _raise_if_failed("report", Path(out_dir), failed, total, claims)


def _check_executor(executor):
    from .executor import check_executor

    if executor is not None and not isinstance(executor, str):
        raise UsageError(f"executor must be 'local' or 'dask://HOST:PORT', not {_show(executor)}")
    check_executor(executor)


def load(results_dir) -> Results:
    """Reopen the folder of a `train` or `sweep` (by the CLI or this API) as the same Results object."""
    from .plot import kind_of, read_experiment, read_sweep_info

    if not isinstance(results_dir, (str, os.PathLike)) or not str(results_dir):
        raise UsageError(f"bncli.load: results_dir must be a folder path, not {_show(results_dir)}")
    d = Path(results_dir)
    if not d.is_dir():
        raise UsageError(f"{d}: not a directory")
    kind = kind_of(d)
    if kind not in ("train", "sweep"):
        raise UsageError(f"{d}: a {kind} folder; bncli.load reopens the folders of train and sweep")
    info = read_experiment(d) if kind == "train" else read_sweep_info(d)
    if "runs" not in info:
        raise UsageError(f"{d}: written by an older bncli (sweep.json lists no runs); run the sweep again into this "
                         "folder: it trains nothing that is finished")
    listing = d / ("experiment.json" if kind == "train" else "sweep.json")
    specs = [SimpleNamespace(point={k: v for k, v in r.items() if k not in ("arm", "seed", "hash", "status")},
                             arm=r["arm"], seed=r.get("seed"), hash=r["hash"], run_dir=d / "runs" / r["hash"],
                             done=r["status"] in ("ok", "diverged"))
             for r in info["runs"]]
    for s in specs:
        if s.done:
            _check_listed(listing, s)
    failures = [_read_json(failure_path(d, s.hash), kind) for s in specs if failure_path(d, s.hash).is_file()]
    return Results(kind, d, info["name"], run_rows(specs, failures), info, failures)


def _check_listed(listing: Path, s):
    """A run that ``listing`` calls finished is reopened only if its folder verifies and its own config says what
    the listing labels it (arm, seed, every swept value): the numbers shown are then the run's, under its name."""
    again = f"run `bncli {'train' if listing.name == 'experiment.json' else 'sweep'}` into {listing.parent} again"
    if not isinstance(s.hash, str) or not s.hash.isalnum():
        raise UsageError(f"{listing}: run hash {_show(s.hash)} is not a run folder's name; {again}")
    try:
        verify(s.run_dir, s.hash, current=False)  # results of older code are results: their files must be intact
        cfg = read_config(s.run_dir / "config.yaml").to_dict()
    except FileNotFoundError:
        raise UsageError(f"{s.run_dir}: missing, though {listing.name} lists it as finished; {again}") from None
    except Stale as e:
        raise UsageError(f"{s.run_dir}: {e}; {again} (it trains this run again)") from None
    want = {"arm": cfg["model"]["bn"][0], "seed": cfg["train"]["seeds"][0]}
    for key in s.point:
        node = cfg
        for part in str(key).split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:  # a key the resolved config drops (model.depth becomes model.hidden) is not checked
            want[key] = node
    got = {"arm": s.arm, "seed": s.seed, **s.point}
    for key, value in want.items():
        if got.get(key) != value or type(got.get(key)) is bool and type(value) is not bool:
            raise UsageError(f"{listing}: run {s.hash} is labelled {key}={_show(got.get(key))}, but its config.yaml "
                             f"says {_show(value)}; {again}")


def _read_json(path: Path, kind: str = "train") -> dict:
    """A JSON object bncli wrote into a results folder, read bounded; damage is one line naming the file."""
    try:
        doc = safeio.read_json(path)
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: damaged or not written by bncli ({e}); run `bncli {kind}` again") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: damaged or not written by bncli (expected a JSON object); run `bncli {kind}` "
                         "again")
    return doc


def _printer(name: str, total: int, enabled: bool):
    """One line that rewrites itself (a terminal, Jupyter's output area) as runs finish; no rich in the library.
    Into a file or a pipe (a script's log) plain lines instead, about 20 of them: a "\r" there joins every update
    into one long line."""
    if not enabled or not total:
        return None
    try:
        live = sys.stderr.isatty() or "ipykernel" in sys.modules
    except (AttributeError, ValueError):
        live = False
    every, done = max(1, total // 20), [0]

    def on_done(spec, res):
        done[0] += 1
        n = done[0]
        if live:
            print(f"\r{name}: {n}/{total} runs trained", end="\n" if n == total else "", file=sys.stderr, flush=True)
        elif n == total or n % every == 0:
            print(f"{name}: {n}/{total} runs trained", file=sys.stderr, flush=True)

    return on_done
