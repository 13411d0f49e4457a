"""The Python API as a careless script calls it: arguments of the wrong type, calls from two threads at once, a
folder whose listing (experiment.json, sweep.json) relabels its runs, a damaged failed/*.json, the same folder by a
relative and an absolute path. Each is one clear error (a UsageError or BncliError naming the argument or the
file), never a raw TypeError, a JSONDecodeError or a number shown under the wrong label."""

from __future__ import annotations

import functools
import json
import os
import threading

import pytest

import bncli
from bncli.errors import BncliError, UsageError
from tiny import tiny_config

from .harness import TALLY


def tally(family):
    def wrap(fn):
        @functools.wraps(fn)
        def run(*a, **k):
            try:
                fn(*a, **k)
            except BaseException:
                TALLY[family, "failed"] += 1
                raise
            TALLY[family, "clean"] += 1
        return run
    return wrap


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    cfg = tmp / "tiny.yaml"
    cfg.write_text(tiny_config("tinyapi", steps=20))
    r = bncli.train(cfg, out=tmp / "train", workers=1, progress=False)
    s = bncli.sweep(cfg, "optimizer.lr=0.03,0.3", out=tmp / "sweep", workers=1, progress=False)
    return cfg, r, s


BAD_CALLS = [
    ("train", ("quickstart", 5), {}, "overrides"),
    ("train", ("quickstart", None), {}, "overrides"),
    ("train", (None,), {}, "config"),
    ("train", (3.5,), {}, "config"),
    ("train", ("quickstart",), {"workers": -3}, "workers"),
    ("train", ("quickstart",), {"workers": 1.5}, "workers"),
    ("train", ("quickstart",), {"workers": True}, "workers"),
    ("train", ("quickstart",), {"out": ""}, "out"),
    ("train", ("quickstart",), {"out": 7}, "out"),
    ("train", ("quickstart",), {"executor": 3}, "executor"),
    ("train", ("quickstart",), {"executor": "spark://x"}, "executor"),
    ("sweep", ("lr_range", b"optimizer.lr=1"), {}, "overrides"),
    ("sweep", ("lr_range",), {"workers": "2"}, "workers"),
    ("lrfind", ("quickstart",), {"iters": 1}, "iters"),
    ("lrfind", ("quickstart",), {"start": 2.0, "end": 1.0}, "start"),
    ("report", (), {"mode": "fast"}, "mode"),
    ("report", (), {"only": [3]}, "only"),
    ("load", (None,), {}, "results_dir"),
    ("load", (12,), {}, "results_dir"),
]


@pytest.mark.parametrize("fn,args,kw,names", BAD_CALLS, ids=[f"{c[0]}-{c[3]}-{i}" for i, c in enumerate(BAD_CALLS)])
@tally("api")
def test_bad_arguments_are_one_usage_error_naming_the_argument(tmp_path, fn, args, kw, names):
    os.chdir(tmp_path)  # nothing may be written anyway
    with pytest.raises(UsageError) as e:
        getattr(bncli, fn)(*args, **kw)
    text = str(e.value)
    assert names in text and "\n" not in text, text
    assert not any(tmp_path.iterdir())


@tally("api")
def test_a_second_call_from_another_thread_is_refused_in_one_line(made, tmp_path):
    cfg, _, _ = made
    started, errors, results = threading.Event(), [], []

    def slow():
        def on_progress(*a):
            started.set()
        from bncli.api import plan

        p = plan("train", cfg, ["train.steps=3000", "train.seeds=1"], tmp_path / "slow")
        from bncli.api import _one_at_a_time

        with _one_at_a_time("train"):
            results.append(p.run(1, on_progress=on_progress))

    t = threading.Thread(target=slow)
    t.start()
    assert started.wait(60)
    try:
        bncli.train(cfg, out=tmp_path / "other", workers=1, progress=False)
    except BncliError as e:
        errors.append(str(e))
    t.join()
    assert len(errors) == 1 and "another bncli call is running" in errors[0] and "\n" not in errors[0]
    assert results and all(r["status"] == "ok" for r in results[0].runs)
    meta = json.loads(open(results[0].runs[0]["run_dir"] + "/meta.json").read())
    assert meta["blas_threads"] == 1


def _relabel(path, **change):
    doc = json.loads(path.read_text())
    doc["runs"][0].update(change)
    path.write_text(json.dumps(doc))


RELABEL = [("train", "experiment.json", {"arm": "after"}), ("train", "experiment.json", {"seed": 1}),
           ("train", "experiment.json", {"seed": [1, 2]}), ("sweep", "sweep.json", {"optimizer.lr": 1000}),
           ("sweep", "sweep.json", {"arm": "before"}),
           ("train", "experiment.json", {"hash": "../../../etc"})]


@pytest.mark.parametrize("kind,listing,change", RELABEL, ids=[str(c[2]) for c in RELABEL])
@tally("api")
def test_load_refuses_a_listing_that_relabels_its_runs(made, tmp_path, kind, listing, change):
    import shutil

    _, r, s = made
    src = (r if kind == "train" else s).path
    d = tmp_path / "copy"
    shutil.copytree(src, d)
    first = json.loads((d / listing).read_text())["runs"][0]
    if change.get("arm") == first["arm"]:
        change = {"arm": "none" if first["arm"] != "none" else "before"}
    _relabel(d / listing, **change)
    with pytest.raises(UsageError) as e:
        bncli.load(d)
    assert "\n" not in str(e.value) and (listing in str(e.value) or "runs" in str(e.value)), str(e.value)


@pytest.mark.parametrize("content", ["{", "[1, 2]", "null", "[" * 100_000])
@tally("api")
def test_load_names_a_damaged_failed_json(made, tmp_path, content):
    import shutil

    _, r, _ = made
    d = tmp_path / "copy"
    shutil.copytree(r.path, d)
    (d / "failed").mkdir(exist_ok=True)
    (d / "failed" / f"{r.runs[0]['hash']}.json").write_text(content)
    with pytest.raises(UsageError) as e:
        bncli.load(d)
    assert "failed" in str(e.value) and "\n" not in str(e.value)


@tally("api")
def test_load_by_a_relative_or_an_absolute_path_is_the_same(made, tmp_path):
    _, r, _ = made
    os.chdir(r.path.parent)
    assert bncli.load(r.path.name) == bncli.load(r.path.resolve()) == r
