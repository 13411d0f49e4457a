"""Issue 25: every refusal of the command line is one line `error: ...` with a way forward (click's usage errors
included), and what bncli prints says what it means."""

from __future__ import annotations

import pytest
from sweep_helpers import run_proc
from typer.testing import CliRunner

from bncli.cli import app


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("BNCLI_DEBUG", raising=False)
    return CliRunner()


def one_error_line(result_or_text) -> str:
    text = getattr(result_or_text, "output", result_or_text)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    return lines[0]


# -- click's usage errors ---------------------------------------------------------------------------------------------
def test_unknown_option_is_one_line_pointing_at_the_config_key_through_a_real_process(tmp_path):
    p = run_proc(["train", "quickstart", "--lr", "0.1"], cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    line = one_error_line(p.stderr)
    assert "--lr" in line and "optimizer.lr=0.1" in line and "bncli train --help" in line, line
    assert "Usage:" not in p.stderr and p.stdout == ""


@pytest.mark.parametrize("args, fragments", [
    (["train", "quickstart", "--lr=0.5"], ["no option --lr", "optimizer.lr=0.5"]),
    (["sweep", "quickstart", "--batch-size", "32"], ["no option --batch-size", "train.batch_size=32"]),
    (["train", "quickstart", "--ot", "x"], ["no option --ot", "did you mean --out?", "bncli train --help"]),
    (["train"], ["missing CONFIG", "bncli examples", "bncli train --help"]),
    (["train", "quickstart", "-j", "abc"], ["--workers", "bncli train --help"]),
    (["trian", "x"], ["no command 'trian'", "did you mean train?", "bncli --help"]),
    (["data", "bogus"], ["no command 'bogus'", "fetch, list, info", "bncli data --help"]),
    (["data", "fetch"], ["bncli data fetch", "missing argument", "bncli data fetch --help"]),
    (["-q", "-v", "train", "x"], ["--quiet or --verbose", "bncli --help"]),
    (["--bogus"], ["no option --bogus", "bncli --help"]),
])
def test_click_usage_errors_are_one_line_with_a_way_forward(runner, args, fragments):
    result = runner.invoke(app, args, prog_name="bncli")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    for f in fragments:
        assert f in line, (f, line)


def test_no_arguments_still_prints_the_help(runner):
    result = runner.invoke(app, ["data"])
    assert "fetch" in result.output and "Usage:" in result.output, result.output


# -- config keys: did you mean ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("override, meant", [
    ("lr=0.1", "optimizer.lr"), ("optimizer.lrr=0.1", "optimizer.lr"), ("train.stpes=5", "train.steps"),
    ("batch_size=8", "train.batch_size"), ("model.bn_epsilon=0.1", "model.bn_eps"),
])
def test_unknown_config_key_suggests_the_dotted_key(runner, override, meant):
    result = runner.invoke(app, ["train", "quickstart", override, "--out", "o"])
    assert result.exit_code == 2, result.output
    line = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and f"did you mean {meant}?" in line[0], result.output


def test_misspelt_section_is_blamed_on_the_override_not_the_file(runner):
    result = runner.invoke(app, ["train", "quickstart", "optimzer.lr=0.1", "--out", "o"])
    line = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert result.exit_code == 2 and len(line) == 1, result.output
    assert "command line 'optimzer.lr=0.1'" in line[0] and "did you mean optimizer?" in line[0], line


# -- a sweep given to train -------------------------------------------------------------------------------------------
def test_train_refuses_an_experiment_with_a_sweep_and_points_at_bncli_sweep(runner, tmp_path):
    from tiny import tiny_config

    cfg = tmp_path / "swept.yaml"
    cfg.write_text(tiny_config("swept") + "sweep:\n  parameters:\n    optimizer.lr: {values: [0.05, 0.1]}\n")
    result = runner.invoke(app, ["train", str(cfg), "--out", "o"], prog_name="bncli")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert f"bncli sweep {cfg}" in line and "sweep=null" in line and "optimizer.lr" in line, line
    assert not (tmp_path / "o").exists()


# -- output that says what it means ------------------------------------------------------------------------------------
def _tiny(tmp_path, name, sweep=""):
    from tiny import tiny_config

    path = tmp_path / f"{name}.yaml"
    path.write_text(tiny_config(name) + sweep)
    return path


def test_verbose_sweep_prints_the_running_blas_kernel_bounded_widths_and_the_figure(tmp_path):
    """One real process: -v names the BLAS kernel that runs (here forced by OPENBLAS_CORETYPE, which the build
    target never shows); a usable range reaching the grid's end prints its width as a lower bound; the closing
    line lists range.png."""
    import os
    import subprocess
    import sys

    import numpy as np
    from sweep_helpers import proc_env

    build = str(np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {}))
    if "DYNAMIC_ARCH" not in build or "Sandybridge" in build:
        pytest.skip("needs an OpenBLAS built for several CPUs, not for Sandybridge")
    cfg = _tiny(tmp_path, "edge", "sweep:\n  parameters:\n    optimizer.lr: {values: [0.001, 0.1, 1.0]}\n"
                                  "  floor: 0.5\n")
    env = {**proc_env(), "OPENBLAS_CORETYPE": "Sandybridge"}
    p = subprocess.run([sys.executable, "-m", "bncli", "-v", "sweep", str(cfg), "--out", "o", "-j", "1"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=180, env=env)
    assert p.returncode == 0, p.stderr
    machine = [ln for ln in p.stdout.splitlines() if ln.startswith("machine:")]
    assert len(machine) == 1 and "running kernel Sandybridge" in machine[0], p.stdout
    rows = [ln for ln in p.stdout.splitlines() if ln.startswith("│ none") or ln.startswith("│ before")]
    assert len(rows) == 2 and all("≥ " in r and "±" not in r.split("│")[4] for r in rows), p.stdout
    assert "sweep.json, range.png)" in p.stdout and os.path.isfile(tmp_path / "o" / "range.png")


def test_train_tables_say_no_interval_not_none(runner, tmp_path):
    cfg = _tiny(tmp_path, "few")
    result = runner.invoke(app, ["train", str(cfg), "--out", "o", "-j", "1"], prog_name="bncli")
    assert result.exit_code == 0, result.output
    assert "no interval (n < 6)" in result.output and "none (n < 6)" not in result.output, result.output


def test_an_estimate_and_its_interval_share_one_precision():
    from bncli.report.verdict import Effect

    e = Effect("log10(BN / no BN)", 10, 1.0, 0.1, 0.8876, 1.112, unit="decades", direction=+1)
    assert e.text() == "+1.000 decades [+0.888, +1.112]", e.text()
    tiny = Effect("relative error", 1, 3.9e-16, 0.0, 1e-17, 2.6e-7)  # scientific: each number on its own
    assert "e-16" in tiny.text() and "e-7" in tiny.text()


def test_report_terminal_table_labels_every_number(runner, tmp_path, monkeypatch):
    """The claims table printed a claim's primary effects as bare numbers ('3.9e-16; 2.6e-7')."""
    import types

    import bncli.report as report
    from bncli.report.verdict import Effect

    effects = [Effect("naive relative error", 1, 0.39, 0.0, 0.39, 0.39),
               Effect("exact relative error", 1, 2.6e-7, 0.0, 2.6e-7, 2.6e-7)]
    claim = types.SimpleNamespace(id="C0", title="a claim", verdict="supported", stability={}, effects=effects,
                                  primary=[0, 1])
    monkeypatch.setattr(report, "plan_report", lambda mode, out, exps, only: (tmp_path / "rep", {}))
    monkeypatch.setattr(report, "run_report", lambda *a, **k: [claim])
    result = runner.invoke(app, ["report", "--out", str(tmp_path / "rep")], prog_name="bncli")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "naive relative error: 0.39" in text and "exact relative error: 2.6e-7" in text, result.output


# -- data fetch without a network ---------------------------------------------------------------------------------------
def test_fetch_that_reaches_no_server_says_how_to_do_without_and_leaves_nothing(runner, tmp_path):
    root = tmp_path / "cache" / "bncli"
    result = runner.invoke(app, ["data", "fetch", "mnist", "--root", str(root), "--mirror", "http://127.0.0.1:9/"],
                           prog_name="bncli")
    assert result.exit_code == 1, result.output
    line = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and "Traceback" not in result.output, result.output
    for f in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", str(root / "mnist"), "data.path=DIR"):
        assert f in line[0], (f, line[0])
    assert not (tmp_path / "cache").exists()  # no lock, no manifest, no empty folders
    kept = tmp_path / "kept" / "mnist"
    kept.mkdir(parents=True)
    runner.invoke(app, ["data", "fetch", "mnist", "--root", str(kept.parent), "--mirror", "http://127.0.0.1:9/"])
    assert list(kept.iterdir()) == []
