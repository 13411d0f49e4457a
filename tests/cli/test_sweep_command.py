"""`bncli sweep` from the command line: dry runs, command-line sweeps, errors, and what survives a kill -9, a Ctrl-C
and two sweeps writing the same results directory at once (real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bncli.cli import app

from sweep_helpers import (REPO, bncli_cmd, check_complete, group_gone, hidden_leftovers, kill_group, proc_env,
                           read_csv, run_dirs, run_proc, snapshot_runs, wait_for_first_run, write_config)

LR6 = "  parameters:\n    optimizer.lr:\n      values: [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]\n"  # 24 runs


def flat(text):
    return " ".join(text.split())


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default results/ directory would land here
    return CliRunner()


def invoke(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


def no_traceback(r):
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output


# -- dry runs ---------------------------------------------------------------------------------------------------------
def test_dry_run_prints_the_count_and_runs_nothing(runner, tmp_path):
    cfg = write_config(tmp_path, "  parameters:\n    optimizer.name:\n      values: [sgd, momentum]\n"
                                 "    optimizer.lr:\n      values: [0.01, 0.1]\n")
    out = tmp_path / "out"
    r = invoke(runner, "sweep", cfg, "--dry-run", "--out", out)
    assert r.exit_code == 0, r.output
    text = flat(r.output)
    assert "16 runs = 4 points x 2 arms x 2 seeds" in text
    assert "0 already done, 16 to run" in text
    assert r.output.count("pending") == 16
    assert not out.exists() and not (tmp_path / "results").exists()


def test_dry_run_of_the_shipped_lr_range_experiment(runner, tmp_path):
    out = tmp_path / "out"
    r = invoke(runner, "sweep", REPO / "experiments" / "lr_range.yaml", "--dry-run", "--out", out)
    assert r.exit_code == 0, r.output
    # 4 optimizers x 16 learning rates (1e-4 .. 10 at 3 per decade) x 2 arms x 5 seeds
    assert "640 runs = 64 points x 2 arms x 5 seeds" in flat(r.output)
    assert not out.exists()


def test_dry_run_shows_runs_already_done(runner, tmp_path):
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    r = invoke(runner, "sweep", cfg, "optimizer.lr=0.01,0.1", "train.seeds=1", "--out", out, "-j", "1")
    assert r.exit_code == 0, r.output
    r = invoke(runner, "sweep", cfg, "optimizer.lr=0.01,0.1,1.0", "train.seeds=1", "--out", out, "--dry-run")
    assert r.exit_code == 0, r.output
    assert "6 runs = 3 points x 2 arms x 1 seeds; 4 already done, 2 to run" in flat(r.output)


# -- command-line sweeps ----------------------------------------------------------------------------------------------
def test_values_sweep_from_the_command_line(runner, tmp_path):
    cfg = write_config(tmp_path)  # no sweep section
    out = tmp_path / "out"
    r = invoke(runner, "sweep", cfg, "optimizer.lr=0.01,0.1", "--out", out, "-j", "1")
    assert r.exit_code == 0, r.output
    no_traceback(r)
    assert "usable range" in r.output
    assert "8 runs (0 reused, 0 diverged, 0 failed)" in flat(r.output)
    rows = read_csv(out / "summary.csv")
    assert len(rows) == 8
    assert sorted({float(x["optimizer.lr"]) for x in rows}) == [0.01, 0.1]
    assert {x["arm"] for x in rows} == {"none", "before"}
    assert len(run_dirs(out)) == 8
    assert json.loads((out / "sweep.json").read_text())["keys"] == ["optimizer.lr"]
    # run again: everything reused
    r = invoke(runner, "sweep", cfg, "optimizer.lr=0.01,0.1", "--out", out, "-j", "1")
    assert r.exit_code == 0 and "8 runs (8 reused" in flat(r.output)


def test_logrange_sweep_from_the_command_line(runner, tmp_path):
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    r = invoke(runner, "sweep", cfg, "optimizer.lr=logrange(1e-3,1e-1,1)", "train.seeds=1", "--out", out, "-j", "1")
    assert r.exit_code == 0, r.output
    assert "6 runs = 3 points x 2 arms x 1 seeds" in flat(r.output)
    rows = read_csv(out / "summary.csv")
    assert sorted({float(x["optimizer.lr"]) for x in rows}) == [0.001, 0.01, 0.1]
    assert "usable range" in r.output


def test_linrange_sweep_dry_run_keeps_integers(runner, tmp_path):
    cfg = write_config(tmp_path)
    r = invoke(runner, "sweep", cfg, "train.batch_size=linrange(10,30,3)", "--dry-run", "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    assert "12 runs = 3 points x 2 arms x 2 seeds" in flat(r.output)
    for v in ("10", "20", "30"):
        assert f"│ {v} " in r.output
    assert "10.0" not in r.output


def test_model_bn_list_is_arms_not_a_swept_key(runner, tmp_path):
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    r = invoke(runner, "sweep", cfg, "model.bn=none,before,after", "optimizer.lr=0.01,0.1", "train.seeds=1",
               "--out", out, "-j", "1")
    assert r.exit_code == 0, r.output
    assert "6 runs = 2 points x 3 arms x 1 seeds" in flat(r.output)
    rows = read_csv(out / "summary.csv")
    assert sorted({x["arm"] for x in rows}) == ["after", "before", "none"]
    assert "model.bn" not in rows[0]
    assert json.loads((out / "sweep.json").read_text())["keys"] == ["optimizer.lr"]


def test_no_sweep_section_and_no_sweep_override_is_exit_2(runner, tmp_path):
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    for extra in ([], ["optimizer.lr=0.05"]):
        r = invoke(runner, "sweep", cfg, *extra, "--out", out)
        assert r.exit_code == 2, r.output
        no_traceback(r)
        text = flat(r.output)
        assert "no sweep section" in text and "key=v1,v2" in text
        assert str(cfg) in text
    assert not out.exists()


def test_invalid_sweep_point_is_exit_2(runner, tmp_path):
    r = invoke(runner, "sweep", write_config(tmp_path), "optimizer.lr=0.1,-1", "--out", tmp_path / "out")
    assert r.exit_code == 2, r.output
    no_traceback(r)
    assert "sweep point" in r.output and "optimizer.lr" in r.output


@pytest.mark.parametrize("executor", [
    "foo",
    "threads",
    "dask://nohost",
    "dask://127.0.0.1:notaport",
])
def test_bad_executor_is_a_message_not_a_traceback(runner, tmp_path, executor):
    r = invoke(runner, "sweep", write_config(tmp_path), "optimizer.lr=0.01,0.1", "--executor", executor,
               "--out", tmp_path / "out", "-j", "1")
    no_traceback(r)
    assert r.exit_code in (1, 2), r.output
    assert "error:" in r.output and "--executor" in r.output
    assert not run_dirs(tmp_path / "out")


def test_subprocess_sweep_and_python_m_bncli(tmp_path):
    cfg = write_config(tmp_path, LR6.replace("0.01, 0.03, 0.1, 0.3, 1.0, 3.0", "0.01, 0.1"))
    out = tmp_path / "out"
    p = run_proc(["sweep", cfg, "--out", out, "--workers", "1"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "usable range" in p.stdout and "Traceback" not in p.stderr
    assert len(read_csv(out / "summary.csv")) == 8


# -- interruptions (real processes) ------------------------------------------------------------------------------------
def check_finished_sweep(out: Path, n: int):
    dirs = run_dirs(out)
    assert len(dirs) == n
    for d in dirs:
        check_complete(d)
    assert hidden_leftovers(out) == []
    rows = read_csv(out / "summary.csv")
    assert len(rows) == n
    assert sorted(r["hash"] for r in rows) == sorted(d.name for d in dirs)
    assert all(r["status"] in ("ok", "diverged") for r in rows)
    assert not (out / "failed").exists() or not list((out / "failed").iterdir())


# Long enough that the 24-run sweep is still running when the test interrupts it after its first run, even on a
# fast machine (at 600 steps a whole sweep once finished inside that window).
INTERRUPTED_STEPS = "train.steps=2000"


def start_sweep(cfg, out, cwd, *extra):
    return subprocess.Popen(bncli_cmd("sweep", cfg, INTERRUPTED_STEPS, "--out", out, "--workers", "2", *extra),
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=proc_env(),
                            start_new_session=True)


def test_kill_9_mid_sweep_then_resume(tmp_path):
    cfg = write_config(tmp_path, LR6)
    out = tmp_path / "out"
    proc = start_sweep(cfg, out, tmp_path)
    try:
        wait_for_first_run(proc, out)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert proc.returncode == -signal.SIGKILL
    assert group_gone(proc.pid), "the killed workers were not reaped"
    before = snapshot_runs(out)
    assert 1 <= len(before) < 24  # killed mid-sweep
    for d in run_dirs(out):  # whatever exists is whole: directories appear atomically
        check_complete(d)

    p = run_proc(["sweep", cfg, INTERRUPTED_STEPS, "--out", out, "--workers", "2"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"{len(before)} reused" in flat(p.stdout)
    check_finished_sweep(out, 24)
    after = snapshot_runs(out)
    for h, (meta, ino) in before.items():  # finished runs were not redone
        assert after[h] == (meta, ino)
        assert json.loads(after[h][0])["started"] == json.loads(meta)["started"]


def test_ctrl_c_mid_sweep_exits_130_and_resumes(tmp_path):
    cfg = write_config(tmp_path, LR6)
    out = tmp_path / "out"
    proc = start_sweep(cfg, out, tmp_path)
    try:
        wait_for_first_run(proc, out)
        proc.send_signal(signal.SIGINT)  # the main process only, as a terminal's Ctrl-C would reach it first
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the sweep did not stop within 60 s of Ctrl-C")
    finally:
        if proc.poll() is None:
            kill_group(proc)
    group_gone(proc.pid)
    kept = snapshot_runs(out)
    assert "Traceback" not in stderr, stderr[-3000:]
    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr
    assert 1 <= len(kept) < 24
    for d in run_dirs(out):
        check_complete(d)

    p = run_proc(["sweep", cfg, INTERRUPTED_STEPS, "--out", out, "--workers", "2"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    check_finished_sweep(out, 24)
    after = snapshot_runs(out)
    assert all(after[h] == v for h, v in kept.items())


def test_two_sweeps_into_the_same_directory_at_once(tmp_path):
    """One writer per results folder: of two sweeps started together into one --out, the one that does not hold the
    folder refuses in one line naming the other (or, had the first already ended, resumes it); the folder ends as
    one finished sweep, never a mix of two writers."""
    cfg = write_config(tmp_path, LR6)
    out = tmp_path / "out"
    cmd = ["sweep", cfg, "train.steps=100", "--out", out, "--workers", "1"]
    procs = [subprocess.Popen(bncli_cmd(*cmd), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=proc_env(), start_new_session=True) for _ in range(2)]
    try:
        results = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                kill_group(p)
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 0], [0, 1]), [r[1][-2000:] for r in results]
    for p, (stdout, stderr) in zip(procs, results):
        assert "Traceback" not in stderr
        if p.returncode == 1:
            other = next(q for q in procs if q is not p)
            assert stderr.startswith("error: ") and f"in use by another bncli (pid {other.pid}" in stderr, stderr
    check_finished_sweep(out, 24)
    assert json.loads((out / "sweep.json").read_text())["n_runs"] == 24
    assert len(read_csv(out / "range.csv")) == 12
