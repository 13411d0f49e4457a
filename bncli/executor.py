"""Run independent tasks: in this process (workers=1) or in a pool of worker processes, one BLAS thread each.

Workers are *spawned* (not forked) with the BLAS thread variables already set, so the BLAS library reads them when
numpy is first imported in the worker; threadpoolctl then checks (and enforces) one thread and the worker reports
what it saw. Progress messages travel through a queue handed to every worker at start-up.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager

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
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def _report(task_id):
    if _queue is None:
        return None
    return lambda *msg: _queue.put((task_id, *msg))


def _call(fn, task_id, task):
    return fn(task, _report(task_id))


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


def execute(tasks: list, fn, *, workers=1, on_progress=None, on_done=None):
    """Call ``fn(task, report)`` for every task; ``report(*msg)`` reaches ``on_progress(task_id, *msg)`` in this
    process. ``on_done(task_id, result_or_exception)`` as each finishes. Returns results in task order (an
    exception object in place of a result for a task that raised). Ctrl-C cancels what has not started."""
    results = [None] * len(tasks)
    if workers <= 1 or len(tasks) <= 1:
        with one_blas_thread():
            for i, task in enumerate(tasks):
                report = (lambda *m, _i=i: on_progress(_i, *m)) if on_progress else None
                try:
                    results[i] = fn(task, report)
                except Exception as e:  # a failing task is a result; the others go on
                    results[i] = e
                if on_done:
                    on_done(i, results[i])
        return results

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    pump = threading.Thread(target=_pump, args=(queue, on_progress), daemon=True)
    pump.start()
    try:
        # The variables stay set while the pool may start workers (it starts them lazily, at submit time).
        with _thread_env(), ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                                initargs=(queue,)) as pool:
            try:
                futures = {pool.submit(_call, fn, i, t): i for i, t in enumerate(tasks)}
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        i = futures[f]
                        try:
                            results[i] = f.result()
                        except Exception as e:
                            results[i] = e
                        if on_done:
                            on_done(i, results[i])
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    finally:
        queue.put(None)
        pump.join(timeout=5)
    return results


def _pump(queue, on_progress):
    while True:
        msg = queue.get()
        if msg is None:
            return
        if on_progress:
            try:
                on_progress(*msg)
            except Exception:  # a display problem must not stop the runs
                pass
