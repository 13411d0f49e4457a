"""A Dask cluster that fails, through the real command line: a real ``dask scheduler`` and ``dask worker`` (separate
processes, 127.0.0.1 only) killed in the middle of a sweep, and servers at the address that are no Dask scheduler.
Every case ends in bounded time with one line and exit 1; the runs that finished are kept and the next call trains
only the missing ones."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from fuzz.harness import check, spawn, wait  # noqa: E402
from sweep_helpers import (bncli_cmd, check_complete, proc_env, run_dirs, run_proc, snapshot_runs,  # noqa: E402
                           wait_for_first_run, write_config)
from tiny import tiny_config  # noqa: E402

from bncli.executor import CONNECT_TIMEOUT_S, NO_WORKER_GRACE_S  # noqa: E402

# 8 runs of about half a second each on one worker: the sweep is still running when the first run is on disk
SLOW = tiny_config("slowsweep", n_train=2000, steps=4000)
SWEEP = "  parameters:\n    optimizer.lr:\n      values: [0.03, 0.3]\n"
START_S = 90  # a scheduler or worker starting on a loaded 2-core machine


class Cluster:
    """Scheduler and worker processes, each in a process group of its own (killed with it)."""

    def __init__(self, folder: Path):
        self.folder, self.procs, self.address = folder, [], None

    def _start(self, name, args, ready):
        log = self.folder / f"{name}-{len(self.procs)}.log"
        env = {**proc_env(), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        with open(log, "wb") as f:
            proc = subprocess.Popen([sys.executable, "-m", *args], cwd=self.folder, env=env, stdout=f,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        t0 = time.monotonic()
        while not (found := re.search(ready, log.read_text(errors="replace"))):
            assert proc.poll() is None, f"{name} ended: {log.read_text(errors='replace')[-2000:]}"
            assert time.monotonic() - t0 < START_S, f"{name} did not start: {log.read_text(errors='replace')[-2000:]}"
            time.sleep(0.1)
        return proc, found

    def scheduler(self):
        proc, found = self._start("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                                                "0", "--no-dashboard"], r"Scheduler at:\s*tcp://(127\.0\.0\.1:\d+)")
        self.address = found.group(1)
        return proc

    def worker(self):
        return self._start("worker", ["distributed.cli.dask_worker", f"tcp://{self.address}", "--host", "127.0.0.1",
                                      "--nthreads", "1", "--no-nanny", "--no-dashboard"], r"Registered to:")[0]

    @property
    def url(self):
        return f"dask://{self.address}"

    def close(self):
        for proc in self.procs:
            kill(proc)


def kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


GRACE = 8.0  # BNCLI_DASK_NO_WORKER_S for these tests (NO_WORKER_GRACE_S is the default)


def sweep_mid_run(tmp_path, cluster, out):
    """A sweep on the cluster, running, with at least one finished run on disk; the process, its command."""
    cmd = bncli_cmd("sweep", write_config(tmp_path, SWEEP, base=SLOW), "--out", out, "--executor", cluster.url)
    # a shorter grace than the default 30 s, through the variable a slow cluster would raise it with
    proc = subprocess.Popen(cmd, cwd=tmp_path, env={**proc_env(), "BNCLI_DASK_NO_WORKER_S": str(GRACE)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for_first_run(proc, out)
    except BaseException:
        kill(proc)
        raise
    return proc


def ended(proc, bound):
    """(exit code, stderr, seconds) of a process expected to end within ``bound`` seconds."""
    t0 = time.monotonic()
    try:
        _, err = proc.communicate(timeout=bound)
    except subprocess.TimeoutExpired:
        kill(proc)
        pytest.fail(f"still running {bound} s after the cluster failed (a hang)")
    return proc.returncode, err, time.monotonic() - t0


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    assert "Traceback" not in err and "unexpected" not in err, err[-3000:]
    return lines[0]


def test_worker_killed_mid_sweep_ends_and_the_next_call_resumes(tmp_path, cluster):
    cluster.scheduler()
    worker = cluster.worker()
    out = tmp_path / "out"
    proc = sweep_mid_run(tmp_path, cluster, out)
    kill(worker)  # the only worker: its run goes back to the scheduler, with nobody to take it
    code, err, seconds = ended(proc, GRACE + 60)
    line = one_error_line(err)
    assert code == 1, err
    assert f"no Dask worker at tcp://{cluster.address} for {GRACE:g} s" in line
    assert "are kept" in line and "start a worker" in line
    assert seconds < GRACE + 30, seconds
    kept = run_dirs(out)
    assert 1 <= len(kept) < 8
    for d in kept:
        check_complete(d)
    before = snapshot_runs(out)

    cluster.worker()
    p = run_proc(["sweep", tmp_path / "sweep.yaml", "--out", out, "--executor", cluster.url], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"{len(kept)} already done, {8 - len(kept)} to run" in p.stdout, p.stdout
    after = snapshot_runs(out)
    assert len(after) == 8 and all(after[h] == before[h] for h in before)  # the kept runs were not trained again


def test_scheduler_killed_mid_sweep_is_one_line(tmp_path, cluster):
    scheduler = cluster.scheduler()
    cluster.worker()
    out = tmp_path / "out"
    proc = sweep_mid_run(tmp_path, cluster, out)
    kill(scheduler)
    code, err, seconds = ended(proc, 60)
    line = one_error_line(err)
    assert code == 1, err
    assert f"lost the Dask scheduler at tcp://{cluster.address}" in line and "are kept" in line
    assert seconds < CONNECT_TIMEOUT_S + 20, seconds
    assert run_dirs(out)
    for d in run_dirs(out):
        check_complete(d)


class Server:
    """A TCP server on 127.0.0.1 in a thread of the test: it accepts, says ``greeting`` and then nothing more
    (``close``: hangs up at once)."""

    def __init__(self, greeting: bytes = b"", close=False):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port, self.greeting, self.hang_up, self.conns = self.sock.getsockname()[1], greeting, close, []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed at the end of the test
                return
            self.conns.append(conn)  # kept open: silence, not a hang-up
            if self.greeting:
                conn.sendall(self.greeting)
            if self.hang_up:
                conn.close()

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def test_a_server_that_is_no_dask_scheduler_is_one_line(tmp_path):
    """Through the hostile-input harness (tally family "cluster"); the four at once, each within the bound."""
    silent = f"no Dask scheduler answered at tcp://127.0.0.1:{{}} within {CONNECT_TIMEOUT_S} s"
    not_dask = "tcp://127.0.0.1:{} is not a Dask scheduler"
    servers = [(Server(), silent),
               (Server(b"HTTP/1.1 200 OK\r\n" + b"\xff" * 8), not_dask),  # distributed read "HTTP/1.1" as 4 EiB
               (Server(b"\xff" * 8), not_dask),
               (Server(close=True), not_dask)]
    cfg = write_config(tmp_path, SWEEP)
    try:
        running = []
        for server, says in servers:
            out = tmp_path / str(server.port) / "out"
            out.parent.mkdir()
            args = ["sweep", cfg, "--out", out, "--executor", f"dask://127.0.0.1:{server.port}"]
            running.append((spawn(args, out.parent), says.format(server.port), out))
        for case, says, out in running:
            o = check(wait(*case), "cluster", codes=(1,), says=says)
            assert o.seconds < CONNECT_TIMEOUT_S + 20, o
            assert not run_dirs(out)
    finally:
        for server, _ in servers:
            server.close()
