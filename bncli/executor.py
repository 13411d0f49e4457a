"""Run independent tasks: in this process (workers=1) or in a pool of worker processes, one BLAS thread each.

Workers are *spawned* (not forked) with the BLAS thread variables already set, so the BLAS library reads them when
numpy is first imported in the worker; threadpoolctl then checks (and enforces) one thread and the worker reports
what it saw. Progress messages travel through a queue handed to every worker at start-up.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from queue import Empty

from .errors import BncliError, UsageError

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

_queue = None  # the worker's progress queue


def blas_threads() -> int | None:
    """Threads of the loaded BLAS, as threadpoolctl reports them (None if it cannot tell)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return None
    counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else None


@contextmanager
def one_blas_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _init_worker(queue):
    global _queue
    _queue = queue
    # Ctrl-C is the parent's business: it cancels what has not started and stops the workers itself. The worker was
    # started with SIGINT blocked (see _starting_workers): ignored from now on, and a Ctrl-C that arrived while it
    # was starting up (pending) is discarded when it is unblocked.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


@contextmanager
def _starting_workers():
    """Around the code that creates worker processes (the pool creates them lazily, in ``submit``).

    A terminal's Ctrl-C reaches every process of the foreground group, workers included; one that arrives while a
    worker is still importing Python, numpy and bncli (before `_init_worker` ignores it) would print that worker's
    KeyboardInterrupt traceback. So SIGINT is blocked in this thread while workers are created: a blocked signal
    stays blocked across fork and exec, the worker starts up with it pending, and `_init_worker` discards it. This
    process does not lose the Ctrl-C: it is caught meanwhile (another thread may take delivery, or it waits until
    the mask is restored) and raised as KeyboardInterrupt right after, when every started worker is known to the
    pool and is stopped with it."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending Ctrl-C is delivered here: still caught
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if caught and previous not in (signal.SIG_IGN, None):
        raise KeyboardInterrupt


def _call(fn, task_id, task):
    report = None if _queue is None else (lambda *msg: _queue.put((task_id, *msg)))
    with one_blas_thread():  # also on executors whose workers we did not start (Dask)
        return fn(task, report)


@contextmanager
def _thread_env():
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: "1" for k in THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_executor(executor: str | None) -> str:
    """'local' or dask://HOST:PORT (numeric port); anything else is a usage error."""
    if executor in (None, "local"):
        return "local"
    host, _, port = executor.removeprefix("dask://").rpartition(":")
    if not executor.startswith("dask://") or not host or not port.isdigit():
        raise UsageError(f"--executor {executor!r}: expected 'local' or dask://HOST:PORT")
    return executor


def execute(tasks: list, fn, *, workers=1, executor: str | None = None, on_progress=None, on_done=None):
    """Call ``fn(task, report)`` for every task; ``report(*msg)`` reaches ``on_progress(task_id, *msg)`` in this
    process. ``on_done(task_id, result_or_exception)`` as each finishes. Returns results in task order (an
    exception object in place of a result for a task that raised).

    ``executor``: None or "local" (this process when workers <= 1, else a spawned process pool), or
    "dask://HOST:PORT" (an existing Dask distributed scheduler; needs the ``bncli[dask]`` extra).
    Ctrl-C cancels what has not started and stops the workers; finished tasks keep their results."""
    if executor and executor.startswith("dask://"):
        return _execute_dask(executor, tasks, fn, on_done)
    check_executor(executor)
    results = [None] * len(tasks)
    if workers <= 1 or len(tasks) <= 1:
        with one_blas_thread():
            for i, task in enumerate(tasks):
                report = (lambda *m, _i=i: _safe(on_progress, _i, *m)) if on_progress else None
                try:
                    results[i] = fn(task, report)
                except Exception as e:  # a failing task is a result; the others go on
                    results[i] = e
                if on_done:
                    on_done(i, results[i])
        return results

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    stop = threading.Event()
    pump = threading.Thread(target=_pump, args=(queue, on_progress, stop), daemon=True)
    pump.start()
    try:
        # The variables stay set while the pool may start workers (it starts them lazily, at submit time).
        with _thread_env():
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                       initargs=(queue,))
            try:
                _collect(pool, tasks, fn, results, on_done, starting=_starting_workers)
            except BaseException:
                procs = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() clears it
                pool.shutdown(wait=False, cancel_futures=True)
                for proc in procs:
                    proc.terminate()
                raise
            pool.shutdown(wait=True)
    finally:
        # This process never writes to the queue: a worker terminated in the middle of a put can leave the queue's
        # write lock taken, and a put here (or joining its feeder thread at exit) would then wait forever.
        stop.set()
        pump.join(timeout=5)
        queue.cancel_join_thread()
    return results


def _collect(pool, tasks, fn, results, on_done, starting=nullcontext):
    with starting():  # submitting is where a local pool starts its worker processes
        futures = {pool.submit(_call, fn, i, t): i for i, t in enumerate(tasks)}
    pending = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for f in sorted(done, key=futures.get):
            i = futures[f]
            try:
                results[i] = f.result()
            except Exception as e:
                results[i] = e
            if on_done:
                on_done(i, results[i])


def _execute_dask(url, tasks, fn, on_done):
    try:
        from distributed import Client
    except ImportError:
        raise BncliError(f"--executor {url}: Dask is not installed; pip install 'bncli[dask]'") from None
    address = "tcp://" + check_executor(url).removeprefix("dask://")
    try:
        client = Client(address, timeout="10s")
    except (OSError, ValueError) as e:
        raise BncliError(f"--executor {url}: cannot reach the Dask scheduler at {address} ({e})") from None
    results = [None] * len(tasks)
    with client:
        pool = client.get_executor(pure=False)
        try:
            _collect(pool, tasks, fn, results, on_done)
        except BaseException:
            pool.shutdown(wait=False)
            raise
    return results


def _safe(on_progress, *msg):
    try:
        on_progress(*msg)
    except Exception:  # a display problem must not stop the runs
        pass


def _pump(queue, on_progress, stop):
    """Forward progress messages until ``stop`` is set, then deliver what is already queued."""
    while True:
        try:
            msg = queue.get(timeout=0.05)
        except Empty:
            if stop.is_set():
                return
            continue
        except Exception:  # a message cut short by a terminated worker, or the queue torn down
            return
        if on_progress:
            _safe(on_progress, *msg)
