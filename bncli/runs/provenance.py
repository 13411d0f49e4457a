"""What a run records about where it was computed: package versions, the BLAS kernel, numpy's SIMD dispatch, the
CPU (they decide the rounding), and the hash of the code that computes a run (a run by other code is redone)."""

from __future__ import annotations

import hashlib
import os
import platform
from functools import lru_cache
from pathlib import Path

import numpy as np

from .._version import __version__


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
_NUMERIC_SOURCES = ("core/*.py", "training.py", "stacking.py", "config.py", "data/*.py")


@lru_cache(maxsize=1)
def code_hash() -> str:
    """Hash of the source that computes a run. A finished run whose meta.json records another hash was computed
    by other code (an upgrade, a local change), so sweeps and reports train it again instead of reusing it."""
    root = Path(__file__).parent.parent  # the bncli package
    h = hashlib.sha256()
    for path in sorted(p for pattern in _NUMERIC_SOURCES for p in root.glob(pattern)):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def platform_now() -> dict:
    """``platform_info()`` with the BLAS part read afresh: its thread count can change within a process
    (threadpool_limits), so a run records the count it was computed with."""
    return {**platform_info(), "blas": _guard(_blas_libraries)}
