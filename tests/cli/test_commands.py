"""The command line, through typer's CliRunner and through real processes (python -m bncli and the bncli script)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import bncli
from bncli.cli import app
from bncli.config import load_config, resolved_budget
from tiny import run_dir, tiny_config

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "experiments" / "quickstart.yaml"
SCRIPT = Path(sys.executable).parent / "bncli"

TINY = tiny_config("tinycli")


def line_of(text, fragment):
    """1-based number of the first line of ``text`` containing ``fragment``."""
    return next(i for i, ln in enumerate(text.splitlines(), 1) if fragment in ln)


def flat(text):
    return " ".join(text.split())


def write(tmp_path, text=TINY, name="tiny.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default results/ directory would land here, never in the repository
    return CliRunner()


def invoke(runner, args):
    return runner.invoke(app, [str(a) for a in args])


def run_proc(cmd, cwd, timeout=120):
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    env["MPLBACKEND"] = "Agg"
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def read_summary(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- help and version ------------------------------------------------------------------------------------------------
def test_help_and_version_cli_runner(runner):
    r = invoke(runner, ["--help"])
    assert r.exit_code == 0
    assert "train" in r.stdout and "--version" in r.stdout
    r = invoke(runner, ["train", "--help"])
    assert r.exit_code == 0
    assert "--out" in r.stdout and "--workers" in r.stdout
    r = invoke(runner, ["--version"])
    assert r.exit_code == 0
    assert r.stdout.strip() == f"bncli {bncli.__version__}"


@pytest.mark.parametrize("prefix", [[sys.executable, "-m", "bncli"], [SCRIPT]], ids=["python-m", "script"])
def test_help_and_version_subprocess(prefix, tmp_path):
    if prefix == [SCRIPT] and not SCRIPT.exists():
        pytest.fail(f"console script not installed next to the interpreter: {SCRIPT}")
    r = run_proc([*prefix, "--version"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"bncli {bncli.__version__}"
    r = run_proc([*prefix, "--help"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "train" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


# -- a successful run --------------------------------------------------------------------------------------------------
def test_tiny_train_cli_runner_with_overrides(runner, tmp_path):
    cfg = write(tmp_path)
    out = tmp_path / "out"
    r = invoke(runner, ["train", cfg, "train.steps=20", "model.bn=[none, after]", "--out", out, "-j", "1"])
    assert r.exit_code == 0, r.output
    assert "final acc" in r.stdout
    for arm in ("none", "after"):
        assert arm in r.stdout
    assert "after - none" in r.stdout
    assert "Traceback" not in r.output
    assert {p.name for p in out.iterdir()} == {"config.yaml", "summary.csv", "experiment.json",
                                               "learning_curves.png", "runs", ".bncli.json", ".bncli.lock"} - \
        ({".bncli.lock"} - {p.name for p in out.iterdir()})  # the manifest always, the lock file where it stays
    assert len(list((out / "runs").iterdir())) == 4
    rows = read_summary(out / "summary.csv")
    assert [(x["arm"], x["seed"]) for x in rows] == [("none", "0"), ("none", "1"), ("after", "0"), ("after", "1")]
    assert {x["steps_done"] for x in rows} == {"20"}  # the override took effect
    assert "steps: 20" in (out / "config.yaml").read_text()
    assert not (tmp_path / "results").exists()


def test_default_output_directory_is_results_name(runner, tmp_path):
    cfg = write(tmp_path)
    r = invoke(runner, ["train", cfg, "train.seeds=1", "model.bn=none", "-j", "1"])
    assert r.exit_code == 0, r.output
    assert (run_dir(tmp_path / "results" / "tinycli", "none", 0) / "metrics.csv").exists()


def test_tiny_train_console_script(tmp_path):
    cfg = write(tmp_path)
    out = tmp_path / "out"
    r = run_proc([SCRIPT, "train", cfg, "optimizer.lr=0.2", "train.seeds=[3]", "--out", out, "-j", "1"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "final acc" in r.stdout and "none" in r.stdout and "before" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
    rows = read_summary(out / "summary.csv")
    assert [(x["arm"], x["seed"]) for x in rows] == [("none", "3"), ("before", "3")]
    assert "lr: 0.2" in (out / "config.yaml").read_text()
    meta = json.loads((run_dir(out, "none", 3) / "meta.json").read_text())
    assert meta["blas_threads"] in (1, None)


def test_quickstart_shortened_python_m(tmp_path):
    """The real quickstart on the bundled MNIST subset, cut to 1 epoch and 2 seeds (default worker count)."""
    out = tmp_path / "qs"
    r = run_proc([sys.executable, "-m", "bncli", "train", QUICKSTART, "train.epochs=1", "train.seeds=2",
                  "--out", out], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert "final acc" in r.stdout
    for s in ("none", "before", "after", "before - none", "after - none"):
        assert s in r.stdout
    rows = read_summary(out / "summary.csv")
    assert len(rows) == 6 and {x["status"] for x in rows} == {"ok"}
    qs, _ = load_config(QUICKSTART, ["train.epochs=1"])
    total, _ = resolved_budget(qs.train, 4000)  # 4,000 training images in the bundled subset
    assert {x["steps_done"] for x in rows} == {str(total)}
    acc = {}
    for x in rows:
        acc.setdefault(x["arm"], []).append(float(x["final_test_acc"]))
    mean = {arm: sum(v) / len(v) for arm, v in acc.items()}
    # the point of the quickstart: BN lets the sigmoid network learn much faster than without BN
    assert mean["before"] > mean["none"] + 0.3
    assert mean["after"] > mean["none"] + 0.3
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- bad input: exit code 2, one message naming where and what, no traceback, nothing written ------------------------
def _case(name, tmp_path):
    """(args after 'train', the fragments the message must contain)."""
    out = tmp_path / "out"
    if name == "missing-file":
        p = tmp_path / "nope.yaml"
        return [p, "--out", out], [f"{p}", "not found"]
    if name == "yaml-syntax":
        text = TINY.replace("  hidden: [16, 16]", "  hidden: [16, 16\n  width: 3")
        p = write(tmp_path, text)
        return [p, "--out", out], [f"{p}:", "YAML syntax error"]
    if name == "unknown-key":
        text = TINY.replace("  hidden: [16, 16]", "  hidden: [16, 16]\n  hiden: 3")
        p = write(tmp_path, text)
        return [p, "--out", out], [f"{p}:{line_of(text, 'hiden')}: model.hiden: unknown key", "activation"]
    if name == "negative-lr":
        text = TINY.replace("lr: 0.1", "lr: -0.1")
        p = write(tmp_path, text)
        return [p, "--out", out], [f"{p}:{line_of(text, 'lr: -0.1')}: optimizer.lr:", "greater than 0", "-0.1"]
    if name == "negative-lr-override":
        p = write(tmp_path)
        return [p, "optimizer.lr=-0.1", "--out", out], ["command line 'optimizer.lr=-0.1': optimizer.lr:",
                                                        "greater than 0"]
    if name == "batch-too-large":
        text = TINY.replace("batch_size: 30", "batch_size: 301")
        p = write(tmp_path, text)
        return [p, "--out", out], [f"{p}:{line_of(text, 'batch_size')}: train.batch_size:", "301", "300"]
    if name == "unknown-dataset":
        text = TINY.replace("name: synthetic", "name: imagenet")
        p = write(tmp_path, text)
        return [p, "--out", out], [f"{p}:{line_of(text, 'imagenet')}: data.name:", "imagenet", "mnist-5k"]
    if name == "unwritable-out":
        p = write(tmp_path)
        (tmp_path / "afile").write_text("a regular file\n")
        bad = tmp_path / "afile" / "out"
        return [p, "--out", bad], ["--out", f"{bad}", "cannot write"]
    if name == "override-without-equals":
        p = write(tmp_path)
        return [p, "optimizer.lr", "--out", out], ["override 'optimizer.lr'", "key=value"]
    if name == "wrong-type-override":
        p = write(tmp_path)
        return [p, "train.steps=many", "--out", out], ["command line 'train.steps=many': train.steps:", "many"]
    if name == "config-is-a-directory":
        d = tmp_path / "adir.yaml"
        d.mkdir()
        return [d, "--out", out], [f"{d}", "cannot read"]
    raise AssertionError(name)


BAD = ["missing-file", "yaml-syntax", "unknown-key", "negative-lr", "negative-lr-override", "batch-too-large",
       "unknown-dataset", "unwritable-out", "override-without-equals", "wrong-type-override",
       "config-is-a-directory"]


def _snapshot(tmp_path):
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))


def _check_usage_error(code, stdout, stderr, fragments, before, tmp_path):
    assert code == 2, (stdout, stderr)
    assert "Traceback" not in stdout + stderr
    msg = flat(stderr)
    assert msg.startswith("error:"), stderr
    for f in fragments:
        assert f in msg, (f, stderr)
    assert len(stderr.strip().splitlines()) <= 3, stderr  # one message (rich may fold it at 120 columns)
    assert "error:" not in stdout
    assert _snapshot(tmp_path) == before  # no output or run directory created, no hidden leftovers
    assert not (tmp_path / "out").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("case", BAD)
def test_bad_input_cli_runner(case, runner, tmp_path):
    args, fragments = _case(case, tmp_path)
    before = _snapshot(tmp_path)
    r = invoke(runner, ["train", *args])
    _check_usage_error(r.exit_code, r.stdout, r.stderr, fragments, before, tmp_path)
    assert r.exception is None or isinstance(r.exception, SystemExit)


@pytest.mark.parametrize("case", BAD)
def test_bad_input_subprocess(case, tmp_path):
    args, fragments = _case(case, tmp_path)
    before = _snapshot(tmp_path)
    r = run_proc([sys.executable, "-m", "bncli", "train", *args], tmp_path)
    _check_usage_error(r.returncode, r.stdout, r.stderr, fragments, before, tmp_path)


@pytest.mark.parametrize("case", ["unknown-key", "override-without-equals"])
def test_bad_input_console_script(case, tmp_path):
    args, fragments = _case(case, tmp_path)
    before = _snapshot(tmp_path)
    r = run_proc([SCRIPT, "train", *args], tmp_path)
    _check_usage_error(r.returncode, r.stdout, r.stderr, fragments, before, tmp_path)


def test_no_arguments_shows_usage(runner):
    r = invoke(runner, ["train"])
    assert r.exit_code == 2
    assert "Traceback" not in r.output
    assert "CONFIG" in r.output or "config" in r.output.lower()


def test_error_message_keeps_a_long_path_on_one_line(tmp_path):
    d = tmp_path / ("experiments-" + "x" * 60) / ("more-" + "y" * 40)
    d.mkdir(parents=True)
    text = TINY.replace("lr: 0.1", "lr: -0.1")
    p = write(d, text, name="negative-learning-rate.yaml")
    assert len(str(p)) > 120
    r = run_proc([sys.executable, "-m", "bncli", "train", p, "--out", tmp_path / "out"], tmp_path)
    assert r.returncode == 2
    where = f"{p}:{line_of(text, 'lr: -0.1')}: optimizer.lr:"
    assert any(where in ln for ln in r.stderr.splitlines()), r.stderr


# -- runtime failures: exit code 1, the run recorded as failed, no traceback -----------------------------------------
def test_run_failure_exit_code_1(runner, tmp_path, monkeypatch):
    import bncli.runs

    real = bncli.runs.dispatcher.train_run

    def flaky(cfg, data, **kw):
        if cfg.model.bn == ["before"]:
            raise RuntimeError("simulated failure in training")
        return real(cfg, data, **kw)

    monkeypatch.setattr(bncli.runs.dispatcher, "train_run", flaky)
    out = tmp_path / "out"
    r = invoke(runner, ["train", write(tmp_path), "--out", out, "-j", "1"])
    assert r.exit_code == 1, r.output
    assert isinstance(r.exception, SystemExit)
    assert "Traceback" not in r.output
    assert "failed" in r.output and "simulated failure in training" in r.output
    assert "final acc" in r.stdout  # the table is still printed
    rows = read_summary(out / "summary.csv")
    status = {(x["arm"], x["seed"]): (x["status"], x["error"]) for x in rows}
    assert status[("before", "0")] == ("failed", "RuntimeError: simulated failure in training")
    assert status[("before", "1")][0] == "failed"
    assert status[("none", "0")] == ("ok", "") and status[("none", "1")] == ("ok", "")
    assert not (out / "runs" / rows[2]["hash"]).exists() and not (out / "runs" / rows[3]["hash"]).exists()
    assert (run_dir(out, "none", 1) / "metrics.csv").exists()
    assert {p.stem for p in (out / "failed").iterdir()} == {rows[2]["hash"], rows[3]["hash"]}


def test_all_runs_failing_still_exit_1_with_message(runner, tmp_path, monkeypatch):
    import bncli.runs

    def boom(cfg, data, **kw):
        raise RuntimeError("nothing works")

    monkeypatch.setattr(bncli.runs.dispatcher, "train_run", boom)
    out = tmp_path / "out"
    r = invoke(runner, ["train", write(tmp_path), "--out", out, "-j", "1"])
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    assert "nothing works" in r.output
    rows = read_summary(out / "summary.csv")
    assert [x["status"] for x in rows] == ["failed"] * 4


def test_ctrl_c_keeps_finished_runs(runner, tmp_path, monkeypatch):
    import bncli.runs

    real = bncli.runs.dispatcher.train_run
    calls = []

    def interrupted(cfg, data, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(cfg, data, **kw)

    monkeypatch.setattr(bncli.runs.dispatcher, "train_run", interrupted)
    out = tmp_path / "out"
    r = invoke(runner, ["train", write(tmp_path), "--out", out, "-j", "1"])
    assert r.exit_code == 130, r.output
    assert "interrupted" in r.output
    assert "Traceback" not in r.output
    assert len(list((out / "runs").iterdir())) == 1  # the first run finished; the second never started
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]


def test_all_runs_diverging_early_is_a_result_not_a_crash(runner, tmp_path):
    out = tmp_path / "out"
    r = invoke(runner, ["train", write(tmp_path), "optimizer.lr=1e20", "model.bn=[none, after]", "--out", out,
                        "-j", "1"])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == 0
    assert "div" in r.stdout
