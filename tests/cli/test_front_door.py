"""The front door: complete help text, user text printed literally, one line and an exit code for every failure
(config, runtime, I/O, a bug), plain progress lines when piped, no ghost bars."""

from __future__ import annotations

import errno
import io
import re
import subprocess
import time
from pathlib import Path

import pytest
from rich.console import Console
from sweep_helpers import bncli_cmd, proc_env, run_proc, write_config
from typer.testing import CliRunner

from bncli.cli import app
from bncli.cli.progress import RunProgress
from bncli.runs import RunSpec


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("BNCLI_DEBUG", raising=False)
    return CliRunner()


def invoke(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


# -- help ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cmd, fragments", [
    (["train"], ["Output directory [default: results/<name>]", "[KEY=VALUE]", "train.steps=N replaces"]),
    (["sweep"], ["Output directory [default: results/<name>]", "key=logrange(min,max,per_decade)",
                 "bncli[dask]"]),
    (["lrfind"], ["Output directory [default: results/<name>-lrfind]"]),
    (["report"], ["bncli[dask]", "[default: results/report-quick or results/report-full]"]),
    (["plot"], ["[default: RESULTS_DIR]"]),
    (["data", "fetch"], ["[default: $BNCLI_DATA, else $XDG_CACHE_HOME/bncli or ~/.cache/bncli]"]),
])
def test_help_text_keeps_everything_in_square_brackets(tmp_path, cmd, fragments):
    p = run_proc([*cmd, "--help"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    text = " ".join(p.stdout.split())
    for f in fragments:
        assert f in text, (f, p.stdout)


def test_top_level_help_lists_every_command_and_debug(tmp_path):
    p = run_proc(["--help"], cwd=tmp_path)
    assert p.returncode == 0
    for word in ("train", "sweep", "lrfind", "plot", "report", "data", "--debug", "--version"):
        assert word in p.stdout


# -- user text is printed literally --------------------------------------------------------------------------------------
def test_an_output_path_with_brackets_is_printed_and_used_literally(tmp_path):
    cfg = write_config(tmp_path)
    out = tmp_path / "res[/]x" / "[bold]y"
    p = run_proc(["train", cfg, "train.seeds=1", "--out", out, "-j", "1"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert str(out) in " ".join(p.stdout.split()).replace(" /", "/")
    assert (out / "experiment.json").exists()
    p = run_proc(["plot", out, "--out", tmp_path / "figs[x]"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"wrote {tmp_path / 'figs[x]' / 'learning_curves.png'}" in p.stdout


def test_a_config_value_that_looks_like_markup_is_echoed_literally(runner, tmp_path):
    r = invoke(runner, "train", write_config(tmp_path), "optimizer.name=[red]sgd[/red]", "--out", tmp_path / "o")
    assert r.exit_code == 2
    line = one_error_line(r.output)
    assert "optimizer.name" in line and "[red]sgd[/red]" in line


# -- failures: one line, the right exit code -----------------------------------------------------------------------------
def test_a_full_disk_is_one_line_naming_the_file_exit_1(runner, tmp_path, monkeypatch):
    import bncli.experiment

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(bncli.experiment.atomic, "write_text", full)
    r = invoke(runner, "train", write_config(tmp_path), "train.seeds=1", "--out", tmp_path / "o", "-j", "1")
    assert r.exit_code == 1, r.output
    line = one_error_line(r.output)
    assert "config.yaml: No space left on device (free some space" in line


def test_a_read_only_folder_is_one_line_exit_1(runner, tmp_path, monkeypatch):
    import bncli.experiment

    def read_only(path, text):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(bncli.experiment.atomic, "write_text", read_only)
    r = invoke(runner, "train", write_config(tmp_path), "train.seeds=1", "--out", tmp_path / "o", "-j", "1")
    assert r.exit_code == 1
    assert "Read-only file system (the file system is read-only; pass --out" in one_error_line(r.output)


def test_a_bug_is_one_line_with_the_saved_traceback(runner, tmp_path, monkeypatch):
    import bncli.experiment

    def bug(*a, **k):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(bncli.experiment, "aggregate", bug)
    r = invoke(runner, "train", write_config(tmp_path), "train.seeds=1", "--out", tmp_path / "o", "-j", "1")
    assert r.exit_code == 1
    line = one_error_line(r.output)
    assert "unexpected ZeroDivisionError: simulated bug" in line and "--debug" in line
    (saved,) = (tmp_path / "state" / "bncli").glob("bncli-crash-*.txt")
    assert str(saved) in line
    text = saved.read_text()
    assert "Traceback" in text and "ZeroDivisionError: simulated bug" in text


def test_debug_prints_the_traceback_instead(runner, tmp_path, monkeypatch):
    import bncli.experiment

    def bug(*a, **k):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(bncli.experiment, "aggregate", bug)
    r = invoke(runner, "--debug", "train", write_config(tmp_path), "train.seeds=1", "--out", tmp_path / "o", "-j", "1")
    assert r.exit_code == 1
    assert "Traceback" in r.output and "ZeroDivisionError: simulated bug" in r.output
    assert not (tmp_path / "state" / "bncli").exists()


def test_a_config_path_that_is_a_folder_is_one_line_exit_2_in_a_real_process(tmp_path):
    (tmp_path / "exp.yaml").mkdir()
    p = run_proc(["train", tmp_path / "exp.yaml"], cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.startswith("error: ") and len(p.stderr.strip().splitlines()) == 1


# -- progress --------------------------------------------------------------------------------------------------------------
def spec(i, point=None):
    return RunSpec(point or {}, "before", i, None, f"h{i}", Path("."))


def plain_console():
    return Console(file=io.StringIO(), force_terminal=False, width=120)


def test_plain_progress_prints_steady_lines_and_a_last_one():
    out = plain_console()
    with RunProgress(3, out=out, every_s=0.05) as ui:
        time.sleep(0.15)  # nothing has moved yet: no ETA to give
        ui.on_progress(spec(0), 10, 100, 0.5, 0.8)
        time.sleep(0.3)
        ui.on_done(spec(0), {"status": "diverged"})
        ui.on_done(spec(1), RuntimeError("boom"))
        ui.on_done(spec(2), {"status": "ok"})
    lines = out.file.getvalue().splitlines()
    assert any("runs: 0/3 done, 0 running, ETA unknown" in ln for ln in lines), lines
    assert any(re.search(r"runs: 0/3 done, 1 running, ETA \d+s$", ln) for ln in lines), lines  # from its steps
    assert "failed before s1: boom" in lines
    assert lines[-1].endswith("runs: 3/3 done (1 diverged, 1 failed), 0 running, finished")
    assert all(ln.startswith("[") or ln.startswith("failed") for ln in lines)


def test_the_eta_weights_runs_by_their_work():
    """A report mixes runs a thousandfold apart in size: the ETA follows the work done, not the runs counted."""
    from bncli.cli.progress import _Counts

    c = _Counts(2, str, work={"h0": 1.0, "h1": 99.0})
    c.t0 -= 10  # ten seconds in
    c.finish(spec(0), {"status": "ok"})
    assert c.fraction() == pytest.approx(0.01) and c.eta() == "ETA 16m30s"  # 10 s x 99
    c.step(spec(1), 50, 100)  # the big run half done
    assert c.fraction() == pytest.approx(0.505) and c.eta() == "ETA 10s"
    unweighted = _Counts(2, str)
    unweighted.finish(spec(0), {"status": "ok"})
    assert unweighted.fraction() == 0.5


def test_piped_commands_print_progress_lines(tmp_path):
    p = subprocess.run(bncli_cmd("train", write_config(tmp_path), "--out", tmp_path / "o", "-j", "1"), cwd=tmp_path,
                       capture_output=True, text=True, env=proc_env(), timeout=120)
    assert p.returncode == 0, p.stderr
    assert "runs: 4/4 done, 0 running, finished" in p.stdout
    assert "\x1b[" not in p.stdout  # no terminal control codes in a log


def test_a_late_progress_message_does_not_bring_back_a_finished_bar():
    out = Console(file=io.StringIO(), force_terminal=True, width=120)
    with RunProgress(2, out=out, plain=False) as ui:
        ui.on_progress(spec(0), 10, 100, 0.5, 0.8)
        assert len(ui.progress.tasks) == 2
        ui.on_done(spec(0), {"status": "ok"})
        ui.on_progress(spec(0), 100, 100, 0.4, 0.9)  # queued before the run ended, delivered after
        assert [t.description for t in ui.progress.tasks] == ["[bold]runs"]


def test_bar_labels_name_the_swept_values_arm_and_seed():
    s = spec(3, {"optimizer.lr": 0.1, "optimizer.name": "adam"})
    assert s.label() == "lr=0.1 name=adam before s3"
    assert s.label(["optimizer.name"]) == "name=adam before s3"


def test_a_finished_experiment_needs_no_cluster_to_be_summarized_again(runner, tmp_path):
    cfg = write_config(tmp_path)
    assert invoke(runner, "train", cfg, "--out", tmp_path / "o", "-j", "1").exit_code == 0
    r = invoke(runner, "train", cfg, "--out", tmp_path / "o", "--executor", "dask://127.0.0.1:9")
    assert r.exit_code == 0, r.output  # every run is done: the (unreachable) cluster is never contacted
    assert "4 already done, 0 to train" in " ".join(r.output.split())
