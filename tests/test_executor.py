"""bncli.executor.execute: in-process (workers=1) or spawned workers, one BLAS thread each.

The task functions live at module level so that spawned workers can import them by name (pytest puts this
directory on sys.path, and the spawn start method hands sys.path to the workers).
"""

from __future__ import annotations

import copy
import os
import signal
import threading
import time

import numpy as np
import pytest
from sweep_helpers import workers_of

from bncli.config import ExperimentConfig
from bncli.executor import blas_threads, execute
from bncli.runs import run_task


def numeric_task(task, report):
    """Deterministic: a seeded NumPy computation (uses BLAS), with two progress messages."""
    if task.get("fail"):
        raise ValueError(f"task {task['k']} failed on purpose")
    if report:
        report(1, 2, task["k"])
    rng = np.random.default_rng(task["k"])
    a = rng.standard_normal((64, 64))
    value = float((a @ a.T).trace())
    if report:
        report(2, 2, task["k"])
    return {"k": task["k"], "value": value, "blas_threads": blas_threads(), "pid": os.getpid()}


TASKS = [{"k": 0}, {"k": 1}, {"k": 2, "fail": True}, {"k": 3}]


def _run(workers):
    done, progress = [], []
    lock = threading.Lock()

    def on_done(i, res):
        done.append((i, res))

    def on_progress(i, *msg):
        with lock:
            progress.append((i, *msg))

    results = execute(TASKS, numeric_task, workers=workers, on_progress=on_progress, on_done=on_done)
    return results, done, progress


def _check(results, done, progress):
    assert len(results) == len(TASKS)
    # the failing task becomes an exception object; the others complete, in task order
    assert isinstance(results[2], ValueError)
    assert "task 2 failed on purpose" in str(results[2])
    for i in (0, 1, 3):
        assert isinstance(results[i], dict) and results[i]["k"] == i
        assert results[i]["blas_threads"] in (1, None)
    # on_done: once per task, with the same object as the result
    assert sorted(i for i, _ in done) == [0, 1, 2, 3]
    for i, res in done:
        assert res is results[i]
    # progress: two messages per successful task, tagged with the task index
    assert sorted(progress) == sorted([(i, s, 2, i) for i in (0, 1, 3) for s in (1, 2)])


def test_in_process_and_worker_pool_give_identical_results():
    r1, d1, p1 = _run(1)
    _check(r1, d1, p1)
    assert {r1[i]["pid"] for i in (0, 1, 3)} == {os.getpid()}
    r2, d2, p2 = _run(2)
    _check(r2, d2, p2)
    assert os.getpid() not in {r2[i]["pid"] for i in (0, 1, 3)}  # really ran in workers
    for i in (0, 1, 3):
        assert r1[i]["value"] == r2[i]["value"]  # bit-identical
    assert type(r1[2]) is type(r2[2]) and str(r1[2]) == str(r2[2])


def test_in_process_order_and_report_is_none_without_on_progress():
    seen = []

    def fn(task, report):
        seen.append((task, report))
        return task * 10

    order = []
    assert execute([1, 2, 3], fn, workers=1, on_done=lambda i, r: order.append(i)) == [10, 20, 30]
    assert order == [0, 1, 2]
    assert [t for t, _ in seen] == [1, 2, 3]
    assert all(r is None for _, r in seen)


def test_in_process_runs_with_one_blas_thread():
    (inside,) = execute([0], lambda t, r: blas_threads(), workers=1)
    if blas_threads() is not None:
        assert inside == 1


def test_empty_task_list():
    assert execute([], numeric_task, workers=1) == []
    assert execute([], numeric_task, workers=4) == []


def test_single_task_with_many_workers_runs_in_process():
    res = execute([{"k": 5}], numeric_task, workers=4)
    assert res[0]["pid"] == os.getpid()


TINY = {
    "name": "tinyexec",
    "data": {"name": "synthetic", "synthetic": {"n_train": 300, "n_test": 100, "n_features": 8, "n_classes": 3}},
    "model": {"hidden": [16, 16], "bn": ["none", "before"]},
    "optimizer": {"lr": 0.1},
    "train": {"batch_size": 30, "steps": 20, "seeds": [0], "eval_every": 10},
}


def test_workers_run_bncli_tasks_with_one_blas_thread(tmp_path):
    cfg = ExperimentConfig.model_validate(copy.deepcopy(TINY))
    tasks = [{"config": cfg.run_config(arm, 0).to_dict(), "run_dir": str(tmp_path / arm)} for arm in ("none", "before")]
    progress = []
    pooled = execute(tasks, run_task, workers=2, on_progress=lambda i, *m: progress.append((i, m[0])))
    assert all(isinstance(r, dict) for r in pooled), pooled
    assert [r["blas_threads"] for r in pooled] == [1, 1]
    assert sorted(progress) == sorted((i, s) for i in (0, 1) for s in (0, 10, 20))
    metrics = [(tmp_path / arm / "metrics.csv").read_bytes() for arm in ("none", "before")]
    in_process = execute(tasks, run_task, workers=1)
    assert [r["blas_threads"] for r in in_process] == [1, 1]
    assert [(tmp_path / arm / "metrics.csv").read_bytes() for arm in ("none", "before")] == metrics
    for a, b in zip(pooled, in_process):
        assert {k: v for k, v in a.items() if "time" not in k and k != "steps_per_s"} == \
            {k: v for k, v in b.items() if "time" not in k and k != "steps_per_s"}


def _echo_task(task, report):
    report("x")
    return task


def test_on_progress_exception_does_not_fail_the_task_in_process():
    def bad_progress(i, *m):
        raise RuntimeError("display broke")

    assert execute([0, 1], _echo_task, workers=1, on_progress=bad_progress) == [0, 1]


# -- Ctrl-C while workers start up --------------------------------------------------------------------------------------
def _spawned_children() -> list[int]:
    """Worker processes of this process (spawn_main in their command line), from /proc."""
    return workers_of(os.getpid())


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/task"), reason="needs Linux /proc")
def test_a_ctrl_c_reaching_workers_while_they_start_up_is_ignored(capfd):
    """A terminal's Ctrl-C reaches the workers too. One arriving while a worker is still importing Python, numpy and
    bncli used to kill it or print its KeyboardInterrupt traceback (the worker ignored SIGINT only once started);
    now workers start with SIGINT blocked and discard it. Here SIGINT goes to each worker the moment it exists."""
    stop, signalled = threading.Event(), set()

    def interrupt_workers():
        while not stop.is_set():
            for pid in _spawned_children():
                if pid not in signalled:
                    signalled.add(pid)
                    try:
                        os.kill(pid, signal.SIGINT)
                    except ProcessLookupError:
                        pass
            time.sleep(0.0005)

    t = threading.Thread(target=interrupt_workers, daemon=True)
    t.start()
    try:
        results = execute([{"k": k} for k in range(4)], numeric_task, workers=2)
    finally:
        stop.set()
        t.join()
    assert signalled, "no worker was seen starting"
    assert all(isinstance(r, dict) for r in results), results  # no worker died: no BrokenProcessPool
    err = capfd.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_a_ctrl_c_while_workers_are_created_is_raised_after_not_lost():
    from bncli.executor import _starting_workers

    reached = []
    with pytest.raises(KeyboardInterrupt):
        with _starting_workers():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # delivered meanwhile, or pending: held back either way
            reached.append(True)
    assert reached == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
