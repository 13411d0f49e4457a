"""Runs on a Dask distributed cluster (executor "dask://HOST:PORT") give the numbers of the local executor, with one
BLAS thread per run; an unreachable scheduler is a clear error."""

from __future__ import annotations

import json

import pytest

distributed = pytest.importorskip("distributed")

from typer.testing import CliRunner  # noqa: E402

from bncli.cli import app  # noqa: E402
from bncli.config import load_config  # noqa: E402
from bncli.errors import BncliError, UsageError  # noqa: E402
from bncli.executor import check_executor, execute  # noqa: E402
from bncli.runs import run_task  # noqa: E402
from bncli.sweeps import plan_sweep as plan, run_sweep  # noqa: E402

from sweep_helpers import NUMERIC, check_complete, numbers, read_csv, run_dirs, run_proc, write_config  # noqa: E402

SWEEP = "  parameters:\n    optimizer.lr:\n      values: [0.03, 0.3]\n"  # 8 runs


@pytest.fixture(scope="module")
def dask_url():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        yield "dask://" + address.removeprefix("tcp://")
    finally:
        cluster.close()


def tasks_for(tmp_path, sub):
    cfg, src = load_config(write_config(tmp_path), ["optimizer.lr=0.03,0.3"], sweep_overrides=True)
    runs = plan(cfg, src, tmp_path / sub)
    return [{"config": r.config.to_dict(), "run_dir": str(r.run_dir)} for r in runs]


def test_execute_on_dask_matches_local(tmp_path, dask_url):
    remote = execute(tasks_for(tmp_path, "dask"), run_task, executor=dask_url)
    local = execute(tasks_for(tmp_path, "local"), run_task, workers=1)
    assert len(remote) == len(local) == 8
    for r, l in zip(remote, local):
        assert isinstance(r, dict), repr(r)
        assert r["config_hash"] == l["config_hash"]
        assert {k: r[k] for k in NUMERIC} == {k: l[k] for k in NUMERIC}
        assert r["blas_threads"] == 1  # on the Dask worker
    for d in run_dirs(tmp_path / "dask"):
        check_complete(d)
        assert json.loads((d / "meta.json").read_text())["blas_threads"] == 1
        local_dir = tmp_path / "local" / "runs" / d.name
        assert (d / "metrics.csv").read_bytes() == (local_dir / "metrics.csv").read_bytes()


def test_a_task_failing_on_dask_is_a_result(tmp_path, dask_url):
    tasks = tasks_for(tmp_path, "dask")[:2]
    tasks[1] = {**tasks[1], "config": {**tasks[1]["config"], "optimizer": {"lr": -1}}}  # invalid: raises
    results = execute(tasks, run_task, executor=dask_url)
    assert isinstance(results[0], dict) and results[0]["blas_threads"] == 1
    assert isinstance(results[1], Exception)


def test_cli_sweep_on_dask_matches_local(tmp_path, dask_url):
    cfg = write_config(tmp_path, SWEEP)
    local_out, dask_out = tmp_path / "local", tmp_path / "dask"
    c, s = load_config(cfg, sweep_overrides=True)
    run_sweep(c, s, local_out, workers=1)
    p = run_proc(["sweep", cfg, "--out", dask_out, "--executor", dask_url], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Dask" in p.stdout and "usable range" in p.stdout
    rows = read_csv(dask_out / "summary.csv")
    assert len(rows) == 8
    assert numbers(rows) == numbers(read_csv(local_out / "summary.csv"))
    for d in run_dirs(dask_out):
        check_complete(d)
        assert json.loads((d / "meta.json").read_text())["blas_threads"] == 1


def test_unreachable_scheduler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = "dask://127.0.0.1:1"
    r = CliRunner().invoke(app, ["sweep", str(write_config(tmp_path)), "optimizer.lr=0.03,0.3", "--out",
                                 str(tmp_path / "out"), "--executor", url])
    assert r.exit_code == BncliError.exit_code == 1, r.output
    assert isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    assert "error:" in r.output and "cannot reach the Dask scheduler" in r.output and "127.0.0.1:1" in r.output
    assert not run_dirs(tmp_path / "out")


@pytest.mark.parametrize("url", ["dask://127.0.0.1:99999", "dask://127.0.0.1:0", "dask://h:" + "9" * 5000,
                                 "dask://h:\u0661\u0662", "dask://a b:8786", "dask://a/b:8786", "dask://h\x00:8786"])
def test_an_address_no_socket_can_take_is_a_usage_error(url):
    """Out-of-range ports (an OverflowError from the socket layer), digits that are not ASCII, a host with spaces,
    a slash or a NUL: refused with the option's message before anything connects."""
    with pytest.raises(UsageError, match="expected 'local' or dask://HOST:PORT"):
        check_executor(url)
    assert check_executor("dask://[::1]:8786") == "dask://[::1]:8786"
