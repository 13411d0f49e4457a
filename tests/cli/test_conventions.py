"""Command-line conventions, through real processes: -q / -v anywhere on the line, shell completion, `bncli examples`,
shipped experiments by name."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tiny import tiny_config


def bncli(*args, cwd, env=None):
    e = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    e.update(MPLBACKEND="Agg", **(env or {}))
    return subprocess.run([sys.executable, "-m", "bncli", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=e)


@pytest.fixture
def tiny(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(tiny_config("tinyconv"))
    return p


def test_quiet_keeps_tables_and_drops_status_and_progress(tiny, tmp_path):
    r = bncli("train", tiny, "--out", tmp_path / "o", "-j", "1", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "mean ± sd over seeds" in r.stdout  # the result table
    assert "wrote" not in r.stdout and "runs;" not in r.stdout and "done" not in r.stdout and not r.stderr


def test_verbose_prints_each_run_and_the_machine(tiny, tmp_path):
    r = bncli("-v", "train", tiny, "--out", tmp_path / "o", "-j", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("done ") >= 4 and "final acc" in r.stdout and "machine:" in r.stdout and "BLAS" in r.stdout
    quiet_after = bncli("train", tiny, "--out", tmp_path / "o", "--verbose", cwd=tmp_path)  # after the command too
    assert quiet_after.returncode == 0 and "machine:" in quiet_after.stdout


def test_quiet_and_verbose_together_is_a_usage_error(tmp_path):
    r = bncli("-q", "-v", "examples", cwd=tmp_path)
    assert r.returncode == 2 and "--quiet or --verbose" in r.stderr and "Traceback" not in r.stderr


def test_completion_offers_the_shipped_experiments(tmp_path):
    r = subprocess.run([sys.executable, "-m", "bncli"], cwd=tmp_path, capture_output=True, text=True, env={
        **os.environ, "_BNCLI_COMPLETE": "complete_bash", "COMP_WORDS": "bncli train quick", "COMP_CWORD": "2"})
    # `python -m bncli` completes as the script would; the program name decides the variable
    if "quickstart" not in r.stdout:
        script = os.path.join(os.path.dirname(sys.executable), "bncli")
        r = subprocess.run([script], cwd=tmp_path, capture_output=True, text=True, env={
            **os.environ, "_BNCLI_COMPLETE": "complete_bash", "COMP_WORDS": "bncli train quick", "COMP_CWORD": "2"})
    assert r.stdout.split() == ["quickstart"], (r.stdout, r.stderr)
    r = bncli("--help", cwd=tmp_path)
    assert "--install-completion" in r.stdout


def test_examples_lists_and_copies(tmp_path):
    r = bncli("examples", cwd=tmp_path)
    assert r.returncode == 0 and "quickstart" in r.stdout and "BN trains faster." in r.stdout
    r = bncli("examples", "mine", "--only", "quickstart", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "mine" / "quickstart.yaml").is_file()
    assert "bncli train mine/quickstart.yaml" in r.stdout
    (tmp_path / "mine" / "quickstart.yaml").write_text("name: edited\n")
    r = bncli("examples", "mine", cwd=tmp_path)
    assert r.returncode == 2 and "differs from the shipped copy" in r.stderr and "--force" in r.stderr
    assert (tmp_path / "mine" / "quickstart.yaml").read_text() == "name: edited\n"
    r = bncli("examples", tmp_path / "mine" / "quickstart.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "not a folder" in r.stderr


def test_a_name_that_is_neither_file_nor_shipped_is_not_found(tmp_path):
    r = bncli("train", "quickstrat", cwd=tmp_path)
    assert r.returncode == 2 and "quickstrat: no such file" in r.stderr and "did you mean quickstart?" in r.stderr
    r = bncli("train", "quickstrat.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "quickstrat.yaml: config file not found" in r.stderr


def test_report_uses_the_shipped_experiments_unless_told(tmp_path):
    r = bncli("report", "--experiments", tmp_path, "--only", "C7", cwd=tmp_path)
    assert r.returncode == 2 and "c07_bias.yaml is not there" in r.stderr and "bncli examples DIR" in r.stderr


def test_the_script_in_a_c_locale_and_with_stdout_closed(tmp_path):
    """The installed script sets up its streams as `python -m bncli` does (bncli/__main__.py): in a C locale
    without UTF-8 (stdout ASCII) the listing is written in ASCII, its "…" as "..."; with stdout closed the command
    runs and says nothing. Before: UnicodeEncodeError reported as a bug, and AttributeError on sys.stdout."""
    script = os.path.join(os.path.dirname(sys.executable), "bncli")
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR", "PYTHONIOENCODING")}
    env.update(LC_ALL="C", LANG="C", PYTHONCOERCECLOCALE="0", PYTHONUTF8="0")
    r = subprocess.run([script, "examples"], cwd=tmp_path, capture_output=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    listing = r.stdout.decode("ascii")  # strictly ASCII
    assert "quickstart" in listing and "..." in listing
    r = subprocess.run([script, "examples", "mine", "--only", "quickstart"], cwd=tmp_path, capture_output=True,
                       env=env, timeout=120, preexec_fn=lambda: os.close(1))
    assert r.returncode == 0 and not r.stdout and not r.stderr, r.stderr
    assert (tmp_path / "mine" / "quickstart.yaml").is_file()


def test_a_crash_report_is_written_whatever_the_arguments(tmp_path, monkeypatch):
    """A file name that is not UTF-8 reaches Python as surrogate escapes; the report of a bug still gets written,
    with the byte escaped (before: UnicodeEncodeError inside the error handler, a traceback instead of one line)."""
    from bncli.cli.errors import crash_report

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["bncli", "train", "r\udcfesultats.yaml"])
    path = crash_report(ValueError("boom"))
    assert path is not None and path.parent == tmp_path / "bncli"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("bncli train r\\udcfesultats.yaml\n") and "ValueError: boom" in text
