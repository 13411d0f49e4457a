"""bncli.experiment.run_experiment: arms x seeds, outputs on disk, statistics."""

from __future__ import annotations

import csv
import json
import math
import statistics

import pytest

from bncli.config import load_config
from bncli.errors import UsageError
from bncli.experiment import SUMMARY_COLUMNS, run_experiment
from bncli.runs import data_fingerprint, read_metrics, run_key
from tiny import run_dir, tiny_config

CONFIG = tiny_config("tinyexp", extra_train="  target_accuracy: 0.9\n")
RUN_FILES = {"config.yaml", "metrics.csv", "summary.json", "meta.json"}
TIMING = {"time_s"}


def write_config(tmp_path, text=CONFIG, name="exp.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def read_summary(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exp1")
    cfg, src = load_config(write_config(tmp))
    out = tmp / "results" / cfg.name
    result = run_experiment(cfg, src, out, workers=1)
    return cfg, out, result


def test_directory_layout(one_worker):
    cfg, out, result = one_worker
    assert result.out_dir == out
    assert {p.name for p in out.iterdir() if p.name != ".bncli.lock"} == {
        "config.yaml", "summary.csv", "experiment.json", "learning_curves.png", "runs", ".bncli.json"}
    fp = data_fingerprint(cfg)
    expected = {run_key(cfg.run_config(arm, seed).hash(), fp) for arm in ("none", "before") for seed in (0, 1)}
    assert {p.name for p in (out / "runs").iterdir()} == expected  # one folder per run, named by its run key
    for arm in ("none", "before"):
        for seed in (0, 1):
            assert {p.name for p in run_dir(out, arm, seed).iterdir()} == RUN_FILES
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.name not in (".bncli.json", ".bncli.lock")]
    # the experiment's resolved config loads back to the same config
    loaded, _ = load_config(out / "config.yaml")
    assert loaded == cfg


def test_summary_csv(one_worker):
    cfg, out, result = one_worker
    fields, rows = read_summary(out / "summary.csv")
    assert fields == SUMMARY_COLUMNS
    assert [(r["arm"], r["seed"]) for r in rows] == [("none", "0"), ("none", "1"), ("before", "0"), ("before", "1")]
    for r in rows:
        assert r["experiment"] == "tinyexp"
        assert r["status"] == "ok"
        assert r["steps_done"] == "40"
        assert r["error"] == "" and r["diverged_at_step"] == ""
        assert r["hash"] == run_key(cfg.run_config(r["arm"], int(r["seed"])).hash(), data_fingerprint(cfg))
        # the numbers agree with the run's own metrics
        cols, m = read_metrics(out / "runs" / r["hash"] / "metrics.csv")
        assert float(r["final_test_acc"]) == m[-1][cols.index("test_acc")]
        assert float(r["best_test_acc"]) == max(row[cols.index("test_acc")] for row in m)
        reached = next((row[0] for row in m if row[cols.index("test_acc")] >= 0.9), None)
        assert (r["steps_to_target"] == "") == (reached is None)
        if reached is not None:
            assert float(r["steps_to_target"]) == reached


def test_experiment_json_arms_and_paired_comparisons(one_worker):
    cfg, out, result = one_worker
    exp = json.loads((out / "experiment.json").read_text())
    assert exp["name"] == "tinyexp" and exp["config_hash"] == cfg.hash()
    _, rows = read_summary(out / "summary.csv")
    for arm in ("none", "before"):
        a = exp["arms"][arm]
        assert a["n_runs"] == 2 and a["status"] == {"ok": 2, "diverged": 0, "failed": 0}
        values = [float(r["final_test_acc"]) for r in rows if r["arm"] == arm]
        assert a["final_test_acc"]["n"] == 2
        assert a["final_test_acc"]["mean"] == pytest.approx(statistics.mean(values))
        assert a["final_test_acc"]["sd"] == pytest.approx(statistics.stdev(values))
        lo, hi = a["final_test_acc"]["ci_low"], a["final_test_acc"]["ci_high"]
        assert lo <= a["final_test_acc"]["mean"] <= hi
    comps = {(c["arm"], c["metric"]): c for c in exp["comparisons"]}
    assert {c["baseline"] for c in exp["comparisons"]} == {"none"}
    assert set(comps) == {("before", m) for m in ("final_test_acc", "best_test_acc", "final_train_loss",
                                                  "steps_to_target")}
    steps = comps[("before", "steps_to_target")]
    assert steps["n"] == 2 and "sign test" in steps["method"]
    assert sum(steps["faster"].values()) == 2  # every seed is counted: faster either way, or unknown
    for metric in ("final_test_acc", "final_train_loss"):
        by = {(r["arm"], r["seed"]): float(r[metric]) for r in rows}
        diffs = [by[("before", s)] - by[("none", s)] for s in ("0", "1")]
        c = comps[("before", metric)]
        assert c["difference"] == "before - none"
        assert c["n"] == 2
        assert c["mean"] == pytest.approx(statistics.mean(diffs), rel=1e-12, abs=1e-15)
        assert c["sd"] == pytest.approx(statistics.stdev(diffs), rel=1e-9, abs=1e-15)
    # the in-memory result matches the file
    assert result.comparisons[0]["mean"] == pytest.approx(exp["comparisons"][0]["mean"])


def test_learning_curves_png(one_worker):
    _, out, result = one_worker
    png = out / "learning_curves.png"
    assert result.figure == png
    data = png.read_bytes()
    assert len(data) > 1000
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_two_workers_give_the_same_numbers(one_worker, tmp_path):
    cfg, out1, _ = one_worker
    cfg2, src2 = load_config(write_config(tmp_path))
    out2 = tmp_path / "results" / "tinyexp"
    run_experiment(cfg2, src2, out2, workers=2)
    _, rows1 = read_summary(out1 / "summary.csv")
    _, rows2 = read_summary(out2 / "summary.csv")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    assert strip(rows1) == strip(rows2)
    for arm in ("none", "before"):
        for seed in (0, 1):
            assert (run_dir(out1, arm, seed) / "metrics.csv").read_bytes() == \
                (run_dir(out2, arm, seed) / "metrics.csv").read_bytes()
    e1 = json.loads((out1 / "experiment.json").read_text())
    e2 = json.loads((out2 / "experiment.json").read_text())
    assert e1["comparisons"] == e2["comparisons"]
    for arm in ("none", "before"):
        a1 = {k: v for k, v in e1["arms"][arm].items() if k not in TIMING}
        a2 = {k: v for k, v in e2["arms"][arm].items() if k not in TIMING}
        assert a1 == a2


def test_batch_size_larger_than_training_set(tmp_path):
    path = write_config(tmp_path, CONFIG.replace("batch_size: 30", "batch_size: 301"))
    cfg, src = load_config(path)
    out = tmp_path / "results" / "tinyexp"
    with pytest.raises(UsageError) as e:
        run_experiment(cfg, src, out, workers=1)
    msg = str(e.value)
    line = CONFIG.splitlines().index("  batch_size: 30") + 1
    assert f"{path}:{line}:" in msg
    assert "train.batch_size" in msg
    assert "301" in msg and "300" in msg
    assert e.value.exit_code == 2
    assert not (tmp_path / "results").exists()


def test_batch_size_from_override_names_the_override(tmp_path):
    path = write_config(tmp_path)
    cfg, src = load_config(path, ["train.batch_size=500"])
    with pytest.raises(UsageError) as e:
        run_experiment(cfg, src, tmp_path / "out", workers=1)
    assert "command line 'train.batch_size=500'" in str(e.value)
    assert "train.batch_size" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_unwritable_output_is_a_usage_error(tmp_path):
    cfg, src = load_config(write_config(tmp_path))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UsageError) as e:
        run_experiment(cfg, src, tmp_path / "afile" / "out", workers=1)
    assert "--out" in str(e.value)
    assert (tmp_path / "afile").is_file()


def test_failed_runs_are_recorded(tmp_path, monkeypatch):
    import bncli.runs

    real = bncli.runs.dispatcher.train_run

    def flaky(cfg, data, **kw):
        if cfg.model.bn == ["before"] and cfg.train.seeds == [1]:
            raise RuntimeError("boom")
        return real(cfg, data, **kw)

    monkeypatch.setattr(bncli.runs.dispatcher, "train_run", flaky)
    cfg, src = load_config(write_config(tmp_path))
    out = tmp_path / "out"
    done = []
    result = run_experiment(cfg, src, out, workers=1, on_done=lambda spec, r: done.append((spec.arm, spec.seed)))
    assert sorted(done) == [("before", 0), ("before", 1), ("none", 0), ("none", 1)]
    statuses = {(r["arm"], r["seed"]): r["status"] for r in result.runs}
    assert statuses == {("none", 0): "ok", ("none", 1): "ok", ("before", 0): "ok", ("before", 1): "failed"}
    _, rows = read_summary(out / "summary.csv")
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"] == "RuntimeError: boom"
    assert not (out / "runs" / cfg.run_config("before", 1).hash()).exists()
    exp = json.loads((out / "experiment.json").read_text())
    assert exp["arms"]["before"]["status"] == {"ok": 1, "diverged": 0, "failed": 1}
    # the paired comparison uses only the seed present in both arms
    comp = next(c for c in exp["comparisons"] if c["metric"] == "final_test_acc")
    assert comp["n"] == 1
    by = {(r["arm"], r["seed"]): float(r["final_test_acc"]) for r in rows if r["status"] == "ok"}
    assert comp["mean"] == pytest.approx(by[("before", "0")] - by[("none", "0")])


def test_diverged_runs_are_results(tmp_path):
    # evaluations every step, so every run has a finite training loss at step 1 before diverging
    text = (CONFIG.replace("lr: 0.1", "lr: 1.0e+20").replace("bn: [none, before]", "bn: [none, after]")
            .replace("eval_every: 10", "eval_every: 1"))
    cfg, src = load_config(write_config(tmp_path, text))
    result = run_experiment(cfg, src, tmp_path / "out", workers=1)
    assert {r["status"] for r in result.runs} == {"diverged"}
    _, rows = read_summary(tmp_path / "out" / "summary.csv")
    assert all(r["status"] == "diverged" and r["diverged_at_step"] != "" for r in rows)
    assert all(int(r["steps_done"]) < 40 for r in rows)
    exp = json.loads((tmp_path / "out" / "experiment.json").read_text())
    assert exp["arms"]["none"]["status"] == {"ok": 0, "diverged": 2, "failed": 0}
    assert "NaN" not in (tmp_path / "out" / "experiment.json").read_text()
    # diverged runs are counted, never averaged: no mean, the count says why
    assert exp["arms"]["none"]["best_test_acc"]["n"] == 0 and exp["arms"]["none"]["best_test_acc"]["mean"] is None
    assert "4x" in exp["diverged"]
    assert (tmp_path / "out" / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_runs_that_all_diverge_before_the_first_evaluation_are_results(tmp_path):
    text = CONFIG.replace("lr: 0.1", "lr: 1.0e+20").replace("bn: [none, before]", "bn: [none, after]")
    cfg, src = load_config(write_config(tmp_path, text))
    result = run_experiment(cfg, src, tmp_path / "out", workers=1)
    assert {r["status"] for r in result.runs} == {"diverged"}
    _, rows = read_summary(tmp_path / "out" / "summary.csv")
    assert [r["status"] for r in rows] == ["diverged"] * 4


# -- censoring in the experiment's statistics ---------------------------------------------------------------------------
def fake_runs(none_steps, bn_steps, budget=100, diverged=()):
    runs = []
    for arm, steps in (("none", none_steps), ("before", bn_steps)):
        for seed, st in enumerate(steps):
            div = (arm, seed) in diverged
            runs.append({"arm": arm, "seed": seed, "status": "diverged" if div else "ok", "steps_to_target": st,
                         "total_steps": budget, "final_test_acc": 0.1 if div else 0.9 + 0.001 * seed,
                         "best_test_acc": 0.9, "final_train_loss": 0.3, "mean_train_loss": 0.4, "time_s": 1.0})
    return runs


def test_the_steps_comparison_uses_every_seed_with_censored_runs_as_bounds():
    """The quickstart case: BN reaches the target in every seed, no BN in one of them. The old table compared the
    arms on that one seed; now all seeds count, the censored ones as bounds (BN faster by >= budget - its steps)."""
    from bncli.config import ExperimentConfig
    from bncli.experiment import aggregate

    cfg = ExperimentConfig(model={"bn": ["none", "before"]})
    nb = [None] * 9 + [60]
    bn = [20, 30, 20, 40, 30, 20, 30, 20, 30, 80]
    arms, comps = aggregate(cfg, fake_runs(nb, bn))
    c = next(c for c in comps if c["metric"] == "steps_to_target")
    assert c["n"] == 10 and c["faster"] == {"before": 9, "none": 1, "unknown": 0}
    # differences before - none: nine are <= (bn - 100), one is exactly 80 - 60 = +20; the sign-test interval
    # for n = 10 uses k = 2: the 2nd smallest lower bound (-inf) and the 2nd largest upper bound (-60)
    assert c["ci_low"] == -math.inf and c["ci_high"] == -60 and c["coverage"] == pytest.approx(1 - 22 / 1024)
    assert c["sign_test_p"] == pytest.approx(2 * 11 / 1024)
    assert arms["none"]["reached_target"] == 1 and arms["before"]["reached_target"] == 10
    assert arms["none"]["steps_to_target"]["median_text"] == "> 100"  # the median run never got there
    assert arms["before"]["steps_to_target"]["median"] == 30


def test_a_tie_and_a_pair_censored_on_both_sides_are_of_unknown_order():
    from bncli.config import ExperimentConfig
    from bncli.experiment import aggregate

    cfg = ExperimentConfig(model={"bn": ["none", "before"]})
    _, comps = aggregate(cfg, fake_runs([50, None, 40], [50, None, 20]))
    c = next(c for c in comps if c["metric"] == "steps_to_target")
    assert c["faster"] == {"before": 1, "none": 0, "unknown": 2}
    assert c["sign_test_p"] == 1.0 and c["ci_text"] == "none (n < 6)"


def test_diverged_runs_are_left_out_of_means_and_paired_t_with_the_count():
    from bncli.config import ExperimentConfig
    from bncli.experiment import aggregate

    cfg = ExperimentConfig(model={"bn": ["none", "before"]})
    arms, comps = aggregate(cfg, fake_runs([50, 60, 70], [20, None, 30], diverged={("before", 1)}))
    assert arms["before"]["status"] == {"ok": 2, "diverged": 1, "failed": 0}
    assert arms["before"]["final_test_acc"]["n"] == 2
    assert arms["before"]["final_test_acc"]["mean"] == pytest.approx((0.9 + 0.902) / 2)
    acc = next(c for c in comps if c["metric"] == "final_test_acc")
    assert acc["n"] == 2 and acc["excluded_diverged"] == 1
    steps = next(c for c in comps if c["metric"] == "steps_to_target")
    assert steps["n"] == 3 and steps["faster"] == {"before": 2, "none": 1, "unknown": 0}  # diverged = never reached


# -- huge numbers: a run whose loss grew to 1e200 without becoming non-finite is a result, never a crash -------------
def test_runs_with_huge_finite_losses_are_summarized(tmp_path, monkeypatch):
    """Used to be an OverflowError in stats.describe ((x - mean)**2 of 1e200), and then summary.csv and
    experiment.json were never written. Through the command line, so that its tables see the numbers too."""
    import bncli.runs
    from typer.testing import CliRunner

    from bncli.cli import app

    real = bncli.runs.dispatcher.train_run

    def blown_up(cfg, data, **kw):
        result = real(cfg, data, **kw)
        k = cfg.train.seeds[0] + 1
        result.summary.update(mean_train_loss=1e200 * k, final_train_loss=1.7e308 / k, final_test_acc=0.5)
        return result

    monkeypatch.setattr(bncli.runs.dispatcher, "train_run", blown_up)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["train", str(write_config(tmp_path)), "--out", str(out), "-j", "1"])
    assert r.exit_code == 0, r.output
    assert "unexpected" not in r.output
    _, rows = read_summary(out / "summary.csv")
    assert [float(r["mean_train_loss"]) for r in rows] == [1e200, 2e200, 1e200, 2e200]
    exp = json.loads((out / "experiment.json").read_text())
    m = exp["arms"]["none"]["mean_train_loss"]
    assert m["n"] == 2 and m["mean"] == pytest.approx(1.5e200) and m["sd"] == pytest.approx(math.sqrt(0.5) * 1e200)
    assert exp["arms"]["none"]["final_train_loss"]["mean"] == pytest.approx(0.75 * 1.7e308)


def test_the_summary_is_written_before_the_statistics(tmp_path, monkeypatch):
    """Whatever the statistics over them make of the runs, every run's numbers reach summary.csv first."""
    import bncli.experiment

    def broken(cfg, runs):
        raise ArithmeticError("statistics failed")

    monkeypatch.setattr(bncli.experiment, "aggregate", broken)
    cfg, src = load_config(write_config(tmp_path))
    with pytest.raises(ArithmeticError):
        run_experiment(cfg, src, tmp_path / "out", workers=1)
    _, rows = read_summary(tmp_path / "out" / "summary.csv")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
