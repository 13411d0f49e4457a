"""The Python API (bncli.train / sweep / load): what a notebook gets back, and the same runs as the CLI."""

from __future__ import annotations

import json

import pytest
from matplotlib.figure import Figure

import bncli
from bncli.errors import UsageError
from tiny import tiny_config


@pytest.fixture
def tiny(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(tiny_config("tinyapi"))
    return p


def test_import_bncli_is_cheap_and_lazy():
    import subprocess
    import sys

    code = "import sys, bncli; print('numpy' in sys.modules, 'bncli.api' in sys.modules, bncli.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split()
    assert out[:2] == ["False", "False"] and out[2] == bncli.__version__
    with pytest.raises(AttributeError):
        bncli.no_such_thing  # noqa: B018


def test_train_returns_runs_statistics_and_a_figure(tiny, tmp_path, capsys):
    r = bncli.train(tiny, "train.steps=30", out=tmp_path / "out", workers=1)
    assert r.kind == "train" and r.name == "tinyapi" and len(r.runs) == 4  # 2 arms x 2 seeds
    run = r.runs[0]
    for key in ("arm", "seed", "status", "final_test_acc", "best_test_acc", "steps_to_target", "time_s", "hash"):
        assert key in run, key
    assert {x["arm"] for x in r.runs} == {"none", "before"} and {x["seed"] for x in r.runs} == {0, 1}
    assert r.arms["before"]["final_test_acc"]["n"] == 2
    assert "4/4 runs trained" in capsys.readouterr().err
    fig = r.figure()
    assert isinstance(fig, Figure) and fig.axes and not (tmp_path / "out" / "learning_curves.pdf").exists()
    assert "tinyapi" in repr(r) and "4 ok" in repr(r)


def test_load_reopens_the_same_results_and_train_resumes(tiny, tmp_path):
    out = tmp_path / "out"
    r = bncli.train(tiny, out=out, workers=1, progress=False)
    loaded = bncli.load(out)
    assert loaded == r and loaded.runs == r.runs and loaded.arms.keys() == r.arms.keys()
    mtimes = {x["hash"]: (out / "runs" / x["hash"] / "metrics.csv").stat().st_mtime_ns for x in r.runs}
    again = bncli.train(tiny, out=out, workers=1, progress=False)  # everything is finished: nothing retrained
    assert again == r and mtimes == {x["hash"]: (out / "runs" / x["hash"] / "metrics.csv").stat().st_mtime_ns
                                     for x in r.runs}
    assert isinstance(loaded.figure(), Figure)


def test_the_cli_and_the_api_share_runs(tiny, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "bncli", "train", str(tiny), "--out", str(out), "-j", "1", "-q"],
                       capture_output=True, text=True, env={"MPLBACKEND": "Agg", **__import__("os").environ})
    assert r.returncode == 0, r.stderr
    loaded = bncli.load(out)
    assert loaded == bncli.train(tiny, out=out, workers=1, progress=False)


def test_sweep_and_load(tiny, tmp_path):
    s = bncli.sweep(tiny, "optimizer.lr=0.01,0.1", out=tmp_path / "sw", workers=1, progress=False)
    assert s.kind == "sweep" and len(s.runs) == 8 and {x["optimizer.lr"] for x in s.runs} == {0.01, 0.1}
    assert s.usable and {u["arm"] for u in s.usable} == {"none", "before"}
    assert bncli.load(tmp_path / "sw") == s
    assert isinstance(s.figure(), Figure)


def test_to_dataframe_needs_pandas_and_says_so(tiny, tmp_path):
    r = bncli.train(tiny, out=tmp_path / "out", workers=1, progress=False)
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pandas"):
            r.to_dataframe()
    else:
        df = r.to_dataframe()
        assert len(df) == 4 and set(df["arm"]) == {"none", "before"}


def test_load_refuses_what_it_cannot_reopen(tmp_path):
    with pytest.raises(UsageError, match="not a directory"):
        bncli.load(tmp_path / "missing")
    with pytest.raises(UsageError, match="no bncli results"):
        bncli.load(tmp_path)
    (tmp_path / "sweep.json").write_text(json.dumps({"name": "x", "keys": ["optimizer.lr"], "range_key":
                                                     "optimizer.lr"}))
    with pytest.raises(UsageError, match="older bncli"):
        bncli.load(tmp_path)


def test_plan_shows_the_runs_before_anything_runs(tiny, tmp_path):
    from bncli.api import plan

    p = plan("train", tiny, ["train.seeds=3"], out=tmp_path / "o")
    assert (len(p.specs), p.todo) == (6, 6) and not (tmp_path / "o").exists()
    with pytest.raises(ValueError):
        plan("report", tiny)


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    """The README's Python block, executed in an empty folder (the pandas line only where pandas is installed)."""
    from test_readme import README, fenced_blocks

    blocks = [b for lang, b in fenced_blocks(README.read_text(encoding="utf-8")) if lang == "python"]
    assert len(blocks) == 1
    try:
        import pandas  # noqa: F401
        code = blocks[0]
    except ImportError:
        code = "\n".join(line for line in blocks[0].splitlines() if "to_dataframe" not in line)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the project's own README
    r, s = scope["r"], scope["s"]
    assert len(r.runs) == 9 and len(s.runs) == 9 * 3 * 3 and isinstance(scope["fig"], Figure)
    assert (tmp_path / "results" / "quickstart" / "experiment.json").is_file()


PUBLIC = ["train", "sweep", "lrfind", "report", "load", "plan", "Results", "RunsFailed", "__version__"]


def test_dir_lists_the_public_api_and_import_stays_lazy():
    import subprocess
    import sys

    code = "import sys, bncli; print(dir(bncli)); print('numpy' in sys.modules, 'bncli.api' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.splitlines()
    names = eval(out[0])  # noqa: S307 - a list of names printed by the line above
    assert all(n in names for n in PUBLIC), names
    assert out[1] == "False False"
    assert all(n in bncli.__all__ for n in PUBLIC)


@pytest.fixture
def failing_before_arm(monkeypatch):
    """Training raises for the BN arm (the runs train in this process: workers=1)."""
    import bncli.runs.dispatcher as dispatcher

    real = dispatcher.train_run

    def train_run(cfg, *a, **k):
        if cfg.model.bn[0] == "before":
            raise RuntimeError("boom\nsecond line")
        return real(cfg, *a, **k)

    monkeypatch.setattr(dispatcher, "train_run", train_run)


@pytest.mark.parametrize("kind", ["train", "sweep"])
def test_a_call_whose_runs_failed_raises_one_line_with_the_partial_results(tiny, tmp_path, failing_before_arm,
                                                                           kind):
    out = tmp_path / kind
    extra = ["optimizer.lr=0.01,0.1"] if kind == "sweep" else []
    with pytest.raises(bncli.RunsFailed) as e:
        getattr(bncli, kind)(tiny, *extra, out=out, workers=1, progress=False)
    err = e.value
    n = 4 * (1 + (kind == "sweep"))
    text = str(err)
    assert "\n" not in text and text.startswith(f"bncli.{kind}: {n // 2} of {n} runs failed") and "boom" in text
    assert str(out / "runs" / err.failures[0]["hash"]) in text  # the run's folder is named
    assert isinstance(err, bncli.BncliError) and err.results.kind == kind and len(err.results.runs) == n
    assert sorted(r["status"] for r in err.results.runs) == ["failed"] * (n // 2) + ["ok"] * (n // 2)
    assert {f["arm"] for f in err.failures} == {"before"}


def test_results_show_an_html_table_and_the_paired_comparisons(tiny, tmp_path):
    r = bncli.train(tiny, out=tmp_path / "t", workers=1, progress=False)
    stored = json.loads((tmp_path / "t" / "experiment.json").read_text())["comparisons"]
    assert r.comparisons == stored and r.comparisons
    assert {c["difference"] for c in r.comparisons} == {"before - none"}
    page = r._repr_html_()
    assert page.count("<table>") == 2 and "before - none" in page and "final_test_acc" in page
    mean = r.arms["before"]["final_test_acc"]["mean"]
    assert f"{mean:.4g} [" in page and "<td>none</td>" in page and "<td>before</td>" in page
    s = bncli.sweep(tiny, "optimizer.lr=0.01,0.1", out=tmp_path / "s", workers=1, progress=False)
    page = s._repr_html_()
    assert page.count("<table>") == 1 and "usable from" in page and "optimizer.lr" in page
    assert bncli.load(tmp_path / "t")._repr_html_() == r._repr_html_()


def test_lrfind_from_python(tiny, tmp_path):
    res = bncli.lrfind(tiny, "optimizer.name=sgd", out=tmp_path / "lr", iters=20)
    assert set(res.suggestions) == {"none", "before"} and (tmp_path / "lr" / "lr_find.json").is_file()
    assert all(s["iterations"] <= 20 for s in res.suggestions.values())
    # called again (the library module bncli.lrfind is imported by now): still the API function
    again = bncli.lrfind(tiny, out=tmp_path / "lr", iters=20)
    assert again.suggestions == res.suggestions
    assert bncli.lrfind.run_lrfind  # and still the module for code that reads it
    for kw, name in (({"start": 2.0, "end": 1.0}, "start"), ({"iters": 1}, "iters"),
                     ({"end": float("inf")}, "end"), ({"out": 3}, "out")):
        with pytest.raises(UsageError, match=name):
            bncli.lrfind(tiny, **kw)


def test_report_from_python(tmp_path):
    claims = bncli.report(only=["C8"], out=tmp_path / "rep", workers=1, progress=False)
    assert [c.id for c in claims] == ["C8"] and claims[0].verdict in ("supported", "contradicted", "inconclusive")
    assert (tmp_path / "rep" / "REPORT.md").is_file()
    assert bncli.report.run_report  # the library module is reachable as before
    for kw, name in (({"mode": "fast"}, "mode"), ({"only": [3]}, "only"), ({"workers": -1}, "workers")):
        with pytest.raises(UsageError, match=name):
            bncli.report(**kw)


def test_progress_into_a_log_is_plain_lines_not_one_long_line(capsys):
    """A script's log (stderr not a terminal): no carriage returns, about 20 lines for 81 runs, the last one 81/81."""
    from bncli.api import _printer

    on_done = _printer("quickstart", 81, True)
    for _ in range(81):
        on_done(None, {})
    err = capsys.readouterr().err
    assert "\r" not in err and err.endswith("quickstart: 81/81 runs trained\n")
    assert 2 <= len(err.splitlines()) <= 21


def test_train_of_a_sweep_config_is_refused_in_one_line(tmp_path):
    """bncli.train("lr_range") would train its base learning rate alone and read like the study."""
    with pytest.raises(UsageError, match="is a sweep") as e:
        bncli.train("lr_range", out=tmp_path / "x", workers=1, progress=False)
    assert "\n" not in str(e.value) and "bncli.sweep" in str(e.value)
