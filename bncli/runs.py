"""Where runs are written: one directory per run, created atomically with everything needed to trust it.

    <run dir>/config.yaml    the resolved single-run config
              metrics.csv    one row per evaluation (bit-identical for the same config, seed, numpy and BLAS kernel)
              summary.json   the run's final numbers
              meta.json      versions, config hash, seed, start/end, status, timings, BLAS threads, and under
                             "platform" what decides the rounding: BLAS library/version/kernel, numpy SIMD, CPU model
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import platform
import sys
import time
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import __version__, atomic
from .config import ExperimentConfig, to_yaml
from .data import load_dataset
from .executor import blas_threads
from .train import RunResult, train_run


def metrics_csv(columns, rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if isinstance(v, float) and math.isnan(v) else repr(v) if isinstance(v, float) else v
                    for v in r])
    return buf.getvalue()


def read_metrics(path):
    """metrics.csv -> (columns, rows of floats; '' -> nan)."""
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
    if isinstance(x, np.generic):
        return jsonable(x.item())
    return x


def dumps(x) -> str:
    return json.dumps(jsonable(x), indent=2) + "\n"


def versions() -> dict:
    import matplotlib
    import pydantic
    import yaml

    return {"bncli": __version__, "numpy": np.__version__, "python": platform.python_version(),
            "pyyaml": yaml.__version__, "pydantic": pydantic.VERSION, "matplotlib": matplotlib.__version__,
            "platform": platform.platform()}


# Environment variables that pin a BLAS kernel or numpy's SIMD code paths (and so the rounding) when set before
# the library loads.
KERNEL_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS",
               "NPY_DISABLE_CPU_FEATURES", "NPY_ENABLE_CPU_FEATURES")


def _guard(read):
    """``read()``, or None if it raises: provenance is recorded on a best-effort basis, never at a run's expense."""
    try:
        return read()
    except Exception:  # noqa: BLE001 - any failure of any reader means "unknown", nothing more
        return None


def _blas_libraries() -> list[dict]:
    """The BLAS libraries loaded in this process, as threadpoolctl reports them; ``architecture`` is the kernel
    OpenBLAS selected for this CPU (or was told to use by OPENBLAS_CORETYPE). The file's basename, not its path."""
    from threadpoolctl import threadpool_info

    return [{"internal_api": lib.get("internal_api"), "version": lib.get("version"),
             "architecture": lib.get("architecture"), "threading_layer": lib.get("threading_layer"),
             "num_threads": lib.get("num_threads"),
             "library": os.path.basename(lib["filepath"]) if lib.get("filepath") else None}
            for lib in threadpool_info() if lib.get("user_api") == "blas"]


def _numpy_build() -> dict:
    """numpy's build information (numpy >= 1.26): the BLAS it was built against, and the SIMD extensions its own
    loops dispatch to on this CPU (they decide the rounding too: np.power differs between AVX2 and AVX-512)."""
    info = np.show_config(mode="dicts")
    blas = info.get("Build Dependencies", {}).get("blas", {})
    simd = info.get("SIMD Extensions", {})
    return {"blas_name": blas.get("name"), "blas_version": blas.get("version"),
            "blas_configuration": blas.get("openblas configuration"),
            "simd_baseline": simd.get("baseline"), "simd_found": simd.get("found")}


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name":
                    return value.strip() or None
    except OSError:
        pass
    return platform.processor() or None


@lru_cache(maxsize=1)
def platform_info() -> dict:
    """What decides the rounding of a run, besides the config, the seed and numpy's version: the BLAS library,
    version and kernel, numpy's BLAS build and SIMD dispatch, the CPU, and the variables that pin a kernel.
    Read once per process (the result is shared: do not mutate it); never raises, an unreadable field is None.
    ``num_threads`` is the count when first called; ``write_run`` records the count at the time of writing."""
    return {
        "blas": _guard(_blas_libraries),
        "numpy_build": _guard(_numpy_build),
        "cpu_model": _guard(_cpu_model),
        "cpu_count": _guard(os.cpu_count),
        "machine": _guard(lambda: platform.machine() or None),
        "kernel_env": _guard(lambda: {k: os.environ[k] for k in KERNEL_VARS if k in os.environ}),
    }


# The modules whose code decides a run's numbers: the math, the training loop, the config defaults, the data.
_NUMERIC_SOURCES = ("core/*.py", "train.py", "config.py", "data/*.py")


@lru_cache(maxsize=1)
def code_hash() -> str:
    """Hash of the source that computes a run. A finished run whose meta.json records another hash was computed
    by other code (an upgrade, a local change), so sweeps and reports train it again instead of reusing it."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for path in sorted(p for pattern in _NUMERIC_SOURCES for p in root.glob(pattern)):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def is_current(run_dir) -> bool:
    """A finished run of this config by this code: summary.json exists and meta.json records this code hash."""
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").exists():
        return False
    try:
        return json.loads((run_dir / "meta.json").read_text()).get("code_hash") == code_hash()
    except (OSError, ValueError):
        return False


@lru_cache(maxsize=4)
def _dataset(data_json: str, dtype: str):
    from .config import DataConfig

    return load_dataset(DataConfig.model_validate_json(data_json), dtype)


def dataset_for(cfg: ExperimentConfig):
    """Loaded once per process and data config (a worker trains many runs on the same data)."""
    return _dataset(cfg.data.model_dump_json(), cfg.train.dtype)


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
        # the BLAS thread count can change within a process (threadpool_limits), so that part is read afresh
        "platform": {**platform_info(), "blas": _guard(_blas_libraries)},
        "argv": sys.argv,
    }
    atomic.write_dir(run_dir, {
        "config.yaml": to_yaml(cfg),
        "metrics.csv": metrics_csv(result.columns, result.rows),
        "summary.json": dumps(result.summary),
        "meta.json": dumps(meta),
        **result.files,
    })


def run_task(task: dict, report=None) -> dict:
    """Worker entry point: ``task`` = {"config": resolved single-run config dict, "run_dir": path}.
    Trains, writes the run directory atomically, returns the summary (plus the run dir and BLAS threads)."""
    cfg = ExperimentConfig.model_validate(task["config"])
    started = time.time()
    data = dataset_for(cfg)
    progress = None
    if report is not None:
        progress = lambda step, total, info: report(step, total, info.get("train_loss"), info.get("test_acc"))  # noqa: E731
    result = train_run(cfg, data, progress=progress)
    write_run(task["run_dir"], cfg, result, started, time.time())
    return {**result.summary, "run_dir": str(task["run_dir"]), "config_hash": cfg.hash(),
            "blas_threads": blas_threads()}
