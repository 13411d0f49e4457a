"""`bncli plot`: recognise a train, sweep or lrfind results directory and draw its figures (png, svg, pdf), into the
directory or elsewhere with --out; usage errors exit 2 with a message. Figures are checked by their file format,
never by their pixels; the learning curves also by the artists they draw (mean lines, the x of each diverged run,
legend texts, the reached-the-target step functions), on the matplotlib Figure that learning_curves returns."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bncli import plot as plot_mod
from bncli import plotting
from bncli.cli import app
from bncli.runs import read_metrics
from tiny import run_dir, tiny_config

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
    # only the figures (and bncli's hidden manifest of what it wrote there)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == figures_in(out)
    assert {p.name for p in out.iterdir() if p.name.startswith(".")} <= {".bncli.json"}
    after = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in d.rglob("*") if p.is_file()}
    assert after == before  # the results directory is not touched


def test_train_and_sweep_figures_are_returned_without_writing(copy_of):
    """What `bncli.load(...).figure()` shows: the figure `bncli plot` draws, as a Figure, no file written."""
    from matplotlib.figure import Figure

    for kind, draw in (("train", plot_mod.train_figure), ("sweep", plot_mod.sweep_figure)):
        d = copy_of(kind)
        fig = draw(d)
        assert isinstance(fig, Figure) and fig.axes and figures_in(d) == []
        assert json.loads((d / f"{'experiment' if kind == 'train' else 'sweep'}.json").read_text())["name"] \
            in fig._suptitle.get_text()


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
    shutil.rmtree(d / "runs")
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


# -- learning curves: diverged runs and the reached-the-target panel --------------------------------------------------
COLS = ["step", "epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]
NAN, INF = math.nan, math.inf


def synthetic_run(losses, accs):
    """Evaluations every 10 steps from step 0 (whose training loss is nan, as in metrics.csv)."""
    return COLS, [[10.0 * i, i / 10, 0.1, loss, NAN, NAN, acc] for i, (loss, acc) in enumerate(zip(losses, accs))]


# "before": 3 runs that finish (two reach 0.9, at steps 30 and 40; one never) and 2 that diverge: one reached 0.9 at
# step 20 before its loss became inf, one whose loss blew up to 1e21 and never reached the target.
OK_BEFORE = [synthetic_run([NAN, 2.0, 1.5, 1.0, 0.5], [0.1, 0.5, 0.7, 0.9, 0.95]),
             synthetic_run([NAN, 2.2, 1.9, 1.2, 0.7], [0.1, 0.4, 0.6, 0.8, 0.91]),
             synthetic_run([NAN, 2.4, 2.0, 1.6, 1.1], [0.1, 0.3, 0.5, 0.7, 0.85])]
DIV_BEFORE = [synthetic_run([NAN, 1.0, 3.0, INF], [0.1, 0.6, 0.92, 0.1]),
              synthetic_run([NAN, 5.0, 1e21, INF], [0.1, 0.2, 0.1, 0.1])]
# "after": every run diverged; one before its first finite loss, one after reaching 0.9 at step 10
AFTER = [synthetic_run([NAN, INF], [0.1, 0.1]),
         synthetic_run([NAN, 0.8, INF], [0.1, 0.95, 0.1]),
         synthetic_run([NAN, 2.0, 4.0, INF], [0.1, 0.3, 0.2, 0.1])]
# "none": 4 runs, none diverged; two reach 0.9 (at steps 40 and 20)
NONE = [synthetic_run([NAN, 2.3, 2.2, 2.1, 2.0], [0.1, 0.2, 0.5, 0.8, 0.9]),
        synthetic_run([NAN, 2.3, 2.1, 1.9, 1.7], [0.1, 0.3, 0.9, 0.6, 0.7]),
        synthetic_run([NAN, 2.3, 2.3, 2.2, 2.2], [0.1, 0.1, 0.2, 0.3, 0.4]),
        synthetic_run([NAN, 2.4, 2.2, 2.0, 1.9], [0.1, 0.2, 0.3, 0.5, 0.89])]
CURVES = {"none": NONE, "before": OK_BEFORE + DIV_BEFORE, "after": AFTER}
FLAGS = {"none": [False] * 4, "before": [False] * 3 + [True] * 2, "after": [True] * 3}


def by_gid(ax, prefix):
    return [line for line in ax.get_lines() if (line.get_gid() or "").startswith(prefix)]


def x_markers(ax):
    return [line for line in ax.get_lines() if line.get_marker() == "x"]


def legend_texts(fig):
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


@pytest.fixture
def drawn(tmp_path):
    path = tmp_path / "lc.png"
    fig = plotting.learning_curves(CURVES, path, title="synthetic", target=0.9, diverged=FLAGS)
    assert is_png(path)
    return fig


def test_mean_is_over_the_runs_that_did_not_diverge(drawn):
    ax_loss, ax_acc, _ = drawn.axes
    for ax, j, steps in ((ax_acc, 6, slice(0, 5)), (ax_loss, 3, slice(1, 5))):
        (line,) = by_gid(ax, "mean:before")
        expected = np.mean([[r[j] for r in rows] for _, rows in OK_BEFORE], axis=0)[steps]
        with_diverged = [np.mean([rows[i][j] for _, rows in CURVES["before"] if i < len(rows)])
                         for i in range(5)][steps]
        assert np.allclose(line.get_xdata(), [10.0 * i for i in range(5)][steps])
        assert np.allclose(line.get_ydata(), expected)
        assert not np.allclose(line.get_ydata(), with_diverged, equal_nan=True)  # the test can tell them apart
        (none,) = by_gid(ax, "mean:none")
        assert np.allclose(none.get_ydata(), np.mean([[r[j] for r in rows] for _, rows in NONE], axis=0)[steps])
        assert by_gid(ax, "mean:after") == []  # every run diverged: no mean line


def test_each_diverged_run_is_a_thin_line_ending_in_x(drawn):
    ax_loss, ax_acc, _ = drawn.axes
    for ax in (ax_loss, ax_acc):
        assert len(x_markers(ax)) == 5  # 2 diverged runs of "before" + 3 of "after"
        assert sorted(m.get_gid() for m in x_markers(ax)) == sorted(
            [f"diverged-end:before:{k}" for k in range(2)] + [f"diverged-end:after:{k}" for k in range(3)])
    # accuracy: the x sits on the last finite value of each diverged run (the row where it diverged)
    ends = {m.get_gid(): (m.get_xdata()[0], m.get_ydata()[0]) for m in x_markers(ax_acc)}
    assert ends["diverged-end:before:0"] == (30.0, 0.1)
    assert ends["diverged-end:after:1"] == (20.0, 0.1)
    # loss: the last finite positive loss; a loss of 1e21 does not squash the axis (its x goes to the top edge)
    ends = {m.get_gid(): m for m in x_markers(ax_loss)}
    assert (ends["diverged-end:before:0"].get_xdata()[0], ends["diverged-end:before:0"].get_ydata()[0]) == (20.0, 3.0)
    assert (ends["diverged-end:after:2"].get_xdata()[0], ends["diverged-end:after:2"].get_ydata()[0]) == (20.0, 4.0)
    assert ax_loss.get_yscale() == "log"
    assert ax_loss.get_ylim()[1] < 1e4
    for gid, step in (("diverged-end:before:1", 20.0), ("diverged-end:after:0", 10.0)):  # off scale / never finite
        m = ends[gid]
        assert m.get_xdata()[0] == step
        assert m.get_transform() != ax_loss.transData and 0.8 < m.get_ydata()[0] <= 0.97  # axes fraction
    thin = by_gid(ax_acc, "diverged:")
    assert len(thin) == 5 and all(line.get_lw() < 1.8 and line.get_alpha() < 1 for line in thin)
    (line,) = by_gid(ax_acc, "diverged:before:0")
    assert list(line.get_xdata()) == [0.0, 10.0, 20.0, 30.0]
    notes = [t.get_text() for t in ax_loss.texts]
    assert any("1 never finite" in t for t in notes) and any("1 above the axis" in t for t in notes)


def test_legend_counts_the_diverged_runs(drawn):
    texts = legend_texts(drawn)
    assert "no BN (n=4; 2/4 reached 0.9)" in texts
    assert "BN before activation (n=5; 2 diverged, not in the mean; 3/5 reached 0.9)" in texts
    assert "BN after activation (n=3; 3 diverged, not in the mean; 1/3 reached 0.9)" in texts  # proxy, no mean line
    assert "target 0.9" in texts
    assert "diverged runs: thin lines ending in x, excluded from the mean" in drawn._suptitle.get_text()


def test_reached_panel_counts_every_run(drawn):
    ax = drawn.axes[2]
    assert "censored at the budget" in ax.get_title()
    assert ax.get_ylabel() == "fraction of seeds at target accuracy (test split)"
    lo, hi = ax.get_ylim()
    assert lo <= 0 and 1 <= hi < 1.1
    # reached / all runs, diverged included: before 3/5 (one diverged after reaching), after 1/3, none 2/4
    expected = {"before": ([0, 20, 30, 40], [0, 1 / 5, 2 / 5, 3 / 5]), "after": ([0, 10, 40], [0, 1 / 3, 1 / 3]),
                "none": ([0, 20, 40, 40], [0, 1 / 4, 2 / 4, 2 / 4])}
    for arm, (xs, ys) in expected.items():
        (line,) = by_gid(ax, f"reached:{arm}")
        assert line.get_drawstyle() == "steps-post"
        assert line.get_xdata()[0] == 0 and line.get_xdata()[-1] == 40  # from step 0 to the last evaluation
        assert line.get_ydata()[-1] == pytest.approx(ys[-1])
        for x, y in zip(xs, ys):  # the fraction in force at step x
            i = np.searchsorted(line.get_xdata(), x, side="right") - 1
            assert line.get_ydata()[i] == pytest.approx(y), (arm, x)
    assert ax.get_legend() is None  # the counts are in the figure's legend, below the panels: it hides no step


def test_without_flags_a_non_finite_last_loss_counts_as_diverged(tmp_path):
    fig = plotting.learning_curves(CURVES, tmp_path / "lc.png", target=0.9)
    assert set(legend_texts(fig)) == set(legend_texts(plotting.learning_curves(
        CURVES, tmp_path / "lc2.png", target=0.9, diverged=FLAGS)))
    assert len(x_markers(fig.axes[1])) == 5
    # a run whose loss blew up but stayed finite is only known as diverged from its status
    blowup = synthetic_run([NAN, 2.0, 40.0, 90.0, 300.0], [0.1, 0.2, 0.1, 0.1, 0.1])
    curves = {"before": OK_BEFORE + [blowup]}
    fig = plotting.learning_curves(curves, tmp_path / "lc3.png")
    assert len(fig.axes) == 2 and legend_texts(fig) == ["BN before activation (n=4)"]
    fig = plotting.learning_curves(curves, tmp_path / "lc4.png", diverged={"before": [False] * 3 + [True]})
    assert legend_texts(fig) == ["BN before activation (n=4; 1 diverged, not in the mean)"]
    (line,) = by_gid(fig.axes[1], "mean:before")
    assert np.allclose(line.get_ydata(), np.mean([[r[6] for r in rows] for _, rows in OK_BEFORE], axis=0))


def test_reached_panel_uses_the_target_column(tmp_path):
    cols = COLS + ["val_loss", "val_acc"]
    runs = [(cols, [r + [NAN, v] for r, v in zip(rows, vals)]) for (_, rows), vals in
            zip(OK_BEFORE, ([0.1, 0.95, 0.95, 0.95, 0.95], [0.1, 0.2, 0.2, 0.2, 0.2], [0.1, 0.2, 0.2, 0.2, 0.9]))]
    fig = plotting.learning_curves({"before": runs}, tmp_path / "lc.png", target=0.9, target_column="val_acc")
    ax = fig.axes[2]
    assert "validation" in ax.get_ylabel()
    (line,) = by_gid(ax, "reached:before")
    assert list(line.get_xdata()) == [0, 10, 40] and list(line.get_ydata()) == pytest.approx([0, 1 / 3, 2 / 3])
    assert "target 0.9 (validation split)" in legend_texts(fig)


def test_plot_dir_passes_run_status_and_target_split(copy_of, monkeypatch):
    d = copy_of("train")
    exp = json.loads((d / "experiment.json").read_text())
    exp["target"]["split"] = "train"
    status = {("before", 1): "diverged", ("none", 0): "diverged"}  # as the run's summary recorded it
    for r in exp["runs"]:
        r["status"] = status.get((r["arm"], r["seed"]), r["status"])
    (d / "experiment.json").write_text(json.dumps(exp))
    seen = []
    real = plotting.learning_curves
    monkeypatch.setattr(plotting, "learning_curves", lambda *a, **k: seen.append((a, k, real(*a, **k))) or seen[-1][2])
    paths = plot_mod.plot_dir(d)
    assert [p.name for p in paths] == ["learning_curves.png", "generalization_gap.png"]
    assert is_png(paths[0])
    ((args, kwargs, fig),) = seen
    assert kwargs["diverged"] == {"none": [True, False], "before": [False, True]}
    assert kwargs["target_column"] == "train_eval_acc"
    assert "(n=2; 1 diverged, not in the mean; " in " ".join(legend_texts(fig))
    assert "training" in fig.axes[2].get_ylabel()
    cols, rows = read_metrics(run_dir(d, "before", 0) / "metrics.csv")
    (line,) = by_gid(fig.axes[1], "mean:before")
    assert np.allclose(line.get_ydata(), [r[cols.index("test_acc")] for r in rows])  # the one run that did not diverge


# -- damaged results folders: one line naming the file and what was expected, exit 2, never a traceback ---------------
def _json_edit(fn):
    def edit(path: Path):
        doc = json.loads(path.read_text())
        fn(doc)
        path.write_text(json.dumps(doc))
    return edit


def _csv_edit(line: int, cell: int, value: str):
    def edit(path: Path):
        lines = path.read_text().splitlines()
        cells = lines[line].split(",")
        cells[cell] = value
        lines[line] = ",".join(cells)
        path.write_text("\n".join(lines) + "\n")
    return edit


def _truncate(path: Path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _garbage(path: Path):
    path.write_bytes(b"\x89\xff\x00garbage")


def _folder_instead(path: Path):
    path.unlink()
    path.mkdir()


def _drop_column(name):
    def edit(path: Path):
        lines = path.read_text().splitlines()
        j = lines[0].split(",").index(name)
        path.write_text("\n".join(",".join(c for i, c in enumerate(ln.split(",")) if i != j) for ln in lines) + "\n")
    return edit


FIRST_METRICS = "runs/*/metrics.csv"  # the first run's metrics.csv (glob, sorted)

DAMAGE = [  # (kind, file, damage, fragments of the message)
    ("train", "experiment.json", _truncate, ["experiment.json: damaged", "expected the experiment.json"]),
    ("train", "experiment.json", _garbage, ["experiment.json: damaged"]),
    ("train", "experiment.json", lambda p: p.write_text("[1, 2]"), ["found a JSON array"]),
    ("train", "experiment.json", _json_edit(lambda d: d.update(runs=5)), ["'runs' is a JSON number"]),
    ("train", "experiment.json", _json_edit(lambda d: d.update(name=None)), ["'name' is a JSON null"]),
    ("train", "experiment.json", _json_edit(lambda d: d["runs"][0].update(hash="../../etc")), ["run 0 is not"]),
    ("train", "experiment.json", _json_edit(lambda d: d["runs"][1].pop("status")), ["run 1 is not"]),
    ("train", "experiment.json", _json_edit(lambda d: d.update(target=[0.9])), ["'target' is a JSON array"]),
    ("train", "experiment.json", _json_edit(lambda d: d["target"].update(accuracy="high")), ["'target' needs"]),
    ("train", "experiment.json", _json_edit(lambda d: d.update(title={"a": 1})), ["'title' is a JSON object"]),
    ("train", "experiment.json", lambda p: p.write_text("[" * 100000), ["nested too deeply"]),
    ("train", FIRST_METRICS, _csv_edit(2, 3, "x"), ["metrics.csv: damaged", "could not convert string to float"]),
    ("train", FIRST_METRICS, _csv_edit(2, 3, "[1, 2]"), ["metrics.csv: damaged"]),
    ("train", FIRST_METRICS, _csv_edit(0, 0, "inf"), ["the header is 'inf,"]),
    ("train", FIRST_METRICS, _csv_edit(2, 0, "nan"), ["line 3 has step nan"]),
    ("train", FIRST_METRICS, _drop_column("test_acc"), ["no column 'test_acc'"]),
    ("train", FIRST_METRICS, lambda p: p.write_text(p.read_text() + "1,2\n"), ["has 2 cells for"]),
    ("train", FIRST_METRICS, lambda p: p.write_text(""), ["the file is empty"]),
    ("train", FIRST_METRICS, lambda p: p.write_text(p.read_text().splitlines()[0] + "\n"), ["no rows"]),
    ("train", FIRST_METRICS, _folder_instead, ["metrics.csv: damaged", "a folder"]),
    ("sweep", "sweep.json", _truncate, ["sweep.json: damaged"]),
    ("sweep", "sweep.json", _json_edit(lambda d: d.update(keys="optimizer.lr")), ["'keys' is a JSON string"]),
    ("sweep", "sweep.json", _json_edit(lambda d: d.update(range_key="model.depth")), ["sweep.json: damaged"]),
    ("sweep", "sweep.json", _json_edit(lambda d: d.update(range_key=3)), ["sweep.json: damaged"]),
    ("sweep", "range.csv", lambda p: p.unlink(), ["range.csv: missing", "run `bncli sweep` again"]),
    ("sweep", "range.csv", _drop_column("acc_mean"), ["no column 'acc_mean'"]),
    ("sweep", "range.csv", _csv_edit(1, 5, "x"), ["'diverged' on line 2 is not a count"]),
    ("sweep", "range.csv", _csv_edit(1, 5, "1e999"), ["'diverged' on line 2 is not a count"]),
    ("sweep", "range.csv", _csv_edit(1, 8, "2"), ["does not hold acc_mean"]),
    ("sweep", "range.csv", lambda p: p.write_text(p.read_text().splitlines()[0] + "\n"), ["range.csv", "no rows"]),
    ("sweep", "range.csv", _csv_edit(1, 2, '"'), ["range.csv: damaged"]),
    ("sweep", "range.csv", lambda p: p.write_bytes(b"a,b\n\x00,1\n"), ["range.csv: damaged"]),
    ("sweep", "ranges.csv", _drop_column("hi"), ["ranges.csv", "no column 'hi'"]),
    ("sweep", "ranges.csv", _csv_edit(1, 4, "nan"), ["'n_learn' / 'n_seeds' on line 2 are not counts"]),
    ("sweep", "ranges.csv", _csv_edit(1, 3, ""), ["'n_learn' / 'n_seeds' on line 2 are not counts"]),
    ("sweep", "ranges.csv", _garbage, ["ranges.csv: damaged"]),
    ("lrfind", "lr_find.json", _json_edit(lambda d: d.update(suggestions=[])), ["'suggestions' is a JSON array"]),
    ("lrfind", "lr_find.json", _json_edit(lambda d: d["suggestions"]["none"].pop("steep_lr")),
     ["the suggestions of 'none' are not numbers"]),
    ("lrfind", "lr_find.json", _json_edit(lambda d: d["suggestions"]["none"].update(min_lr="1e-3")),
     ["the suggestions of 'none' are not numbers"]),
    ("lrfind", "lr_find.json", _json_edit(lambda d: d["suggestions"].pop("before")),
     ["no suggestions for arm 'before'"]),
    ("lrfind", "lr_find.json", lambda p: p.unlink(), ["no bncli results here"]),
    ("lrfind", "lr_find.csv", lambda p: p.unlink(), ["lr_find.csv: missing", "run `bncli lrfind` again"]),
    ("lrfind", "lr_find.csv", _csv_edit(3, 2, "x"), ["line 4 holds a cell that is not a number"]),
    ("lrfind", "lr_find.csv", _csv_edit(3, 1, "1.5"), ["line 4 holds a cell that is not a number"]),
    ("lrfind", "lr_find.csv", _csv_edit(3, 2, "-1"), ["line 4 has lr '-1'"]),
    ("lrfind", "lr_find.csv", _csv_edit(3, 2, "1" * 400), ["line 4 has lr '1111"]),
    ("lrfind", "lr_find.csv", _csv_edit(1, 4, "nan"), ["starts with a non-finite smoothed loss"]),
    ("lrfind", "lr_find.csv", _drop_column("smoothed_loss"), ["no column 'smoothed_loss'"]),
    ("lrfind", "lr_find.csv", lambda p: p.write_text(""), ["lr_find.csv: damaged", "no column 'arm'"]),
]


@pytest.mark.parametrize("kind, name, edit, fragments", DAMAGE,
                         ids=[f"{k}-{n.split('/')[-1]}-{i}" for i, (k, n, _, _) in enumerate(DAMAGE)])
def test_a_damaged_results_file_is_one_line_naming_it(copy_of, tmp_path, kind, name, edit, fragments):
    d = copy_of(kind)
    path = sorted(d.glob(name))[0]
    edit(path)
    out = tmp_path / "figs"
    r = invoke("plot", d, "--out", out)
    usage_error(r, *fragments)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "unexpected" not in r.stderr and ("damaged" in r.stderr or "missing" in r.stderr
                                             or "no bncli results" in r.stderr)
    assert not out.exists() or not list(out.iterdir())  # nothing half drawn


def test_a_long_value_in_a_damaged_file_is_not_echoed_whole(copy_of, tmp_path):
    d = copy_of("lrfind")
    _csv_edit(3, 2, "7" * 5000)(d / "lr_find.csv")
    r = invoke("plot", d, "--out", tmp_path / "figs")
    usage_error(r, "lr_find.csv")
    assert len(r.stderr) < 600


def test_damage_plot_does_not_read_is_ignored(copy_of):
    """Files `bncli plot` does not read (summary.csv, a run's summary.json) may be damaged: it still draws."""
    d = copy_of("train")
    _garbage(d / "summary.csv")
    for p in d.glob("runs/*/summary.json"):
        _garbage(p)
    ok(invoke("plot", d))
    assert figures_in(d) == ["generalization_gap.png", "learning_curves.png"]


def test_a_gap_column_missing_in_one_run_leaves_out_the_gap_figure(copy_of):
    d = copy_of("train")
    _drop_column("train_eval_loss")(sorted(d.glob(FIRST_METRICS))[0])
    ok(invoke("plot", d))
    assert figures_in(d) == ["learning_curves.png"]


def test_an_lrfind_arm_without_a_finite_loss_is_left_out_of_the_figure(copy_of):
    d = copy_of("lrfind")
    rows = (d / "lr_find.csv").read_text().splitlines()
    kept = [rows[0]] + [r for r in rows[1:] if not r.startswith("none,")] + ["none,0,0.0001,nan,"]
    (d / "lr_find.csv").write_text("\n".join(kept) + "\n")
    _json_edit(lambda doc: doc["suggestions"]["none"].update(min_lr=None, steep_lr=None))(d / "lr_find.json")
    ok(invoke("plot", d))
    assert figures_in(d) == ["lr_find.png"]
    (d / "lr_find.csv").write_text(rows[0] + "\nnone,0,0.0001,nan,\nbefore,0,0.0001,inf,\n")
    usage_error(invoke("plot", d), "no finite loss at any learning rate")


@pytest.mark.parametrize("what", ["file", "long"])
def test_bad_out_or_path_is_exit_2(copy_of, tmp_path, what):
    d = copy_of("train")
    if what == "file":
        (tmp_path / "f.txt").write_text("x")
        usage_error(invoke("plot", d, "--out", tmp_path / "f.txt"), "--out", "not a directory")
    else:
        r = invoke("plot", tmp_path / ("x" * 5000))
        usage_error(r, "not a directory")
        assert len(r.stderr) < 600


def test_percentiles_of_a_layer_are_drawn_and_a_damaged_cell_is_not_plotted(tmp_path):
    """CLAIMS C9's figure for a train folder that recorded percentiles (here of the first hidden layer); a cell that
    is not a number is a gap in the curve, never a traceback."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(tiny_config("pct", extra_train="  measure: [percentiles]\n  percentile_layer: act1\n"
                                                  "  percentile_images: 50\n"))
    out = tmp_path / "out"
    ok(invoke("train", cfg, "--out", out, "-j", "1"))
    ok(invoke("plot", out))
    assert (out / "percentiles.png").is_file()
    pct = run_dir(out, "before", 0) / "percentiles.csv"
    lines = pct.read_text().splitlines()
    lines[1] = ",".join(lines[1].split(",")[:2] + ["oops", "1", "2"])
    pct.write_text("\n".join(lines) + "\n")
    (out / "percentiles.png").unlink()
    ok(invoke("plot", out))
    assert (out / "percentiles.png").is_file()
    r = invoke("train", cfg, "train.percentile_layer=act9", "--out", tmp_path / "bad", "-j", "1")
    assert r.exit_code == 2 and "train.percentile_layer: no activation layer 'act9'" in r.output


# -- bounded readers: what `bncli plot` draws is capped, every cap one line naming the file ----------------------------
def _rows_edit(fn):
    """An edit of a CSV file's rows (a list of lists, the header first)."""
    def edit(path: Path):
        rows = [ln.split(",") for ln in path.read_text().splitlines()]
        path.write_text("\n".join(",".join(r) for r in fn(rows)) + "\n")
    return edit


def _range_columns(n):
    """The sweep as if it had swept a second key over ``n`` values: ``n`` columns of panels."""
    def edit(d: Path):
        _json_edit(lambda doc: doc.update(keys=doc["keys"] + ["model.depth"]))(d / "sweep.json")
        for name in ("range.csv", "ranges.csv"):
            _rows_edit(lambda rows: [rows[0] + ["model.depth"]] + [r + [str(k)] for k in range(n) for r in rows[1:]])(
                d / name)
    return edit


def _arms(n):
    return lambda rows: [rows[0]] + [[f"arm{k}", *r[1:]] for k in range(n) for r in rows[1:2]]


def _suggestions(n):
    def edit(doc):
        one = next(iter(doc["suggestions"].values()))
        doc["suggestions"].update({f"arm{k}": one for k in range(n - len(doc["suggestions"]))})
    return edit


def _runs(n, arms=("none",)):
    def edit(doc):
        doc["runs"] = [{**doc["runs"][0], "arm": arms[k % len(arms)], "seed": k} for k in range(n)]
    return edit


def _metrics_rows(n):
    return _rows_edit(lambda rows: [rows[0]] + [[str(k), *rows[-1][1:]] for k in range(n)])


def _big_metrics(path: Path):
    with open(path, "r+b") as f:  # still a valid header and first rows, then 17 MiB of zero bytes
        f.truncate(17 << 20)


def _cut_mid_number(path: Path):
    path.write_text(path.read_text().rstrip("\n")[:-1])


TOO_LARGE = "too large to plot"
_2001_ROWS = _rows_edit(lambda rows: [rows[0]] + rows[1:2] * 2001)
CAPS = [  # (kind, file (a glob: its first match) or "" for the folder, edit, fragments of the message)
    ("sweep", "range.csv", _cut_mid_number, ["range.csv: damaged", "the last line is cut short"]),
    ("sweep", "ranges.csv", _cut_mid_number, ["ranges.csv: damaged", "the last line is cut short"]),
    ("lrfind", "lr_find.csv", _cut_mid_number, ["lr_find.csv: damaged", "the last line is cut short"]),
    ("sweep", "", _range_columns(17), [f"range.csv: {TOO_LARGE}", "17 combinations of model.depth, more than the 16"]),
    ("sweep", "range.csv", _rows_edit(_arms(9)), [f"range.csv: {TOO_LARGE}", "9 arms, more than 8"]),
    ("sweep", "range.csv", _2001_ROWS, [f"range.csv: {TOO_LARGE}", "2,001 rows, more than 2,000"]),
    ("sweep", "ranges.csv", _2001_ROWS, [f"ranges.csv: {TOO_LARGE}", "2,001 rows, more than 2,000"]),
    ("lrfind", "lr_find.json", _json_edit(_suggestions(9)), [f"lr_find.json: {TOO_LARGE}", "9 arms, more than 8"]),
    ("train", "experiment.json", _json_edit(_runs(2001)), [f"experiment.json: {TOO_LARGE}", "2,001 runs, more than"]),
    ("train", "experiment.json", _json_edit(_runs(9, [f"a{k}" for k in range(9)])), ["9 arms, more than 8"]),
    ("train", FIRST_METRICS, _metrics_rows(50_001), [f"metrics.csv: {TOO_LARGE}", "50,001 rows, more than",
                                                     "of the 50,000 `bncli plot` draws"]),
    ("train", FIRST_METRICS, _big_metrics, [f"metrics.csv: {TOO_LARGE}", "17,825,792 bytes, more than",
                                            "of the 16,777,216 `bncli plot` reads"]),
]


@pytest.mark.parametrize("kind, name, edit, fragments", CAPS,
                         ids=[f"{k}-{n.split('/')[-1] or 'folder'}-{i}" for i, (k, n, _, _) in enumerate(CAPS)])
def test_over_a_cap_or_cut_short_is_one_line_naming_the_file(copy_of, tmp_path, kind, name, edit, fragments):
    d = copy_of(kind)
    edit(sorted(d.glob(name))[0] if name else d)
    out = tmp_path / "figs"
    r = invoke("plot", d, "--out", out)
    usage_error(r, *fragments)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists() or not list(out.iterdir())


def test_a_percentiles_csv_in_a_run_that_did_not_measure_them_is_not_drawn(results, tmp_path):
    """Only a run whose config.yaml lists `percentiles` in train.measure has its percentiles.csv drawn: one put
    there by anything else (a copy, an edit) is not the run's, and is left alone."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(tiny_config("pct", extra_train="  measure: [percentiles]\n  percentile_images: 50\n"))
    measured = tmp_path / "measured"
    ok(invoke("train", cfg, "--out", measured, "-j", "1"))
    d = tmp_path / "plain"
    shutil.copytree(results["plain"], d)
    for arm in ("none", "before"):
        shutil.copy(run_dir(measured, arm, 0) / "percentiles.csv", run_dir(d, arm, 0) / "percentiles.csv")
    ok(invoke("plot", d))
    assert figures_in(d) == ["learning_curves.png"]
    ok(invoke("plot", measured))  # the run that measured them: drawn
    assert "percentiles.png" in figures_in(measured)
    pct = run_dir(measured, "before", 0) / "percentiles.csv"
    _rows_edit(lambda rows: [rows[0]] + [[str(k), "0", "1", "2", "3"] for k in range(5001)])(pct)
    usage_error(invoke("plot", measured), "percentiles.csv: too large to plot", "more than 5,000 rows to draw")
    (run_dir(measured, "none", 0) / "config.yaml").write_text("train: [")
    usage_error(invoke("plot", measured), "config.yaml: damaged", "YAML syntax error")


def test_a_damaged_report_json_is_one_line_naming_it(tmp_path):
    """report.json marks a report folder: damaged, the folder is (its figures are not redrawn as if it were not)."""
    published = Path(__file__).resolve().parents[1] / "results" / "report-quick"
    d = tmp_path / "report"
    (d / "figures").mkdir(parents=True)
    specs = json.loads((published / "figures" / "figures.json").read_text())
    specs["figures"] = [f for f in specs["figures"] if f["name"] == "c07_bias"]
    (d / "figures" / "figures.json").write_text(json.dumps(specs))
    (d / "report.json").write_text((published / "report.json").read_text())
    ok(invoke("plot", d, "--out", tmp_path / "figs"))
    for damage, fragment in ((lambda p: p.write_text("[]"), "found a JSON array"), (_truncate, "report.json")):
        shutil.copy(published / "report.json", d / "report.json")
        damage(d / "report.json")
        r = invoke("plot", d, "--out", tmp_path / "figs2")
        usage_error(r, "report.json: damaged", fragment)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("report", ["report-quick", "report-full"])
def test_the_published_reports_fit_the_caps_of_a_figure_file_together(report):
    """`bncli plot` redraws what `bncli report` wrote: the published reports' figure files, every figure checked
    against what the file may hold in all (figures, values, range columns), not each figure alone."""
    from bncli.report import figspec

    src = Path(__file__).resolve().parent.parent / "results" / report
    path = src / "figures" / figspec.FILE
    budget = figspec.Budget()
    checked = [figspec._check_spec(s, i, path, budget) for i, s in enumerate(figspec.read(src))]
    # at most half of each cap used: room for the report to grow before a cap is near
    assert 10 <= len(checked) <= figspec.MAX_FIGURES // 2
    assert budget.values >= figspec.MAX_FILE_VALUES // 2 and budget.range_columns >= figspec.MAX_FILE_RANGE_COLUMNS // 2
