"""How runs and tables are written and read back: one layout, one CSV writer, one JSON writer, one NaN rule.

    <out>/runs/<hash>/config.yaml    the resolved single-run config (<hash> = its config hash)
                      metrics.csv    one row per evaluation (bit-identical for the same config, seed, numpy and BLAS
                                     kernel)
                      summary.json   the run's final numbers
                      meta.json      versions, config and code hash, seed, start/end, status, timings, BLAS threads,
                                     and under "platform" the BLAS library/version/kernel, numpy SIMD and CPU
                      <table>.csv    what the run measured besides its metrics (e.g. percentiles.csv)
    <out>/failed/<hash>.json         the error of a run that raised (retried, and removed, by the next invocation)

A run directory is created atomically, so it exists only when complete; <hash> is the run key (verify.run_key: the
config hash and the fingerprint of the data), and meta.json records the SHA-256 of every other file. A folder is
reused only if it verifies (runs/verify.py). The NaN rule: a missing or not-a-number value is an empty CSV cell and
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

from .. import atomic, safeio
from ..config import ExperimentConfig, to_yaml
from ..executor import blas_threads
from ..training import RunResult
from .provenance import code_hash, platform_now, versions
from .verify import FILE_LIMIT, META_LIMIT, Stale, meta_checksum, run_key, sha256, verify


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
    """A numeric CSV (metrics.csv) -> (columns, rows of floats; '' -> nan). Bounded (safeio); a file that does not
    end with a newline was cut short (bncli ends every row with one): ValueError, like any other damage."""
    text = safeio.read_text(path, FILE_LIMIT)
    if not text.endswith("\n"):
        raise ValueError("the file is empty" if not text else "the last line is cut short (no newline at its end)")
    r = csv.reader(io.StringIO(text, newline=""))
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
def check_run(run_dir, key: str | None = None) -> tuple[bool, Stale | None]:
    """(reusable, why not): (True, None) for a run folder that verifies, (False, None) where there is none yet,
    (False, Stale) for one that must be trained again (its reason says why)."""
    try:
        verify(run_dir, key)
    except FileNotFoundError:
        return False, None
    except Stale as e:
        return False, e
    except OSError as e:  # unreadable (permissions, a path through a file): not reusable, say why
        return False, Stale(f"cannot be read ({e.strerror or e})")
    return True, None


def is_current(run_dir, key: str | None = None) -> bool:
    """A finished run that verifies (runs/verify.py): this code, these data, untouched files."""
    return check_run(run_dir, key)[0]


def read_summary(run_dir) -> dict | None:
    try:
        s = safeio.read_json(Path(run_dir) / "summary.json", META_LIMIT, follow=False)
    except (OSError, ValueError):
        return None
    return s if isinstance(s, dict) else None


def write_run(run_dir, cfg: ExperimentConfig, result: RunResult, started: float, ended: float,
              data_fingerprint: str, threads: int | None = None):
    """Write the run folder atomically. It is reusable only under its run key's name (``run_key(cfg.hash(),
    data_fingerprint)``: what planning names it). ``threads``: the BLAS threads it was computed with (default: now)."""
    key = run_key(cfg.hash(), data_fingerprint)
    files = {
        "config.yaml": to_yaml(cfg),
        "metrics.csv": csv_text(result.columns, result.rows),
        "summary.json": dumps(result.summary),
        **{f"{name}.csv": csv_text(columns, rows) for name, (columns, rows) in result.tables.items()},
    }
    files = {k: v.encode("utf-8") for k, v in files.items()}
    meta = {
        "status": result.status,
        "arm": cfg.model.bn[0],
        "seed": cfg.train.seeds[0],
        "run_key": key,
        "data_fingerprint": data_fingerprint,
        "files": {k: sha256(v) for k, v in files.items()},
        "config_hash": cfg.hash(),
        "code_hash": code_hash(),
        "experiment": cfg.name,
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "ended": datetime.fromtimestamp(ended, timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": ended - started,
        "train_time_s": result.summary["time_s"],
        "eval_time_s": result.summary["eval_time_s"],
        "blas_threads": blas_threads() if threads is None else threads,
        "versions": versions(),
        "platform": platform_now(),
        "argv": sys.argv,
    }
    meta = jsonable(meta)
    meta["meta_sha256"] = meta_checksum(meta)
    atomic.write_dir(run_dir, {**files, "meta.json": dumps(meta)})


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
            # the plan's labels win over anything the file says (a summary naming another hash, a swept value)
            row.update({k: v for k, v in summary.items() if k not in row},
                       diverged=summary.get("status") == "diverged")
        else:
            row.update(status="failed" if s.hash in failed else "missing", diverged=False,
                       error=failed.get(s.hash, {}).get("error"))
        rows.append(row)
    return rows
