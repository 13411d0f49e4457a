"""`bncli report`: every claim of CLAIMS.md measured, pictured and judged.

    results/report-quick/   (or report-full)
        REPORT.md, report.html (figures embedded), report.json (every number)
        figures/            one or more figures per claim
        runs/<hash>/        every training run, shared by all studies (a run needed twice is trained once;
                            finished runs are reused when the report is run again)
        studies/<name>/     per-study summary.csv, range.csv, ranges.csv, sweep.json (as `bncli sweep`)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import atomic
from ..config import ExperimentConfig, load_config
from ..errors import UsageError
from ..executor import execute
from ..experiment import check_with_data, prepare_output
from ..runs import is_current, run_task
from ..sweep import SweepRun, collect, plan

STUDIES = ["c01_faster_training", "c02_lr_range", "c03_init_scale", "c04_regularization", "c05_test_time",
           "c06_placement", "c07_bias", "c08_gamma_beta", "c09_covariate_shift", "c10_depth", "c11_batch_size",
           "c12_cost"]


@dataclass
class Study:
    name: str
    cfg: ExperimentConfig
    runs: list[SweepRun]
    path: Path
    rows: list[dict] = field(default_factory=list)  # filled after running: run summaries with their point


def _matches(study: str, wanted: str) -> bool:
    """--only C7, c7, c07 or c07_bias all select c07_bias."""
    import re

    m = re.fullmatch(r"[cC]0*(\d+)", wanted.strip())
    if m:
        return study.startswith(f"c{int(m[1]):02d}_")
    return study.startswith(wanted.lower())


def load_study(experiments: Path, name: str, full: bool, runs_dir: Path) -> Study:
    path = experiments / f"{name}.yaml"
    cfg, src = load_config(path)
    if full and cfg.full:
        cfg, src = load_config(path, cfg.full)
    check_with_data(cfg, src)
    if cfg.sweep is not None:
        runs = plan(cfg, src, runs_dir.parent, runs_dir=runs_dir)
    else:
        runs = []
        for arm in cfg.model.bn:
            for seed in cfg.train.seeds:
                rc = cfg.run_config(arm, seed)
                h = rc.hash()
                runs.append(SweepRun({}, arm, seed, rc, h, runs_dir / h, is_current(runs_dir / h)))
    return Study(name, cfg, runs, path)


# Studies whose claims are measured in this process (deterministic checks, timings) rather than by training runs.
IN_PROCESS = {"c08_gamma_beta", "c12_cost"}


def run_report(mode="quick", out_dir=None, experiments="experiments", workers=1, executor=None, only=None,
               on_plan=None, on_progress=None, on_done=None):
    """Run what is missing (in parallel, through the run cache), analyse every claim, write the report."""
    from .claims import analyse
    from .render import write_report

    t0 = time.perf_counter()
    experiments = Path(experiments)
    if not experiments.is_dir():
        raise UsageError(f"{experiments}: the claim experiments (c01_*.yaml ...) are not here; run from the "
                         "repository root or pass --experiments DIR")
    out_dir = Path(out_dir or f"results/report-{mode}")
    prepare_output(out_dir)
    runs_dir = out_dir / "runs"
    names = [n for n in STUDIES if not only or any(_matches(n, o) for o in only)]
    if not names:
        raise UsageError(f"--only {' '.join(only)}: no claim matches (expected claim ids C1 ... C12, or study names such as c07_bias)")
    studies = {n: load_study(experiments, n, mode == "full", runs_dir) for n in names}
    todo, seen = [], set()
    for s in studies.values():
        if s.name in IN_PROCESS:
            continue
        for r in s.runs:
            if not r.done and r.hash not in seen:
                seen.add(r.hash)
                todo.append(r)
    if on_plan:
        on_plan(studies, todo)
    tasks = [{"config": r.config.to_dict(), "run_dir": str(r.run_dir)} for r in todo]
    results = execute(tasks, run_task, workers=min(workers, max(1, len(tasks))), executor=executor,
                      on_progress=on_progress, on_done=on_done)
    failed = [{"hash": r.hash, "point": r.point, "arm": r.arm, "seed": r.seed, "error": f"{type(e).__name__}: {e}"}
              for r, e in zip(todo, results) if isinstance(e, BaseException)]
    for s in studies.values():
        gather(s, out_dir, failed)
    atomic.check_writable(out_dir / "figures")
    claims = analyse(studies, out_dir, mode)
    return write_report(claims, studies, out_dir, mode, elapsed=time.perf_counter() - t0, n_trained=len(todo),
                        failed=failed)


def gather(s: Study, out_dir: Path, failed: list[dict], write=True):
    """Each run's full summary.json with its sweep point, arm and seed; with ``write``, also the per-study tables
    as `bncli sweep` writes them."""
    import json

    if s.name in IN_PROCESS:
        return
    if write and s.cfg.sweep is not None:
        collect(s.cfg, out_dir / "studies" / s.name, s.runs, failed)
    s.rows = []
    for r in s.runs:
        p = r.run_dir / "summary.json"
        summary = json.loads(p.read_text()) if p.exists() else {"status": "failed"}
        s.rows.append({**summary, **r.point, "arm": r.arm, "seed": r.seed, "hash": r.hash,
                       "run_dir": str(r.run_dir), "diverged": summary.get("status") == "diverged"})


def plot_report(d: Path, out: Path, fmt: str):
    """`bncli plot results/report-quick`: redraw every claim figure from the stored runs and measurements."""
    import json

    from .claims import analyse

    info = json.loads((d / "report.json").read_text())
    experiments = Path(info["experiments"])
    if not experiments.is_dir():  # the report was moved: fall back to the current folder's experiments/
        experiments = Path("experiments")
    studies = {n: load_study(experiments, n, info["mode"] == "full", d / "runs") for n in info["studies"]}
    for s in studies.values():
        gather(s, d, [], write=False)  # plotting reads the report, never rewrites it
    claims = analyse(studies, d, info["mode"], fig_dir=Path(out) / "figures", fmt=fmt)
    return [Path(p) for c in claims for p in c.figures]
