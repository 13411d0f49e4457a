"""Dispatching: the runs of a plan that are not done go to the local process pool or a Dask cluster through one
function; each worker trains and writes its run directory; failures are collected (and recorded) in one place."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .. import atomic
from ..config import ExperimentConfig
from ..errors import BncliError
from ..executor import blas_threads, execute, one_blas_thread
from ..training import train_run
from .inputs import data_fingerprint, dataset_for
from .store import dumps, failure_path, write_run


def run_task(task: dict, report=None) -> dict:
    """Worker entry point: ``task`` = {"config": resolved single-run config dict, "run_dir": path, and optionally
    "data_fingerprint": the plan's}. Trains, writes the run directory atomically, returns the summary (plus the run
    dir and BLAS threads). ``report(step, total, train_loss, test_acc)`` is called now and then.

    A run is written only if it was computed with one BLAS thread (the count changes the rounding: a run computed
    with two is not the run its key names) and on the data the plan fingerprinted (files replaced meanwhile)."""
    cfg = ExperimentConfig.model_validate(task["config"])
    started = time.time()
    data = dataset_for(cfg)
    fp = data_fingerprint(cfg)
    if task.get("data_fingerprint", fp) != fp:
        raise BncliError("the data changed after the run was planned (another fingerprint); run the command again")
    progress = None
    if report is not None:
        progress = lambda step, total, info: report(step, total, info.get("train_loss"), info.get("test_acc"))  # noqa: E731
    with one_blas_thread():  # the executors set it too; a direct call (a test, a notebook) must not depend on that
        threads = blas_threads()
        result = train_run(cfg, data, progress=progress)
        after = blas_threads()
    if threads != 1 or after != 1:
        raise BncliError(f"computed with {threads if threads != 1 else after} BLAS threads instead of 1 (another "
                         "thread of this process changed the limit?); not stored")
    write_run(task["run_dir"], cfg, result, started, time.time(), fp, threads)
    return {**result.summary, "run_dir": str(task["run_dir"]), "config_hash": cfg.hash(), "blas_threads": threads}


def _absolute_data(config: dict) -> dict:
    path = config.get("data", {}).get("path")
    if path:  # data.path is not part of the run key: making it absolute changes no run's identity
        config["data"]["path"] = os.path.abspath(os.path.expanduser(path))
    return config


def failure(spec, error: BaseException) -> dict:
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, OSError) and not error.filename:  # e.g. a full disk while writing: say where
        text += f" (run folder {spec.run_dir})"
    return {"hash": spec.hash, "point": spec.point, "arm": spec.arm, "seed": spec.seed, "error": text}


def dispatch(specs, out_dir, *, workers=1, executor=None, on_progress=None, on_done=None) -> list[dict]:
    """Train every run of ``specs`` that is not done; mark the ones that finish done. Returns the failures (also
    written to ``out_dir/failed/<hash>.json``, and removed there once the run succeeds). ``on_progress(spec, step,
    total, loss, acc)`` and ``on_done(spec, summary_or_exception)`` are called in this process. Ctrl-C (or a kill)
    stops the dispatch; every run already finished is on disk and the next call skips it."""
    out_dir = Path(out_dir)
    todo, seen = [], set()
    for s in specs:
        if s.done:
            failure_path(out_dir, s.hash).unlink(missing_ok=True)
        elif s.hash not in seen:
            seen.add(s.hash)
            todo.append(s)
    if not todo:
        return []  # nothing to train: no worker pool, no cluster connection
    for runs_dir in sorted({s.run_dir.parent for s in todo}):
        atomic.clean_stale(runs_dir)  # leftovers of runs killed while writing
    # Absolute paths: a worker of a cluster runs in its own folder, and must write and read where this process means
    tasks = [{"config": _absolute_data(s.config.to_dict()), "run_dir": str(s.run_dir.absolute()),
              "data_fingerprint": s.data_fingerprint} for s in todo]
    progress = (lambda i, *msg: on_progress(todo[i], *msg)) if on_progress else None
    done = (lambda i, res: on_done(todo[i], res)) if on_done else None
    results = execute(tasks, run_task, workers=min(workers, max(len(tasks), 1)), executor=executor,
                      on_progress=progress, on_done=done)
    failures, finished = [], set()
    for s, res in zip(todo, results):
        if isinstance(res, BaseException):
            failures.append(failure(s, res))
            atomic.write_text(failure_path(out_dir, s.hash), dumps(failures[-1]))
        else:
            failure_path(out_dir, s.hash).unlink(missing_ok=True)
            finished.add(s.hash)
    for s in specs:  # a run planned twice (by two studies of a report) is done for both
        s.done = s.done or s.hash in finished
    return failures
