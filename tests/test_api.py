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
