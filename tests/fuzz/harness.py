"""Driving the real command line with hostile input: a subprocess per case, with a timeout and an address-space
cap, and the checks every case must pass — an exit code from the expected set, at most one line on stderr (starting
"error: "), no traceback, no "unexpected" (a bug), no hang, no memory blow-up.

Soak mode: BNCLI_FUZZ=soak multiplies the generated cases (see tests/fuzz/README.md)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings

SOAK = os.environ.get("BNCLI_FUZZ") == "soak"
TIMEOUT_S = 60 if SOAK else 30  # a case that has not ended by then has hung
MEM_BYTES = 2 << 30  # address space per process: Python + numpy + the bundled data fit in a fraction of it
TALLY: Counter = Counter()  # (family, outcome) -> cases; printed at the end of the session (conftest.py)


def fuzz(n: int) -> settings:
    """Hypothesis settings for a property whose every example is a subprocess: n examples in CI, the same ones on
    every run (derandomized); 25 n fresh random ones in soak mode. No per-example deadline."""
    return settings(max_examples=n * 25 if SOAK else n, derandomize=not SOAK, deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much])


@dataclass
class Outcome:
    args: list
    code: int | None  # None: killed after TIMEOUT_S
    stdout: str
    stderr: str
    seconds: float


def _limits(mem_bytes, file_bytes):
    def apply():
        os.setsid()  # its own process group: a hung case is killed with all its workers
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
        if file_bytes is not None:  # a "full disk": writes past this size fail with EFBIG
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    return apply


# matplotlib's font cache is built once for the session (conftest.py), not by a case under a file-size limit
MPL_DIR: dict = {}


def env_for(cwd: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR", "BNCLI_DEBUG")}
    env.update(MPL_DIR)
    env.update(MPLBACKEND="Agg", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               XDG_STATE_HOME=str(cwd / ".state"), XDG_CACHE_HOME=str(cwd / ".cache"))
    env.pop("BNCLI_DATA", None)
    return env


def spawn(args, cwd: Path, *, mem_bytes=MEM_BYTES, file_bytes=None):
    """Start ``bncli ARGS`` in its own process group under the limits; (process, args as text, start time)."""
    args = [str(a) for a in args]
    proc = subprocess.Popen([sys.executable, "-m", "bncli", *args], cwd=cwd, env=env_for(Path(cwd)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                            preexec_fn=_limits(mem_bytes, file_bytes))
    return proc, args, time.monotonic()


def wait(proc, args, t0, timeout=TIMEOUT_S) -> Outcome:
    """Its outcome; a case still running after ``timeout`` has hung and is killed with its workers."""
    try:
        out, err = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = None
    return Outcome(args, code, out, err, time.monotonic() - t0)


def bncli(args, cwd: Path, *, timeout=TIMEOUT_S, mem_bytes=MEM_BYTES, file_bytes=None) -> Outcome:
    return wait(*spawn(args, cwd, mem_bytes=mem_bytes, file_bytes=file_bytes), timeout=timeout)


def check(o: Outcome, family: str, codes=(2,), *, says=None) -> Outcome:
    """The promise for hostile input. ``codes``: the exit codes this family may end with. ``says``: text the
    error line must contain (e.g. the file or key it names)."""
    what = f"bncli {' '.join(o.args)[:300]}"
    try:
        assert o.code is not None, f"{what}: no exit within {TIMEOUT_S} s (a hang)"
        assert "Traceback" not in o.stderr + o.stdout, f"{what}: traceback\n{o.stderr[-3000:]}"
        assert "MemoryError" not in o.stderr, f"{what}: memory blow-up\n{o.stderr[-2000:]}"
        assert o.code in codes, f"{what}: exit {o.code}, expected one of {codes}\n{o.stderr[-2000:]}"
        if o.code != 0:
            lines = [ln for ln in o.stderr.splitlines() if ln.strip()]
            assert lines and lines[0].startswith(("error: ", "interrupted")), f"{what}: {o.stderr[-2000:]}"
            assert "a bug in bncli" not in lines[0], f"{what}: reported as a bug: {lines[0]}"
            assert sum(ln.startswith(("error: ", "interrupted")) for ln in lines) == 1, f"{what}: {o.stderr[-2000:]}"
            if says is not None:
                assert says in lines[0], f"{what}: {lines[0]!r} does not name {says!r}"
    except AssertionError:
        TALLY[family, "failed"] += 1
        raise
    TALLY[family, "clean"] += 1
    return o
