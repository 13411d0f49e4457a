"""bncli.runs: run directories (config.yaml, metrics.csv, summary.json, meta.json), written atomically."""

from __future__ import annotations

import copy
import json
import math
import os
import platform
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

import bncli
from bncli.config import ExperimentConfig, load_config
from bncli.runs import csv_text as metrics_csv, dataset_for, platform_info, read_metrics, run_task
from bncli.training import train_run

BASE = {
    "name": "tinyruns",
    "data": {"name": "synthetic",
             "synthetic": {"n_train": 300, "n_test": 100, "n_features": 8, "n_classes": 3}},
    "model": {"hidden": [16, 16], "bn": ["none", "before"]},
    "optimizer": {"name": "sgd", "lr": 0.1},
    "train": {"batch_size": 30, "steps": 40, "seeds": [0, 1], "eval_every": 10},
}
FILES = {"config.yaml", "metrics.csv", "summary.json", "meta.json"}


def run_cfg(arm="before", seed=0, **sections) -> ExperimentConfig:
    d = copy.deepcopy(BASE)
    for section, values in sections.items():
        d[section].update(values)
    return ExperimentConfig.model_validate(d).run_config(arm, seed)


def task(cfg, run_dir):
    return {"config": cfg.to_dict(), "run_dir": str(run_dir)}


def hidden_entries(root):
    return [p for p in root.rglob("*") if p.name.startswith(".")]


def test_run_task_writes_the_four_files(tmp_path):
    cfg = run_cfg("before", 1)
    run_dir = tmp_path / "exp" / "before" / "seed-1"
    res = run_task(task(cfg, run_dir))
    assert {p.name for p in run_dir.iterdir()} == FILES
    assert res["run_dir"] == str(run_dir)
    assert res["config_hash"] == cfg.hash()
    assert res["status"] == "ok" and res["arm"] == "before" and res["seed"] == 1
    assert "blas_threads" in res


def test_config_yaml_loads_back_to_an_equal_config(tmp_path):
    cfg = run_cfg("none", 1, optimizer={"lr": 1e-3, "schedule": "cosine", "warmup": 3},
                  model={"bn_eps": 1e-4, "activation": "tanh"}, data={"val_fraction": 0.2})
    run_task(task(cfg, tmp_path / "r"))
    loaded, _ = load_config(tmp_path / "r" / "config.yaml")
    assert loaded == cfg
    assert loaded.hash() == cfg.hash()
    assert loaded.model.bn == ["none"] and loaded.train.seeds == [1]
    assert loaded.optimizer.lr == 1e-3 and isinstance(loaded.optimizer.lr, float)


def test_meta_json(tmp_path):
    cfg = run_cfg("before", 0)
    run_task(task(cfg, tmp_path / "r"))
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    for key in ("status", "arm", "seed", "config_hash", "started", "ended", "versions", "blas_threads"):
        assert key in meta, key
    assert meta["status"] == "ok"
    assert meta["arm"] == "before" and meta["seed"] == 0
    assert meta["config_hash"] == cfg.hash()
    assert meta["versions"]["bncli"] == bncli.__version__
    assert meta["versions"]["numpy"] == np.__version__
    assert meta["versions"]["python"] == platform.python_version()
    assert meta["blas_threads"] is None or (isinstance(meta["blas_threads"], int) and meta["blas_threads"] >= 1)
    started, ended = datetime.fromisoformat(meta["started"]), datetime.fromisoformat(meta["ended"])
    assert started.tzinfo is not None and started <= ended


def test_summary_json_matches_the_metrics(tmp_path):
    cfg = run_cfg("before", 0)
    run_task(task(cfg, tmp_path / "r"))
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    columns, rows = read_metrics(tmp_path / "r" / "metrics.csv")
    assert summary["final_test_acc"] == rows[-1][columns.index("test_acc")]
    assert summary["final_train_loss"] == rows[-1][columns.index("train_loss")]
    assert summary["steps_done"] == 40 == rows[-1][0]
    assert summary["arm"] == "before" and summary["seed"] == 0


def test_same_task_twice_gives_byte_identical_metrics(tmp_path):
    cfg = run_cfg("before", 3)
    run_task(task(cfg, tmp_path / "a"))
    run_task(task(cfg, tmp_path / "b"))
    a = (tmp_path / "a" / "metrics.csv").read_bytes()
    b = (tmp_path / "b" / "metrics.csv").read_bytes()
    assert a == b
    assert len(a.splitlines()) == 1 + 5  # header + steps 0, 10, 20, 30, 40
    assert (tmp_path / "a" / "config.yaml").read_bytes() == (tmp_path / "b" / "config.yaml").read_bytes()
    # and a different seed gives a different file
    run_task(task(run_cfg("before", 4), tmp_path / "c"))
    assert (tmp_path / "c" / "metrics.csv").read_bytes() != a


def test_metrics_identical_to_a_direct_train_run(tmp_path):
    cfg = run_cfg("none", 2, train={"dtype": "float64"})
    run_task(task(cfg, tmp_path / "r"))
    res = train_run(cfg, dataset_for(cfg))
    assert (tmp_path / "r" / "metrics.csv").read_text() == metrics_csv(res.columns, res.rows)


def test_metrics_csv_round_trip_with_nan_as_empty(tmp_path):
    columns = ["step", "epoch", "lr", "train_loss", "train_acc"]
    rows = [[0, 0.0, 0.1, math.nan, math.nan],
            [10, 1 / 3, 0.1, 0.123456789012345678, 0.5],
            [20, 2 / 3, 1e-7, math.inf, 1.0]]
    text = metrics_csv(columns, rows)
    lines = text.splitlines()
    assert lines[0] == "step,epoch,lr,train_loss,train_acc"
    assert lines[1] == "0,0.0,0.1,,"
    assert "nan" not in text.lower()
    p = tmp_path / "m.csv"
    p.write_text(text)
    cols, back = read_metrics(p)
    assert cols == columns
    assert len(back) == len(rows)
    for r, b in zip(rows, back):
        for v, w in zip(r, b):
            if isinstance(v, float) and math.isnan(v):
                assert math.isnan(w)
            else:
                assert w == v  # floats are written with repr: exact round trip


def test_written_metrics_round_trip_exactly(tmp_path):
    cfg = run_cfg("before", 0, data={"val_fraction": 0.2}, train={"eval_train": True})
    run_task(task(cfg, tmp_path / "r"))
    res = train_run(cfg, dataset_for(cfg))
    cols, rows = read_metrics(tmp_path / "r" / "metrics.csv")
    assert cols == res.columns
    assert "val_acc" in cols and "train_eval_acc" in cols
    for r, b in zip(res.rows, rows):
        assert [("nan" if math.isnan(v) else v) for v in map(float, r)] == \
            [("nan" if math.isnan(v) else v) for v in b]


def test_no_hidden_temp_directories_left(tmp_path):
    cfg = run_cfg("before", 0)
    out = tmp_path / "exp"
    run_task(task(cfg, out / "before" / "seed-0"))
    # replacing an existing run directory leaves nothing behind either
    run_task(task(cfg, out / "before" / "seed-0"))
    run_task(task(run_cfg("none", 0), out / "none" / "seed-0"))
    assert hidden_entries(tmp_path) == []
    assert sorted(p.name for p in (out / "before").iterdir()) == ["seed-0"]
    assert {p.name for p in (out / "before" / "seed-0").iterdir()} == FILES


def test_rerun_replaces_the_whole_directory(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "stale.txt").write_text("old")
    run_task(task(run_cfg("none", 0), run_dir))
    assert {p.name for p in run_dir.iterdir()} == FILES
    assert hidden_entries(tmp_path) == []


def test_failed_training_leaves_no_directory(tmp_path, monkeypatch):
    import bncli.runs.dispatcher
    import bncli.runs.provenance

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(bncli.runs.dispatcher, "train_run", boom)
    with pytest.raises(RuntimeError, match="boom"):
        run_task(task(run_cfg("none", 0), tmp_path / "r"))
    assert list(tmp_path.iterdir()) == []


def test_diverged_run_is_written_with_status(tmp_path):
    cfg = run_cfg("none", 0, optimizer={"lr": 1e6}, model={"activation": "relu"})
    res = run_task(task(cfg, tmp_path / "r"))
    assert res["status"] == "diverged"
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert meta["status"] == summary["status"] == "diverged"
    assert summary["diverged_at_step"] == res["diverged_at_step"]
    # NaN is valid JSON nowhere: summary.json holds null instead
    assert "NaN" not in (tmp_path / "r" / "summary.json").read_text()
    cols, rows = read_metrics(tmp_path / "r" / "metrics.csv")
    assert rows[-1][0] == res["diverged_at_step"]


def test_progress_reports_reach_the_caller(tmp_path):
    msgs = []
    run_task(task(run_cfg("before", 0), tmp_path / "r"), report=lambda *m: msgs.append(m))
    assert [m[0] for m in msgs] == [0, 10, 20, 30, 40]
    assert all(m[1] == 40 for m in msgs)
    assert all(len(m) == 4 for m in msgs)


BLAS_FIELDS = {"internal_api", "version", "architecture", "threading_layer", "num_threads", "library"}


@pytest.fixture
def fresh_platform_info():
    platform_info.cache_clear()
    yield platform_info
    platform_info.cache_clear()


def test_meta_json_records_the_platform(tmp_path):
    from threadpoolctl import threadpool_info

    run_task(task(run_cfg("before", 0), tmp_path / "r"))
    plat = json.loads((tmp_path / "r" / "meta.json").read_text())["platform"]
    assert {"blas", "numpy_build", "cpu_model", "cpu_count", "machine", "kernel_env"} <= set(plat)
    loaded = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    assert loaded, "numpy is imported, so threadpoolctl sees its BLAS"
    assert len(plat["blas"]) == len(loaded)
    for rec, lib in zip(plat["blas"], loaded):
        assert set(rec) == BLAS_FIELDS
        assert rec["internal_api"] == lib["internal_api"] and rec["version"] == lib["version"]
        assert rec["architecture"] == lib.get("architecture")
        assert rec["library"] == Path(lib["filepath"]).name and "/" not in rec["library"]  # basename only
        assert isinstance(rec["num_threads"], int) and rec["num_threads"] >= 1
    assert plat["cpu_count"] == os.cpu_count()
    assert plat["machine"] == (platform.machine() or None)
    assert plat["cpu_model"] is None or (isinstance(plat["cpu_model"], str) and plat["cpu_model"])
    if Path("/proc/cpuinfo").exists() and "model name" in Path("/proc/cpuinfo").read_text():
        assert plat["cpu_model"] and plat["cpu_model"] in Path("/proc/cpuinfo").read_text()


def test_meta_json_platform_has_the_thread_count_at_writing_time(tmp_path):
    from threadpoolctl import threadpool_limits

    platform_info()  # cached outside any limit
    with threadpool_limits(limits=1, user_api="blas"):
        run_task(task(run_cfg("before", 0), tmp_path / "r"))
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert [b["num_threads"] for b in meta["platform"]["blas"]] == [1] * len(meta["platform"]["blas"])
    assert meta["blas_threads"] == 1


def test_platform_info_records_kernel_pinning_variables(fresh_platform_info, monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.delenv("MKL_CBWR", raising=False)
    info = fresh_platform_info()
    assert info["kernel_env"]["OPENBLAS_CORETYPE"] == "Haswell"
    assert "MKL_CBWR" not in info["kernel_env"]


def test_platform_info_is_cached(fresh_platform_info):
    assert fresh_platform_info() is fresh_platform_info()


def test_platform_info_survives_a_failing_threadpoolctl(fresh_platform_info, monkeypatch):
    import threadpoolctl

    def boom():
        raise RuntimeError("no BLAS for you")

    monkeypatch.setattr(threadpoolctl, "threadpool_info", boom)
    info = fresh_platform_info()
    assert isinstance(info, dict)
    assert info["blas"] is None  # the failing reader's field only
    assert info["cpu_count"] == os.cpu_count() and info["machine"] == (platform.machine() or None)


def test_platform_info_survives_every_reader_failing(fresh_platform_info, monkeypatch):
    import threadpoolctl

    import bncli.runs.dispatcher
    import bncli.runs.provenance

    def boom(*a, **k):
        raise OSError("unreadable")

    with monkeypatch.context() as m:
        m.setattr(threadpoolctl, "threadpool_info", boom)
        m.setattr(np, "show_config", boom)
        m.setattr(os, "cpu_count", boom)
        m.setattr(platform, "machine", boom)
        m.setattr(platform, "processor", boom)
        m.setattr(bncli.runs.provenance, "open", boom, raising=False)  # /proc/cpuinfo
        info = fresh_platform_info()
    assert info["blas"] is None and info["numpy_build"] is None and info["cpu_model"] is None
    assert info["cpu_count"] is None and info["machine"] is None
    assert set(info) == {"blas", "numpy_build", "cpu_model", "cpu_count", "machine", "kernel_env"}
