"""Faults from outside: Ctrl-C (SIGINT to the whole foreground process group, as a terminal sends it) at several
moments of a sweep, and a full disk while a worker writes its run. Each ends in one line and its exit code (130
interrupted, 1 for failed runs), never a traceback; finished runs are kept and nothing half-written is left.

The Ctrl-C cases are real processes (the point is what the operating system delivers to every process of the group);
the full disk is injected into the spawned workers only, through a sitecustomize module on their PYTHONPATH."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from sweep_helpers import (bncli_cmd, check_complete, group_gone, hidden_leftovers, kill_group, proc_env, read_csv,
                           run_dirs, snapshot_runs, workers_of, write_config)

from bncli.executor import execute

LINUX = os.path.exists(f"/proc/{os.getpid()}/task")
pytestmark = pytest.mark.skipif(not LINUX, reason="process groups and /proc: Linux")

# A few seconds of work on two workers: 3 learning rates x 2 arms x 2 seeds, 3,000 steps each.
SWEEP = ["optimizer.lr=0.01,0.03,0.1", "train.steps=3000"]


def start_sweep(tmp_path: Path, env=None):
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    args = ["sweep", cfg, *SWEEP, "--out", out, "-j", "2"]
    proc = subprocess.Popen(bncli_cmd(*args), cwd=tmp_path, env=env or proc_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # its own process group
    return proc, out, args


def wait_until(proc, what, timeout=60):
    t0 = time.monotonic()
    while not what():
        assert proc.poll() is None, f"the sweep ended first: {proc.returncode} {proc.communicate()}"
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.0005)


# -- Ctrl-C ---------------------------------------------------------------------------------------------------------
MOMENTS = [
    pytest.param("worker starting", 0.0, id="the-instant-the-first-worker-exists"),
    pytest.param("worker starting", 0.03, id="first-worker-importing"),
    pytest.param("worker starting", 0.15, id="first-worker-importing-numpy"),
    pytest.param("all workers", 0.0, id="both-workers-just-created"),
    pytest.param("start", 0.5, id="0.5s-after-start"),
    pytest.param("first run", 0.0, id="a-run-just-finished"),
    pytest.param("start", 0.1, id="0.1s-after-start-parent-importing"),
]


@pytest.mark.parametrize("moment, delay", MOMENTS)
def test_ctrl_c_to_the_process_group_ends_in_one_line_exit_130(tmp_path, moment, delay):
    proc, out, _ = start_sweep(tmp_path)
    try:
        if moment == "worker starting":
            wait_until(proc, lambda: workers_of(proc.pid))
        elif moment == "all workers":
            wait_until(proc, lambda: len(workers_of(proc.pid)) >= 2)
        elif moment == "first run":
            wait_until(proc, lambda: run_dirs(out))
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    except BaseException:
        kill_group(proc)
        raise
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr and "Fatal" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("[")]  # [..s] progress lines
    assert len(lines) == 1 and lines[0].startswith("interrupted"), stderr
    assert group_gone(proc.pid), "a worker outlived the interrupted sweep"
    for d in run_dirs(out):  # every run kept is complete (they are written atomically)
        check_complete(d)


def test_after_ctrl_c_the_sweep_resumes_and_keeps_the_finished_runs(tmp_path):
    proc, out, args = start_sweep(tmp_path)
    try:
        wait_until(proc, lambda: len(run_dirs(out)) >= 2)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    except BaseException:
        kill_group(proc)
        raise
    assert proc.returncode == 130, stderr
    kept = snapshot_runs(out)
    assert 2 <= len(kept) < 12
    again = subprocess.run(bncli_cmd(*args), cwd=tmp_path, env=proc_env(), capture_output=True, text=True,
                           timeout=180)
    assert again.returncode == 0, again.stderr
    assert f"{len(kept)} already done" in again.stdout
    after = snapshot_runs(out)
    assert len(after) == 12 and {h: after[h] for h in kept} == kept  # the finished runs are not trained again


# -- a full disk while a worker writes its run -------------------------------------------------------------------------
def _enospc_task(task, report):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"/somewhere/{task}")


def test_an_oserror_in_a_worker_comes_back_as_the_runs_result():
    results = execute(["a", "b"], _enospc_task, workers=2)
    assert [type(r) for r in results] == [OSError, OSError]
    assert all(r.errno == errno.ENOSPC and r.filename == f"/somewhere/{t}" for r, t in zip(results, "ab"))


FULL_DISK_HOOK = textwrap.dedent("""\
    # Loaded at start-up by every Python process of the test (PYTHONPATH): in bncli's spawned workers only, every
    # fsync of bncli.atomic fails as on a full disk, so that a run's atomic write fails half-way.
    import errno
    import multiprocessing
    import os

    import bncli.atomic as atomic


    class _FullDiskInWorkers:
        def __getattr__(self, name):
            return getattr(os, name)

        def fsync(self, fd):
            if multiprocessing.current_process().name != "MainProcess":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return os.fsync(fd)


    atomic.os = _FullDiskInWorkers()
""")


def test_a_full_disk_in_the_workers_fails_the_runs_in_one_line_each_and_leaves_nothing_half_written(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FULL_DISK_HOOK)
    env = proc_env()
    env["PYTHONPATH"] = os.pathsep.join([str(hook), *filter(None, [env.get("PYTHONPATH")])])
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    r = subprocess.run(bncli_cmd("sweep", cfg, "optimizer.lr=0.01,0.1", "--out", out, "-j", "2"), cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "unexpected" not in r.stderr, r.stderr
    failed = [ln for ln in r.stderr.splitlines() if ln.startswith("failed ")]
    assert len(failed) == 8, r.stderr  # 2 learning rates x 2 arms x 2 seeds: one line per failed run
    assert all("OSError: [Errno 28] No space left on device" in ln for ln in failed), failed
    assert run_dirs(out) == [] and hidden_leftovers(out) == []  # no run directory, complete or half-written
    rows = read_csv(out / "summary.csv")  # the main process could write: every run is recorded as failed
    assert {row["status"] for row in rows} == {"failed"} and len(rows) == 8
    assert all("No space left on device" in row["error"] for row in rows)
    assert len(list((out / "failed").glob("*.json"))) == 8
    # with space again, the same command trains them all and clears the failure records
    again = subprocess.run(bncli_cmd("sweep", cfg, "optimizer.lr=0.01,0.1", "--out", out, "-j", "2"),
                           cwd=tmp_path, env=proc_env(), capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr
    assert len(run_dirs(out)) == 8 and not list((out / "failed").glob("*.json"))
