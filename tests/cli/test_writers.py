"""One writer per results folder, and bncli writes only where it owns (bncli/runs/owner.py), through real processes:
a second command on a folder in use is refused naming the first; a folder deleted mid-command is an error; a folder
holding the user's files, the results of another kind of command, the shipped experiments or `--out ''` is refused
(--force accepts what it may); an interrupted command never leaves a config its tables disagree with."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from sweep_helpers import (bncli_cmd, group_gone, kill_group, proc_env, run_dirs, run_proc, wait_for_first_run,
                           write_config)

from bncli.config import load_config
from bncli.examples import SHIPPED

LONG = "train.steps=20000"  # about a second per run of the tiny config: still running when the test acts


def error_line(p) -> str:
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    return lines[0]


def start(args, cwd) -> subprocess.Popen:
    return subprocess.Popen(bncli_cmd(*args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=proc_env(), start_new_session=True)


def finish(proc, timeout=240) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert group_gone(proc.pid)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_for(done, proc, timeout=120):
    t0 = time.monotonic()
    while not done():
        assert proc.poll() is None, f"ended first: {proc.returncode} {proc.stderr.read()[-2000:]}"
        assert time.monotonic() - t0 < timeout
        time.sleep(0.01)


def config_agrees(out: Path) -> dict:
    """config.yaml is the config of the runs experiment.json lists; returns the config as YAML."""
    cfg, _ = load_config(out / "config.yaml")
    exp = json.loads((out / "experiment.json").read_text())
    assert cfg.hash() == exp["config_hash"]
    assert len(exp["runs"]) == len(cfg.model.bn) * len(cfg.train.seeds)
    return yaml.safe_load((out / "config.yaml").read_text())


def files(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def visible(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if not p.name.startswith("."))


# -- one writer ------------------------------------------------------------------------------------------------------
def test_a_second_train_on_a_folder_in_use_is_refused_naming_the_first(tmp_path):
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    first = start(["train", cfg, LONG, "train.seeds=3", "--out", out, "-j", "1"], tmp_path)
    try:
        wait_for_first_run(first, out)
        t0 = time.monotonic()
        second = run_proc(["train", cfg, "train.steps=100", "--out", out, "-j", "1"], cwd=tmp_path)
        assert first.poll() is None, "the first train ended before the second started: make LONG longer"
        assert second.returncode == 1, second.stderr[-3000:]
        line = error_line(second)
        assert f"{out} is in use by another bncli (pid {first.pid}, started " in line
        assert "bncli train" in line and "wait for it to finish or choose another --out" in line
        assert "to train" not in second.stdout  # refused before it printed its plan
        assert time.monotonic() - t0 < 60
    finally:
        done = finish(first)
    assert done.returncode == 0, done.stderr[-3000:]
    assert config_agrees(out)["train"]["steps"] == 20000


def test_a_folder_deleted_while_a_train_runs_is_an_error_not_exit_0(tmp_path):
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    proc = start(["train", cfg, LONG, "--out", out, "-j", "1"], tmp_path)
    wait_for_first_run(proc, out)
    shutil.rmtree(out)
    p = finish(proc)
    assert p.returncode == 1, p.stderr[-3000:]
    line = error_line(p)
    assert f"{out}: deleted or replaced while this bncli train ran" in line
    assert "runs that finished are kept where they were written" in line
    assert not (out / "experiment.json").exists() and not (out / "summary.csv").exists()


def test_ctrl_c_then_another_config_never_leaves_a_config_the_tables_disagree_with(tmp_path):
    """config.yaml is written with the tables, after the runs: a train interrupted before its tables leaves the
    previous train's config beside the previous train's tables."""
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    p = run_proc(["train", cfg, "train.steps=60", "--out", out, "-j", "1"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    n = len(run_dirs(out))
    proc = start(["train", cfg, LONG, "optimizer.lr=0.05", "--out", out, "-j", "1"], tmp_path)
    wait_for(lambda: len(run_dirs(out)) > n, proc)  # one of its runs finished: it is well under way
    proc.send_signal(signal.SIGINT)
    p = finish(proc)
    assert p.returncode == 130 and "interrupted" in p.stderr, p.stderr[-3000:]
    doc = config_agrees(out)
    assert doc["train"]["steps"] == 60 and doc["optimizer"]["lr"] == 0.1


# -- only where it owns ----------------------------------------------------------------------------------------------
def test_a_folder_of_the_users_files_is_refused_untouched_then_written_with_force(tmp_path):
    cfg = write_config(tmp_path)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.yaml").write_text("name: my own notes\n")
    (out / "summary.csv").write_text("my,own\n1,2\n")
    before = files(out)
    p = run_proc(["train", cfg, "--out", out, "-j", "1"], cwd=tmp_path)
    assert p.returncode == 2
    line = error_line(p)
    assert f"--out {out}: holds files bncli did not write (config.yaml; summary.csv)" in line and "--force" in line
    assert files(out) == before  # byte for byte, and nothing added
    p = run_proc(["train", cfg, "--out", out, "-j", "1", "--force"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    config_agrees(out)
    with open(out / "summary.csv", "a") as f:  # the user edits a table bncli wrote: it is theirs now
        f.write("edited\n")
    edited = (out / "summary.csv").read_bytes()
    p = run_proc(["train", cfg, "--out", out, "-j", "1"], cwd=tmp_path)
    assert p.returncode == 2
    assert "summary.csv, edited since bncli wrote it" in error_line(p)
    assert (out / "summary.csv").read_bytes() == edited
    p = run_proc(["train", cfg, "train.seeds=1", "--out", out, "-j", "1", "--force"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr


def c07_experiments(dest: Path) -> Path:
    doc = yaml.safe_load((SHIPPED / "c07_bias.yaml").read_text())
    doc.update(data={"name": "synthetic", "synthetic": {"n_train": 240, "n_test": 120, "n_features": 8,
                                                        "n_classes": 3}}, full=[])
    doc["model"]["hidden"] = [16, 16]
    doc["train"].update(seeds=2, batch_size=30, steps=30)
    doc["train"].pop("epochs", None)
    dest.mkdir()
    (dest / "c07_bias.yaml").write_text(yaml.safe_dump(doc))
    return dest


@pytest.mark.parametrize("other", ["sweep", "report"])
def test_another_command_into_a_train_folder_is_refused_then_replaces_it_with_force(tmp_path, other):
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    p = run_proc(["train", cfg, "--out", out, "-j", "1"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    before = files(out)
    cmd = (["sweep", cfg, "optimizer.lr=0.03,0.3"] if other == "sweep" else
           ["report", "--only", "C7", "--experiments", c07_experiments(tmp_path / "exps")])
    p = run_proc([*cmd, "--out", out, "-j", "1"], cwd=tmp_path)
    assert p.returncode == 2
    line = error_line(p)
    assert f"--out {out}: holds the results of bncli train" in line and "--force" in line
    assert files(out) == before
    p = run_proc([*cmd, "--out", out, "-j", "1", "--force"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert not (out / "experiment.json").exists() and not (out / "learning_curves.png").exists()
    marker = "sweep.json" if other == "sweep" else "report.json"
    assert (out / marker).is_file()
    p = run_proc(["plot", out, "--out", tmp_path / "figs"], cwd=tmp_path)  # the folder is one of the new kind
    assert p.returncode == 0, p.stderr
    assert {f.name for f in (tmp_path / "figs").rglob("*.png")} == ({"range.png"} if other == "sweep" else
                                                                    {"c07_bias.png"})
    p = run_proc(["train", cfg, "--out", out, "-j", "1"], cwd=tmp_path)  # and refused to a train now
    assert p.returncode == 2 and f"holds the results of bncli {other}" in error_line(p)


def test_empty_out_is_refused_and_nothing_is_written_into_the_current_folder(tmp_path):
    cfg = write_config(tmp_path)
    before = sorted(os.listdir(tmp_path))
    for cmd in (["train", cfg], ["sweep", cfg, "optimizer.lr=0.03,0.3"], ["lrfind", cfg, "--iters", "10"],
                ["plot", tmp_path]):
        p = run_proc([*cmd, "--out", ""], cwd=tmp_path)
        assert p.returncode == 2, (cmd, p.stderr)
        assert "--out '': empty" in error_line(p)
    assert sorted(os.listdir(tmp_path)) == before


@pytest.fixture
def shipped_untouched():
    """Whatever a test writes into the shipped experiments is removed, also when the test fails."""
    before = set(os.listdir(SHIPPED))
    yield
    for name in set(os.listdir(SHIPPED)) - before:
        p = SHIPPED / name
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_the_shipped_experiments_folder_is_refused_even_with_force(tmp_path, shipped_untouched, force):
    cfg = write_config(tmp_path)
    before = {p.name: p.read_bytes() for p in SHIPPED.iterdir()}
    for out in (SHIPPED, SHIPPED.resolve(), SHIPPED / "mine"):  # the package's link and the folder itself
        p = run_proc(["train", cfg, "train.seeds=1", "train.steps=10", "--out", out, "-j", "1", *force],
                     cwd=tmp_path)
        assert p.returncode == 2, p.stderr
        assert "inside the experiments shipped with bncli" in error_line(p)
    assert {p.name: p.read_bytes() for p in SHIPPED.iterdir()} == before
    p = run_proc(["examples"], cwd=tmp_path)
    assert " config " not in p.stdout and "mine" not in p.stdout


def test_plot_into_a_published_folder_is_refused_unless_forced(tmp_path):
    """A results folder without a manifest (published, or by an older bncli): `bncli plot` would replace figures
    bncli cannot tell it wrote. Elsewhere, or with --force, it draws."""
    cfg = write_config(tmp_path)
    out = tmp_path / "published"
    p = run_proc(["train", cfg, "--out", out, "-j", "1"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    (out / ".bncli.json").unlink(missing_ok=True)
    before = files(out)
    p = run_proc(["plot", out], cwd=tmp_path)
    assert p.returncode == 2
    line = error_line(p)
    assert f"{out}: holds figures bncli did not write (learning_curves.png; bncli results without a manifest" in line
    assert "published, or written by an older bncli" in line and "--force" in line
    assert files(out) == before
    assert run_proc(["plot", out, "--out", tmp_path / "figs"], cwd=tmp_path).returncode == 0
    assert run_proc(["plot", out, "--force"], cwd=tmp_path).returncode == 0
    assert run_proc(["plot", out], cwd=tmp_path).returncode == 0  # now bncli's figure


def test_lrfind_refuses_a_learning_rate_that_is_not_finite(tmp_path):
    cfg = write_config(tmp_path)
    for args in (["--end", "inf"], ["--start", "1e-3", "--end", "1e400"], ["--stop-factor", "inf"]):
        p = run_proc(["lrfind", cfg, "--out", tmp_path / "lr", *args], cwd=tmp_path)
        assert p.returncode == 2, p.stderr
        assert "expected a finite number" in error_line(p)
    assert not (tmp_path / "lr").exists()
