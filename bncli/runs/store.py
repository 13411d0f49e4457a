"""How runs and tables are written and read back: one layout, one CSV writer, one JSON writer, one NaN rule.

    <out>/runs/<hash>/config.yaml    the resolved single-run config (<hash> = its config hash)
                      metrics.csv    one row per evaluation (bit-identical for the same config, seed, numpy and BLAS
                                     kernel)
                      summary.json   the run's final numbers
                      meta.json      versions, config and code hash, seed, start/end, status, timings, BLAS threads,
                                     and under "platform" the BLAS library/version/kernel, numpy SIMD and CPU
                      <table>.csv    what the run measured besides its metrics (e.g. percentiles.csv)
    <out>/failed/<hash>.json         the error of a run that raised (retried, and removed, by the next invocation)

A run directory is created atomically, so it exists only when complete; it is *current* when its meta.json records
the hash of the code that computes runs now. The NaN rule: a missing or not-a-number value is an empty CSV cell and
a JSON null (infinities too in JSON, which has no literal for them).
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import atomic
from ..config import ExperimentConfig, to_yaml
from ..executor import blas_threads
from ..training import RunResult
from .provenance import code_hash, platform_now, versions


# -- the one CSV writer and the one JSON writer ---------------------------------------------------------------------
def _cell(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return repr(float(v))  # shortest round-trip text; np.float64 prints as a plain number too
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    return v


def csv_text(columns, rows) -> str:
    """``rows`` are dicts (keys not in ``columns`` ignored, missing ones empty) or sequences in column order."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(v) for v in ([r.get(c) for c in columns] if isinstance(r, dict) else r)])
    return buf.getvalue()


def dict_csv(rows: list[dict], columns=None) -> str:
    """A table of dicts with the first row's keys as columns (or ``columns``); an empty table is an empty file."""
    columns = list(columns if columns is not None else (rows[0] if rows else []))
    return csv_text(columns, rows) if columns else ""


def read_metrics(path):
    """A numeric CSV (metrics.csv) -> (columns, rows of floats; '' -> nan)."""
    with open(path, newline="") as f:
        r = csv.reader(f)
        columns = next(r)
        rows = [[float(v) if v != "" else math.nan for v in row] for row in r]
    return columns, rows


def jsonable(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        return jsonable(x.item())
    if isinstance(x, Path):
        return str(x)
    return x


def dumps(x) -> str:
    return json.dumps(jsonable(x), indent=2) + "\n"


# -- run directories ------------------------------------------------------------------------------------------------
def is_current(run_dir) -> bool:
    """A finished run of this config by this code: summary.json exists and meta.json records this code hash."""
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").exists():
        return False
    try:
        return json.loads((run_dir / "meta.json").read_text()).get("code_hash") == code_hash()
    except (OSError, ValueError, AttributeError):
        return False


def read_summary(run_dir) -> dict | None:
    try:
        s = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return s if isinstance(s, dict) else None


def write_run(run_dir, cfg: ExperimentConfig, result: RunResult, started: float, ended: float):
    meta = {
        "status": result.status,
        "arm": cfg.model.bn[0],
        "seed": cfg.train.seeds[0],
        "config_hash": cfg.hash(),
        "code_hash": code_hash(),
        "experiment": cfg.name,
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "ended": datetime.fromtimestamp(ended, timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": ended - started,
        "train_time_s": result.summary["time_s"],
        "eval_time_s": result.summary["eval_time_s"],
        "blas_threads": blas_threads(),
        "versions": versions(),
        "platform": platform_now(),
        "argv": sys.argv,
    }
    atomic.write_dir(run_dir, {
        "config.yaml": to_yaml(cfg),
        "metrics.csv": csv_text(result.columns, result.rows),
        "summary.json": dumps(result.summary),
        "meta.json": dumps(meta),
        **{f"{name}.csv": csv_text(columns, rows) for name, (columns, rows) in result.tables.items()},
    })


def failure_path(out_dir, run_hash: str) -> Path:
    return Path(out_dir) / "failed" / f"{run_hash}.json"


def run_rows(specs, failures=()) -> list[dict]:
    """One row per planned run, in plan order: its sweep point, arm, seed, hash and run_dir, then its summary.json
    when the run is done by this code, else ``status`` "failed" (with the error) or "missing". Only the planned runs:
    other directories under runs/ (older budgets, older code) are a cache, never read here."""
    failed = {f["hash"]: f for f in failures}
    rows = []
    for s in specs:
        row = {**s.point, "arm": s.arm, "seed": s.seed, "hash": s.hash, "run_dir": str(s.run_dir)}
        summary = read_summary(s.run_dir) if s.done else None
        if summary is not None:
            row.update(summary, arm=s.arm, seed=s.seed, diverged=summary.get("status") == "diverged")
        else:
            row.update(status="failed" if s.hash in failed else "missing", diverged=False,
                       error=failed.get(s.hash, {}).get("error"))
        rows.append(row)
    return rows
