"""Run independent tasks: in this process (workers=1) or in a pool of worker processes, one BLAS thread each.

Workers are *spawned* (not forked) with the BLAS thread variables already set, so the BLAS library reads them when
numpy is first imported in the worker; threadpoolctl then checks (and enforces) one thread and the worker reports
what it saw. Progress messages travel through a queue handed to every worker at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import signal
import socket
import struct
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, CancelledError, ProcessPoolExecutor, wait
from contextlib import ExitStack, contextmanager, nullcontext
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


@contextmanager
def _main_not_reimported():
    """While worker processes are started: the spawn start method re-runs the parent's main module in every worker
    (multiprocessing.spawn.get_preparation_data names it by ``__main__.__spec__`` or ``__main__.__file__``). A
    user's script without an ``if __name__ == "__main__":`` guard would then call bncli again in each worker, and
    a ``python -`` heredoc (``__file__`` '<stdin>') cannot be re-run at all. Every function a worker runs lives in
    an importable module (bncli's), so the workers never need the main module: it is not named to them. The two
    attributes are restored as soon as the workers are started (`_collect` starts them all before it waits)."""
    main = sys.modules.get("__main__")
    names = ("__file__", "__spec__")
    saved = {k: main.__dict__[k] for k in names if k in getattr(main, "__dict__", {})}
    if not saved or (saved.get("__file__") is None and saved.get("__spec__") is None):
        yield  # a notebook, `python -c`, an interactive session: nothing would be re-run
        return
    main.__dict__.pop("__file__", None)
    main.__spec__ = None  # get_preparation_data reads main.__spec__: it must exist
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


@contextmanager
def _starting_local_workers():
    with ExitStack() as stack:
        stack.enter_context(_starting_workers())
        stack.enter_context(_main_not_reimported())
        yield


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
    """'local' or dask://HOST:PORT (port 1-65535); anything else is a usage error."""
    if executor in (None, "local"):
        return "local"
    host, _, port = executor.removeprefix("dask://").rpartition(":")
    if (not executor.startswith("dask://") or not host or not (port.isascii() and port.isdigit() and len(port) <= 5)
            or not 0 < int(port) < 65536 or any(c.isspace() or not c.isprintable() or c == "/" for c in host)):
        raise UsageError(f"--executor {executor!r}: expected 'local' or dask://HOST:PORT")
    return executor


def execute(tasks: list, fn, *, workers=1, executor: str | None = None, on_progress=None, on_done=None):
    """Call ``fn(task, report)`` for every task; ``report(*msg)`` reaches ``on_progress(task_id, *msg)`` in this
    process. ``on_done(task_id, result_or_exception)`` as each finishes. Returns results in task order (an
    exception object in place of a result for a task that raised).

    ``executor``: None or "local" (this process when workers <= 1, else a spawned process pool), or
    "dask://HOST:PORT" (an existing Dask distributed scheduler; needs the ``bncli[dask]`` extra). A scheduler that
    does not answer like Dask within CONNECT_TIMEOUT_S, its loss, or no worker for NO_WORKER_GRACE_S while runs wait
    is a BncliError (one line); the runs that finished before are kept.
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
                _collect(pool, tasks, fn, results, on_done, starting=_starting_local_workers)
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


# -- Dask ---------------------------------------------------------------------------------------------------------
CONNECT_TIMEOUT_S = 10  # to reach a scheduler that speaks Dask: TCP connection and its greeting
NO_WORKER_GRACE_S = 30  # runs pending and no worker (or no answer from the scheduler) this long: give up. A
#                         nanny restarts a killed worker within seconds; a cluster that lost them all does not.
POLL_S = 1.0  # between checks of the cluster while runs are pending


def no_worker_grace() -> float:
    """NO_WORKER_GRACE_S, or BNCLI_DASK_NO_WORKER_S (seconds, > 0) where a cluster restarts workers more slowly, or
    a test wants a shorter wait; a value that is not a positive number is ignored."""
    try:
        v = float(os.environ.get("BNCLI_DASK_NO_WORKER_S", ""))
    except ValueError:
        return NO_WORKER_GRACE_S
    return v if 0 < v < 86_400 else NO_WORKER_GRACE_S
CLOSE_TIMEOUT_S = 5
GREETING_LIMIT = 1 << 16  # a scheduler's first message (its handshake) is about 60 bytes


def _dask_install_hint() -> str:
    """How to add Dask here: into this source checkout (an editable install) or from the package index."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "bncli").is_dir():
        return f"pip install -e '{root}[dask]'"
    return "pip install 'bncli[dask]'"


def _execute_dask(url, tasks, fn, on_done):
    try:
        import distributed
    except ImportError:
        raise BncliError(f"--executor {url}: Dask is not installed; {_dask_install_hint()}") from None
    host, _, port = check_executor(url).removeprefix("dask://").rpartition(":")
    address = f"tcp://{host}:{port}"
    _probe(url, address, host.removeprefix("[").removesuffix("]"), int(port))
    results = [None] * len(tasks)
    with _quiet_distributed():  # its log lines (tracebacks of lost connections) are not for the user
        client = _client(distributed, url, address)
        try:
            _collect_dask(client, url, address, tasks, fn, results, on_done)
        finally:
            _close(client)  # the scheduler forgets the runs that have not started
    return results


def _client(distributed, url, address):
    """A connected Client. One whose construction fails half-way (a peer that greets like Dask but is no scheduler,
    e.g. a worker) is closed here, at once: left to the garbage collector, it waits 20 s and prints a traceback."""
    made = []

    class Client(distributed.Client):
        def start(self, **kwargs):
            made.append(self)
            return super().start(**kwargs)

    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except Exception as e:  # noqa: BLE001 - whatever the peer said, it did not let a client in
        why = f"no answer within {CONNECT_TIMEOUT_S} s" if isinstance(e, TimeoutError) else _why(e)
        error = BncliError(f"--executor {url}: {address} did not accept a Dask client ({why})")
    except BaseException:
        for c in made:
            _close(c)
        raise
    for c in made:
        _close(c)
    raise error


def _close(client):
    try:
        client.close(timeout=CLOSE_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - a scheduler that is gone cannot be told
        pass


def _probe(url, address, host, port):
    """Read the scheduler's greeting (its handshake, sent to every new connection) with a deadline and a size limit
    before distributed connects: distributed bounds the TCP connection, but then it waits for the greeting without
    a time limit and allocates whatever length its first 8 bytes claim (a silent server hangs it forever; the
    "HTTP/1.1" of a web server reads as a length of exabytes). The greeting itself is decoded by distributed."""
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    silent = f"--executor {url}: no Dask scheduler answered at {address} within {CONNECT_TIMEOUT_S} s"
    not_dask = f"--executor {url}: {address} is not a Dask scheduler"
    sock = _connect(url, address, host, port, deadline, silent)
    with sock:
        header = _receive(sock, 8, deadline, f"{silent} (it accepted the connection and sent nothing)")
        if len(header) < 8:
            said = f"sent {header!r} and closed" if header else "closed"
            raise BncliError(f"{not_dask} (it {said} the connection without a Dask greeting)")
        (claimed,) = struct.unpack("Q", header)  # distributed's own framing: a native 8-byte length
        if not 0 < claimed <= GREETING_LIMIT:
            raise BncliError(f"{not_dask} (it answered {header!r}..., not a Dask greeting)")
        body = _receive(sock, claimed, deadline, f"{silent} (its greeting stopped short)")
        if len(body) < claimed:
            raise BncliError(f"{not_dask} (it closed the connection within its first message)")


def _connect(url, address, host, port, deadline, silent):
    addrs = _resolve(url, address, host, port, deadline)
    error = None
    for family, kind, proto, _, sockaddr in addrs:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            sock.connect(sockaddr)
            return sock
        except OSError as e:
            sock.close()
            error = e
    if isinstance(error, TimeoutError):
        raise BncliError(f"{silent} (the connection was not accepted)")
    raise BncliError(f"--executor {url}: cannot reach the Dask scheduler at {address} ({_why(error)})")


def _resolve(url, address, host, port, deadline):
    """getaddrinfo in a thread (a name lookup has no timeout of its own that we could set)."""
    box = []

    def lookup():
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError, ValueError) as e:  # unknown name, a label too long for IDNA, a NUL
            box.append(e)

    t = threading.Thread(target=lookup, daemon=True)
    t.start()
    t.join(max(deadline - time.monotonic(), 0.01))
    if not box:
        raise BncliError(f"--executor {url}: the name {host!r} did not resolve within {CONNECT_TIMEOUT_S} s")
    if isinstance(box[0], Exception) or not box[0]:
        raise BncliError(f"--executor {url}: cannot reach the Dask scheduler at {address} ({_why(box[0])})")
    return box[0]


def _receive(sock, n, deadline, silent) -> bytes:
    """Up to ``n`` bytes: fewer if the peer closes the connection; BncliError(silent) at the deadline."""
    data = b""
    while len(data) < n:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(n - len(data))
        except TimeoutError:
            raise BncliError(silent) from None
        except OSError:  # reset by the peer
            return data
        if not chunk:
            return data
        data += chunk
    return data


def _collect_dask(client, url, address, tasks, fn, results, on_done):
    """Like ``_collect``, checking the cluster between finished runs. A run whose worker died is run again by the
    scheduler on another worker; with no worker left (for NO_WORKER_GRACE_S) or the scheduler gone, this ends
    with one line. A run that finished wrote its folder on the worker: it is kept, and the next call skips it."""
    finished = 0

    def give_up(what, then="run the command again"):
        raise BncliError(f"--executor {url}: {what}; the {finished} of {len(tasks)} runs that finished are kept: "
                         f"{then} to train only the missing ones")

    pool = client.get_executor(pure=False)
    try:
        futures = {pool.submit(_call, fn, i, t): i for i, t in enumerate(tasks)}
    except Exception as e:
        if _lost_connection(e):
            give_up(f"lost the Dask scheduler at {address} ({_why(e)})")
        raise
    pending = set(futures)
    seen = time.monotonic()  # when the scheduler last reported a worker
    why = None
    while pending:
        done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
        lost = None
        for f in sorted(done, key=futures.get):
            error = None if f.cancelled() else f.exception()
            if f.cancelled() or _lost_connection(error):
                lost = lost or ("the connection to it was lost" if error is None else _why(error))
                continue
            i = futures[f]
            results[i] = f.result() if error is None else error  # a run that raised is a result
            finished += error is None
            if on_done:
                on_done(i, results[i])
        if lost and client.status == "running":  # still connected: someone cancelled the runs (a cluster restart?)
            give_up(f"the Dask scheduler at {address} cancelled runs of this command")
        if lost or client.status in ("closing", "closed"):
            give_up(f"lost the Dask scheduler at {address} ({lost or 'its connection closed'})")
        if not pending:
            break
        try:
            workers = len(client.nthreads(callback_timeout=CONNECT_TIMEOUT_S))
            why = None if workers else "the scheduler reports none"
        except Exception as e:  # noqa: BLE001 - a scheduler that does not answer is as good as gone
            workers, why = 0, f"the scheduler did not answer: {_why(e)}"
        if workers:
            seen = time.monotonic()
        elif time.monotonic() - seen > no_worker_grace():
            give_up(f"no Dask worker at {address} for {no_worker_grace():g} s ({why})",
                    "start a worker and run the command again")
    return results


def _lost_connection(error) -> bool:
    """The errors by which distributed reports a lost scheduler (not a run's own failure)."""
    if error is None:
        return False
    from distributed.client import ClosedClientError
    from distributed.comm.core import CommClosedError

    return isinstance(error, (CancelledError, asyncio.CancelledError, ClosedClientError, CommClosedError))


def _why(error) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@contextmanager
def _quiet_distributed():
    """distributed logs to stderr (tracebacks of lost connections, reconnect attempts): silenced while bncli talks
    to the cluster, as its errors become bncli's one line."""
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in ("distributed", "tornado")]
    loggers = [logging.getLogger(n) for n in {"distributed", "tornado", "asyncio", *names}]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)


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
