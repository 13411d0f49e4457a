"""`bncli plot`: recognise a train, sweep or lrfind results directory and draw its figures (png, svg, pdf), into the
directory or elsewhere with --out; usage errors exit 2 with a message. Figures are checked by their file format,
never by their pixels."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bncli.cli import app
from tiny import tiny_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TINY = tiny_config("tinyplot", n_train=240, n_test=80, steps=30)

FIGURES = {"train": ["generalization_gap", "learning_curves"], "sweep": ["range"], "lrfind": ["lr_find"]}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(r):
    assert r.exit_code == 0, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """One results directory of each kind, made by the real commands."""
    root = tmp_path_factory.mktemp("plot")
    cfg = root / "tiny.yaml"
    cfg.write_text(TINY)
    dirs = {"train": root / "train", "plain": root / "plain", "sweep": root / "sweep", "lrfind": root / "lrfind"}
    ok(invoke("train", cfg, "train.eval_train=true", "--out", dirs["train"], "-j", "1"))
    ok(invoke("train", cfg, "--out", dirs["plain"], "-j", "1"))
    ok(invoke("sweep", cfg, "optimizer.lr=0.01,0.1", "--out", dirs["sweep"], "-j", "1"))
    ok(invoke("lrfind", cfg, "--out", dirs["lrfind"], "--iters", "30", "--start", "1e-4", "--end", "10"))
    return dirs


@pytest.fixture
def copy_of(results, tmp_path):
    """A private copy of a results directory, without its figures (the commands draw some themselves)."""
    def make(kind):
        d = tmp_path / kind
        shutil.copytree(results[kind], d)
        for ext in ("png", "svg", "pdf"):
            for p in d.glob(f"*.{ext}"):
                p.unlink()
        return d
    return make


def figures_in(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.suffix in (".png", ".svg", ".pdf"))


def is_png(p: Path) -> bool:
    data = p.read_bytes()
    return data[:8] == PNG_MAGIC and len(data) > 1000


def is_svg(p: Path) -> bool:
    head = p.read_bytes()[:300].lstrip()
    return (head.startswith(b"<svg") or head.startswith(b"<?xml")) and b"<svg" in p.read_bytes()


def is_pdf(p: Path) -> bool:
    data = p.read_bytes()
    return data[:5] == b"%PDF-" and b"%%EOF" in data[-64:]


CHECK = {"png": is_png, "svg": is_svg, "pdf": is_pdf}


@pytest.mark.parametrize("kind", ["train", "sweep", "lrfind"])
def test_plot_draws_the_figures_of_each_kind(copy_of, kind):
    d = copy_of(kind)
    assert figures_in(d) == []
    r = ok(invoke("plot", d))
    expected = [f"{n}.png" for n in FIGURES[kind]]
    assert figures_in(d) == expected
    for name in expected:
        assert is_png(d / name), name
        assert name in "".join(r.stdout.split())
    assert r.stdout.count("wrote") == len(expected)


def test_train_without_eval_train_has_no_gap_figure(copy_of):
    d = copy_of("plain")
    ok(invoke("plot", d))
    assert figures_in(d) == ["learning_curves.png"]


@pytest.mark.parametrize("fmt", ["svg", "pdf"])
@pytest.mark.parametrize("kind", ["train", "sweep", "lrfind"])
def test_plot_formats(copy_of, kind, fmt):
    d = copy_of(kind)
    ok(invoke("plot", d, "--format", fmt))
    expected = [f"{n}.{fmt}" for n in FIGURES[kind]]
    assert figures_in(d) == expected
    for name in expected:
        assert CHECK[fmt](d / name), name


@pytest.mark.parametrize("kind", ["train", "sweep", "lrfind"])
def test_plot_out_writes_elsewhere(results, copy_of, tmp_path, kind):
    d = copy_of(kind)
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in d.rglob("*") if p.is_file()}
    out = tmp_path / "elsewhere" / "figs"
    ok(invoke("plot", d, "--out", out, "--format", "png"))
    assert figures_in(out) == [f"{n}.png" for n in FIGURES[kind]]
    assert all(is_png(out / n) for n in figures_in(out))
    assert sorted(p.name for p in out.iterdir()) == figures_in(out)  # only the figures
    after = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in d.rglob("*") if p.is_file()}
    assert after == before  # the results directory is not touched


# -- usage errors -------------------------------------------------------------------------------------------------------
def usage_error(r, *fragments):
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    err = " ".join(r.stderr.split())
    assert "error:" in err
    for f in fragments:
        assert f in err, (f, err)


def test_directory_without_results_is_exit_2(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    (d / "notes.txt").write_text("nothing to plot")
    usage_error(invoke("plot", d), "no bncli results here")
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt"]


def test_train_directory_without_finished_runs_is_exit_2(results, tmp_path):
    d = tmp_path / "train"
    shutil.copytree(results["train"], d)
    for arm in ("none", "before"):
        shutil.rmtree(d / arm)
    usage_error(invoke("plot", d, "--out", tmp_path / "o"), "no finished runs")
    assert not (tmp_path / "o" / "learning_curves.png").exists()


@pytest.mark.parametrize("what", ["file", "missing"])
def test_not_a_directory_is_exit_2(tmp_path, what):
    p = tmp_path / "results.txt"
    if what == "file":
        p.write_text("x")
    usage_error(invoke("plot", p), "not a directory")


@pytest.mark.parametrize("fmt", ["jpg", "PNG-", ""])
def test_bad_format_is_exit_2(results, copy_of, fmt):
    d = copy_of("train")
    usage_error(invoke("plot", d, "--format", fmt), "--format")
    assert figures_in(d) == []
