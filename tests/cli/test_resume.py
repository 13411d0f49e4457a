"""Every long command resumes: `bncli train` and `bncli report` killed with kill -9 or Ctrl-C (real processes), then
run again, keep every finished run and redo none (`bncli sweep`: tests/cli/test_sweep_command.py). And a results
folder shows exactly the runs of the invocation that wrote it: older runs stay as a cache, never drawn or counted."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from sweep_helpers import (REPO, bncli_cmd, check_complete, group_gone, kill_group, proc_env, read_csv, run_dirs,
                           run_proc, snapshot_runs, wait_for_first_run, write_config)

# Slow enough that the command is still running when the test interrupts it after its first run.
LONG = "train.steps=2000"


def flat(text):
    return " ".join(text.split())


def interrupt(cmd, out: Path, cwd: Path, how: str) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(bncli_cmd(*cmd), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=proc_env(), start_new_session=True)
    try:
        wait_for_first_run(proc, out)
        if how == "kill -9":
            import os

            os.killpg(proc.pid, signal.SIGKILL)
        elif how == "kill":  # SIGTERM to the main process only, as `kill PID` sends it
            proc.send_signal(signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGINT)  # the main process only, as a terminal's Ctrl-C reaches it first
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert group_gone(proc.pid), "the workers were not reaped"
    if how == "kill":  # the workers stopped with the command: no run finishes after it has ended
        import time

        ended = snapshot_runs(out)
        time.sleep(1.5)
        assert snapshot_runs(out) == ended
    if how == "kill -9":
        assert proc.returncode == -signal.SIGKILL
    elif how == "kill":
        assert proc.returncode == 143, stderr[-3000:]
        assert "terminated" in stderr and "Traceback" not in stderr
    else:
        assert proc.returncode == 130, stderr[-3000:]
        assert "interrupted" in stderr and "Traceback" not in stderr
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("how", ["kill -9", "Ctrl-C", "kill"])
def test_train_interrupted_then_resumed_redoes_no_finished_run(tmp_path, how):
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    cmd = ["train", cfg, LONG, "train.seeds=6", "--out", out, "-j", "2"]
    interrupt(cmd, out, tmp_path, how)
    before = snapshot_runs(out)
    assert 1 <= len(before) < 12
    for d in run_dirs(out):
        check_complete(d)

    p = run_proc(cmd, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"{len(before)} already done, {12 - len(before)} to train" in flat(p.stdout)
    after = snapshot_runs(out)
    assert len(after) == 12
    for h, v in before.items():  # same meta.json (same start time), same inode: not trained again
        assert after[h] == v
    rows = read_csv(out / "summary.csv")
    assert len(rows) == 12 and all(r["status"] == "ok" for r in rows)
    # and a third call trains nothing
    p = run_proc(cmd, cwd=tmp_path)
    assert "12 already done, 0 to train" in flat(p.stdout)
    assert snapshot_runs(out) == after


def c07_experiments(dest: Path) -> Path:
    """The report's C7 study on a small synthetic set and a long budget (slow enough to interrupt)."""
    doc = yaml.safe_load((REPO / "experiments" / "c07_bias.yaml").read_text())
    doc.update(data={"name": "synthetic", "synthetic": {"n_train": 240, "n_test": 120, "n_features": 8,
                                                        "n_classes": 3}}, full=[])
    doc["model"]["hidden"] = [16, 16]
    doc["train"].update(seeds=3, batch_size=30)
    doc["train"].pop("epochs", None)
    doc["train"]["steps"] = 2000
    dest.mkdir()
    (dest / "c07_bias.yaml").write_text(yaml.safe_dump(doc))
    return dest


@pytest.mark.parametrize("how", ["kill -9", "Ctrl-C"])
def test_report_interrupted_then_resumed_redoes_no_finished_run(tmp_path, how):
    exps = c07_experiments(tmp_path / "exps")
    out = tmp_path / "report"
    cmd = ["report", "--only", "C7", "--experiments", exps, "--out", out, "-j", "2"]
    interrupt(cmd, out, tmp_path, how)
    before = snapshot_runs(out)
    assert 1 <= len(before) < 6
    p = run_proc(cmd, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"{len(before)} reused, {6 - len(before)} to train" in flat(p.stdout)
    after = snapshot_runs(out)
    assert len(after) == 6 and all(after[h] == v for h, v in before.items())
    assert json.loads((out / "report.json").read_text())["n_trained"] == 6 - len(before)


# -- stale results never drawn ---------------------------------------------------------------------------------------
def test_a_smaller_second_train_into_the_same_folder_shows_only_its_own_runs(tmp_path):
    """3 seeds x 2 epochs, then 2 seeds x 1 epoch into the same --out: the tables, experiment.json and the figure of
    the second call are those of a clean folder; the first call's runs stay in runs/ as a cache."""
    cfg = write_config(tmp_path)
    mixed, clean = tmp_path / "mixed", tmp_path / "clean"
    first = ["train", cfg, "train.epochs=2", "train.seeds=3", "-j", "2"]
    second = ["train", cfg, "train.epochs=1", "train.seeds=2", "-j", "2"]
    assert run_proc([*first, "--out", mixed], cwd=tmp_path).returncode == 0
    assert run_proc([*second, "--out", mixed], cwd=tmp_path).returncode == 0
    assert run_proc([*second, "--out", clean], cwd=tmp_path).returncode == 0
    assert len(run_dirs(mixed)) == 6 + 4 and len(run_dirs(clean)) == 4  # the cache is kept

    def numbers(folder):
        rows = read_csv(folder / "summary.csv")
        return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]

    assert numbers(mixed) == numbers(clean)
    exp_m, exp_c = (json.loads((f / "experiment.json").read_text()) for f in (mixed, clean))
    assert exp_m["runs"] == exp_c["runs"] and len(exp_m["runs"]) == 4
    assert exp_m["comparisons"] == exp_c["comparisons"]
    for f in (mixed, clean):  # redraw from the stored numbers: the same bytes from both folders
        p = run_proc(["plot", f, "--format", "svg", "--out", tmp_path / f"fig-{f.name}"], cwd=tmp_path)
        assert p.returncode == 0, p.stderr
    svg = [(tmp_path / f"fig-{f.name}" / "learning_curves.svg").read_bytes() for f in (mixed, clean)]
    assert svg[0] == svg[1]
