"""The Python API, for notebooks: the same experiments as `bncli train` and `bncli sweep`, returning their results.

    >>> import bncli
    >>> r = bncli.train("quickstart", "train.steps=300", "train.seeds=[0,1,2]")
    >>> r.runs[0]["final_test_acc"], r.arms["before"]["final_test_acc"]["mean"]
    >>> fig = r.figure()                # a matplotlib Figure (shown by Jupyter)
    >>> df = r.to_dataframe()           # one row per run, when pandas is installed
    >>> bncli.load("results/quickstart") == r    # reopened from disk: the same runs

Results are written where the CLI writes them (``results/<name>`` unless ``out`` says otherwise), so a notebook
and the command line share their runs, and calling again resumes instead of training again.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from .config import load_config
from .errors import UsageError
from .examples import locate
from .runs import run_rows
from .runs.store import failure_path


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
        return isinstance(other, Results) and (self.kind, self.path.resolve(), self.runs) == \
            (other.kind, other.path.resolve(), other.runs)

    def __repr__(self):
        status = {}
        for r in self.runs:
            status[r["status"]] = status.get(r["status"], 0) + 1
        counts = ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
        return f"<bncli {self.kind} {self.name!r}: {len(self.runs)} runs ({counts}) in {self.path}>"


@dataclass
class Plan:
    """The runs of a `train` or `sweep` before anything runs: what the CLI shows before it starts."""
    kind: str
    cfg: object
    src: object
    out: Path
    specs: list

    @property
    def todo(self) -> int:
        return sum(not s.done for s in self.specs)

    def workers(self, workers: int = 0) -> int:
        """Worker processes for the runs left: ``workers`` (0 = one per core), at most one per run."""
        return max(1, min(workers or os.cpu_count() or 1, self.todo))

    def run(self, workers: int = 0, executor="local", on_progress=None, on_done=None) -> Results:
        """Train what is missing, write the tables and figure, return the results."""
        kw = dict(workers=self.workers(workers), executor=executor, on_progress=on_progress, on_done=on_done)
        if self.kind == "train":
            from .experiment import run_experiment

            res = run_experiment(self.cfg, self.src, self.out, specs=self.specs, **kw)
            return Results("train", self.out, self.cfg.name, res.runs, _read_json(self.out / "experiment.json"),
                           res.failures, res)
        from .sweeps import run_sweep

        res = run_sweep(self.cfg, self.src, self.out, runs=self.specs, **kw)
        return Results("sweep", self.out, self.cfg.name, res.rows, _read_json(self.out / "sweep.json"), res.failed,
                       res)


def plan(kind: str, config, overrides=(), out=None) -> Plan:
    """Read the config (a YAML path or a shipped experiment's name), apply the overrides and plan every run; the
    runs already finished in ``out`` (default ``results/<name>``) are marked done."""
    if kind not in ("train", "sweep"):
        raise ValueError(f"kind {kind!r}: expected 'train' or 'sweep'")
    cfg, src = load_config(locate(config), list(overrides), sweep_overrides=kind == "sweep")
    out_dir = Path(out) if out is not None else Path("results") / cfg.name
    if kind == "train":
        from .experiment import plan_experiment

        return Plan(kind, cfg, src, out_dir, plan_experiment(cfg, src, out_dir))
    from .sweeps import plan_sweep

    return Plan(kind, cfg, src, out_dir, plan_sweep(cfg, src, out_dir))


def train(config, *overrides: str, out=None, workers: int = 0, executor="local", progress: bool = True) -> Results:
    """Train every arm x seed of an experiment (a YAML path or a shipped name such as "quickstart"), resuming what
    is already in ``out``; overrides as on the command line ("optimizer.lr=0.05")."""
    p = plan("train", config, overrides, out)
    return p.run(workers, executor, on_done=_printer(p, progress))


def sweep(config, *overrides: str, out=None, workers: int = 0, executor="local", progress: bool = True) -> Results:
    """Run a hyperparameter sweep: the config's sweep section, plus swept overrides as on the command line
    ("optimizer.lr=logrange(1e-3,10,2)", "model.bn=[none,before]")."""
    p = plan("sweep", config, overrides, out)
    return p.run(workers, executor, on_done=_printer(p, progress))


def load(results_dir) -> Results:
    """Reopen the folder of a `train` or `sweep` (by the CLI or this API) as the same Results object."""
    from .plot import kind_of, read_experiment, read_sweep_info

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
    specs = [SimpleNamespace(point={k: v for k, v in r.items() if k not in ("arm", "seed", "hash", "status")},
                             arm=r["arm"], seed=r.get("seed"), hash=r["hash"], run_dir=d / "runs" / r["hash"],
                             done=r["status"] in ("ok", "diverged"))
             for r in info["runs"]]
    failures = [_read_json(failure_path(d, s.hash)) for s in specs if failure_path(d, s.hash).is_file()]
    return Results(kind, d, info["name"], run_rows(specs, failures), info, failures)


def _read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


def _printer(p: Plan, enabled: bool):
    """One line that rewrites itself (a terminal, Jupyter's output area) as runs finish; no rich in the library."""
    total = p.todo
    if not enabled or not total:
        return None
    done = [0]

    def on_done(spec, res):
        done[0] += 1
        print(f"\r{p.cfg.name}: {done[0]}/{total} runs trained", end="\n" if done[0] == total else "",
              file=sys.stderr, flush=True)

    return on_done
