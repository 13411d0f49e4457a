"""bncli.sweeps as a library: grids, random draws, validation, the plan, run_sweep's outputs, statistics, usable
ranges, resuming, failures, worker counts and stale temporary directories."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

import bncli.sweeps
from bncli import atomic
from bncli.config import ExperimentConfig, SweepConfig, SweepParam, load_config, sweep_override
from bncli.errors import UsageError
from bncli.runs import data_fingerprint, grid_values, points, run_key
from bncli.sweeps import plan_sweep as plan, run_sweep, seed_ranges, usable_ranges

from sweep_helpers import (as_float, check_complete, hidden_leftovers, line_of, numbers, read_csv,
                           run_dirs, write_config)

T975_DF1 = 12.706204736174707  # Student t quantile 0.975 with 1 degree of freedom (two seeds)

LR3 = "  parameters:\n    optimizer.lr:\n      values: [0.01, 0.1, 1.0e4]\n"  # 3 points x 2 arms x 2 seeds


def load(path, overrides=()):
    return load_config(path, list(overrides), sweep_overrides=True)


# -- grids -----------------------------------------------------------------------------------------------------------
def test_grid_values_explicit_values_kept_as_given():
    assert grid_values(SweepParam(values=[0.3, "adam", 2, [16, 16]])) == [0.3, "adam", 2, [16, 16]]


def test_grid_log_per_decade_1e4_to_10_three_per_decade():
    vals = grid_values(SweepParam(min=1e-4, max=10, scale="log", per_decade=3))
    assert len(vals) == 16
    assert vals[0] == 1e-4 and vals[-1] == 10
    assert vals[::3] == [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]  # every third point is a power of ten, exactly
    for a, b in zip(vals, vals[1:]):
        assert b / a == pytest.approx(10 ** (1 / 3), rel=1e-5)
    assert vals[1] == pytest.approx(2.15443e-4, rel=1e-6) and vals[2] == pytest.approx(4.64159e-4, rel=1e-6)


def test_grid_log_with_num():
    assert grid_values(SweepParam(min=1e-3, max=1, scale="log", num=4)) == [1e-3, 1e-2, 1e-1, 1.0]
    vals = grid_values(SweepParam(min=1e-2, max=1, num=3))  # scale log is the default
    assert vals == [0.01, 0.1, 1.0]


def test_grid_linear_integers_stay_integers():
    vals = grid_values(SweepParam(min=1, max=5, scale="linear", num=5))
    assert vals == [1, 2, 3, 4, 5] and all(type(v) is int for v in vals)
    vals = grid_values(SweepParam(min=0, max=10, scale="linear", num=6))
    assert vals == [0, 2, 4, 6, 8, 10] and all(type(v) is int for v in vals)


def test_grid_linear_non_integral_steps_are_floats():
    vals = grid_values(SweepParam(min=1, max=4, scale="linear", num=3))
    assert vals == [1.0, 2.5, 4.0] and all(type(v) is float for v in vals)
    vals = grid_values(SweepParam(min=0.5, max=0.9, scale="linear", num=5))
    assert vals == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9]) and all(type(v) is float for v in vals)


def test_points_is_the_cartesian_product_in_key_order():
    spec = SweepConfig(parameters={"optimizer.name": {"values": ["sgd", "adam"]},
                                   "optimizer.lr": {"values": [0.1, 0.2, 0.3]}})
    assert points(spec) == [{"optimizer.name": n, "optimizer.lr": lr} for n in ("sgd", "adam")
                            for lr in (0.1, 0.2, 0.3)]
    assert [list(p) for p in points(spec)] == [["optimizer.name", "optimizer.lr"]] * 6
    rev = SweepConfig(parameters={"optimizer.lr": {"values": [0.1, 0.2, 0.3]},
                                  "optimizer.name": {"values": ["sgd", "adam"]}})
    assert points(rev) == [{"optimizer.lr": lr, "optimizer.name": n} for lr in (0.1, 0.2, 0.3)
                           for n in ("sgd", "adam")]


# -- random search ---------------------------------------------------------------------------------------------------
def random_spec(seed=0, count=40):
    return SweepConfig(method="random", count=count, seed=seed, parameters={
        "optimizer.lr": {"min": 1e-4, "max": 1.0, "distribution": "log_uniform_values"},
        "optimizer.momentum": {"min": 0.5, "max": 0.99, "distribution": "uniform"},
        "train.batch_size": {"min": 10, "max": 13, "distribution": "int_uniform"},
        "optimizer.name": {"values": ["sgd", "momentum", "adam"]},
    })


def test_random_draws_count_and_bounds():
    pts = points(random_spec())
    assert len(pts) == 40
    for p in pts:
        assert list(p) == ["optimizer.lr", "optimizer.momentum", "train.batch_size", "optimizer.name"]
        assert 1e-4 <= p["optimizer.lr"] <= 1.0
        assert 0.5 <= p["optimizer.momentum"] <= 0.99
        assert type(p["train.batch_size"]) is int and 10 <= p["train.batch_size"] <= 13
        assert p["optimizer.name"] in ("sgd", "momentum", "adam")
    assert len({p["optimizer.lr"] for p in pts}) == 40  # continuous draws, not a grid


def test_random_draws_deterministic_for_a_seed_and_different_for_another():
    assert points(random_spec(seed=3)) == points(random_spec(seed=3))
    a, b = points(random_spec(seed=3)), points(random_spec(seed=4))
    assert [p["optimizer.lr"] for p in a] != [p["optimizer.lr"] for p in b]


def test_random_distributions_have_their_shape():
    pts = points(random_spec(seed=1, count=400))
    lrs = [p["optimizer.lr"] for p in pts]
    # log-uniform over 4 decades: about half below 1e-2 (a uniform draw would put ~1% there)
    assert 0.35 < sum(v < 1e-2 for v in lrs) / len(lrs) < 0.65
    assert min(lrs) < 1e-3
    mom = [p["optimizer.momentum"] for p in pts]
    # uniform: about half below the midpoint (a log-uniform draw would put noticeably more there)
    assert 0.4 < sum(v < 0.745 for v in mom) / len(mom) < 0.6
    assert {p["train.batch_size"] for p in pts} == {10, 11, 12, 13}  # both ends included
    assert {p["optimizer.name"] for p in pts} == {"sgd", "momentum", "adam"}


def test_random_uniform_distributions_accept_min_zero():
    spec = SweepConfig(method="random", count=50, seed=0, parameters={
        "optimizer.weight_decay": {"min": 0, "max": 0.01, "distribution": "uniform"},
        "model.depth": {"min": 0, "max": 2, "distribution": "int_uniform"}})
    pts = points(spec)
    assert all(0 <= p["optimizer.weight_decay"] <= 0.01 for p in pts)
    assert {p["model.depth"] for p in pts} == {0, 1, 2}


# -- validation ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, message", [
    (dict(values=[0.1], min=0.1, max=1, num=2), "not both"),
    (dict(min=1, max=0.1, num=2), "larger than max"),
    (dict(min=0, max=1, scale="log", per_decade=2), "log scale needs min > 0"),
    (dict(min=-1, max=1, distribution="log_uniform_values"), "min > 0"),
    (dict(min=0.1, max=1, scale="linear", per_decade=2), "per_decade needs scale: log"),
    (dict(min=0.1, max=1), "per_decade"),
    (dict(min=0.1), "both min and max"),
    (dict(values=[]), "must not be empty"),
])
def test_sweep_param_validation(kw, message):
    with pytest.raises(ValidationError, match=message):
        SweepParam(**kw)


@pytest.mark.parametrize("kw, message", [
    (dict(method="random", parameters={"optimizer.lr": {"min": 0.1, "max": 1,
                                                        "distribution": "log_uniform_values"}}), "needs count"),
    (dict(parameters={"optimizer.lr": {"min": 0.1, "max": 1, "distribution": "uniform"}}),
     "distribution is for method: random"),
    (dict(parameters={"model.bn": {"values": ["none", "before"]}}), "model.bn cannot be swept"),
    (dict(parameters={"train.seeds": {"values": [1, 2]}}), "train.seeds cannot be swept"),
    (dict(parameters={"optimizer.lr": {"values": [0.1]}}, range_key="optimizer.momentum"), "not a swept"),
    (dict(parameters={}), "at least one"),
])
def test_sweep_config_validation(kw, message):
    with pytest.raises(ValidationError, match=message):
        SweepConfig(**kw)


PARAM_ERRORS = {
    "both": ("    optimizer.lr:\n      values: [0.1]\n      min: 0.1\n      max: 1\n      num: 2\n",
             "optimizer.lr:", "not both"),
    "min_gt_max": ("    optimizer.lr:\n      min: 1\n      max: 0.1\n      num: 2\n", "optimizer.lr:",
                   "larger than max"),
    "log_min": ("    optimizer.lr:\n      min: 0\n      max: 1\n      per_decade: 2\n", "optimizer.lr:",
                "min > 0"),
    "per_decade_linear": ("    optimizer.momentum:\n      min: 0.1\n      max: 0.9\n      scale: linear\n"
                          "      per_decade: 2\n", "optimizer.momentum:", "per_decade needs scale: log"),
}
SWEEP_ERRORS = {
    "random_no_count": ("  method: random\n  parameters:\n    optimizer.lr:\n      min: 0.1\n      max: 1\n"
                        "      distribution: log_uniform_values\n", "needs count"),
    "distribution_in_grid": ("  parameters:\n    optimizer.lr:\n      min: 0.1\n      max: 1\n"
                             "      distribution: log_uniform_values\n", "distribution is for method: random"),
    "bn": ("  parameters:\n    model.bn:\n      values: [none, before]\n", "model.bn cannot be swept"),
    "seeds": ("  parameters:\n    train.seeds:\n      values: [1, 2]\n", "train.seeds cannot be swept"),
    "range_key": ("  parameters:\n    optimizer.lr:\n      values: [0.1, 1]\n  range_key: optimizer.momentum\n",
                  "is not a swept parameter"),
}


@pytest.mark.parametrize("case", sorted(PARAM_ERRORS))
def test_param_errors_point_at_the_swept_key_line(tmp_path, case):
    block, key, message = PARAM_ERRORS[case]
    path = write_config(tmp_path, "  parameters:\n" + block)
    text = path.read_text()
    with pytest.raises(UsageError) as e:
        load(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:{line_of(text, '    ' + key)}:"), msg
    assert message in msg
    assert e.value.exit_code == 2


@pytest.mark.parametrize("case", sorted(SWEEP_ERRORS))
def test_sweep_errors_point_at_the_sweep_key_line(tmp_path, case):
    block, message = SWEEP_ERRORS[case]
    path = write_config(tmp_path, block)
    text = path.read_text()
    with pytest.raises(UsageError) as e:
        load(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:{line_of(text, 'sweep:')}: sweep:"), msg
    assert message in msg


# -- command-line sweep parameters -----------------------------------------------------------------------------------
def test_sweep_override_forms():
    assert sweep_override("optimizer.lr=0.01,0.1") == ("optimizer.lr", {"values": [0.01, 0.1]})
    assert sweep_override("optimizer.name=sgd,adam") == ("optimizer.name", {"values": ["sgd", "adam"]})
    assert sweep_override("optimizer.lr=logrange(1e-3,1e-1,1)") == (
        "optimizer.lr", {"min": 1e-3, "max": 0.1, "scale": "log", "per_decade": 1})
    assert sweep_override("train.batch_size=linrange(10, 30, 3)") == (
        "train.batch_size", {"min": 10.0, "max": 30.0, "scale": "linear", "num": 3})
    assert sweep_override("optimizer.lr=0.05") is None  # a plain override
    with pytest.raises(UsageError, match="logrange"):
        sweep_override("optimizer.lr=logrange(1e-3,1e-1)")


def test_load_config_sweep_overrides(tmp_path):
    path = write_config(tmp_path)
    cfg, src = load(path, ["optimizer.lr=logrange(1e-3,1e-1,1)", "model.bn=none,after", "train.steps=20"])
    assert list(cfg.sweep.parameters) == ["optimizer.lr"]
    assert grid_values(cfg.sweep.parameters["optimizer.lr"]) == [1e-3, 1e-2, 1e-1]
    assert cfg.model.bn == ["none", "after"]  # arms, not swept
    assert cfg.train.steps == 20
    # without sweep_overrides, key=a,b is a plain value (here an invalid one)
    with pytest.raises(UsageError, match="optimizer.lr"):
        load_config(path, ["optimizer.lr=0.01,0.1"])


# -- the plan --------------------------------------------------------------------------------------------------------
def test_plan_runs_are_points_x_arms_x_seeds_keyed_by_hash(tmp_path):
    path = write_config(tmp_path, "  parameters:\n    optimizer.name:\n      values: [sgd, adam]\n"
                                  "    optimizer.lr:\n      values: [0.01, 0.1, 1.0]\n")
    cfg, src = load(path)
    out = tmp_path / "out"
    runs = plan(cfg, src, out)
    assert len(runs) == 6 * 2 * 2
    assert len({r.hash for r in runs}) == len(runs)
    combos = {(r.point["optimizer.name"], r.point["optimizer.lr"], r.arm, r.seed) for r in runs}
    assert combos == {(n, lr, a, s) for n in ("sgd", "adam") for lr in (0.01, 0.1, 1.0)
                      for a in ("none", "before") for s in (0, 1)}
    for r in runs:
        assert r.run_dir == out / "runs" / r.hash
        assert r.hash == run_key(r.config.hash(), data_fingerprint(r.config))
        assert r.config.model.bn == [r.arm] and r.config.train.seeds == [r.seed]
        assert r.config.optimizer.name == r.point["optimizer.name"]
        assert r.config.optimizer.lr == r.point["optimizer.lr"]
        assert r.config.sweep is None
        assert not r.done
        # the same run configured by hand has the same hash
        plain, _ = load_config(path, [f"optimizer.name={r.point['optimizer.name']}",
                                      f"optimizer.lr={r.point['optimizer.lr']}"])
        assert run_key(plain.run_config(r.arm, r.seed).hash(), data_fingerprint(plain)) == r.hash
    assert not out.exists()  # planning writes nothing


def test_plan_applies_plain_overrides_to_every_point(tmp_path):
    cfg, src = load(write_config(tmp_path), ["train.steps=7", "optimizer.lr=0.01,0.1", "train.seeds=[3]"])
    runs = plan(cfg, src, tmp_path / "out")
    assert len(runs) == 2 * 2 * 1
    assert all(r.config.train.steps == 7 and r.seed == 3 for r in runs)


def test_plan_deduplicates_identical_points(tmp_path):
    cfg, src = load(write_config(tmp_path, "  parameters:\n    optimizer.lr:\n"
                                           "      values: [0.1, 0.01, 0.1, 1.0e-1]\n"))
    runs = plan(cfg, src, tmp_path / "out")
    assert len(runs) == 2 * 2 * 2
    assert sorted({r.point["optimizer.lr"] for r in runs}) == [0.01, 0.1]
    assert len({r.hash for r in runs}) == len(runs)


def test_plan_random_method(tmp_path):
    cfg, src = load(write_config(tmp_path, "  method: random\n  count: 3\n  seed: 5\n  parameters:\n"
                                           "    optimizer.lr:\n      min: 1.0e-3\n      max: 1\n"
                                           "      distribution: log_uniform_values\n"))
    runs = plan(cfg, src, tmp_path / "out")
    assert len(runs) == 3 * 2 * 2
    assert len({r.point["optimizer.lr"] for r in runs}) == 3
    again = plan(*load(tmp_path / "sweep.yaml"), tmp_path / "out")
    assert [r.hash for r in again] == [r.hash for r in runs]


def test_plan_point_making_the_config_invalid(tmp_path):
    cfg, src = load(write_config(tmp_path, "  parameters:\n    optimizer.lr:\n      values: [0.1, -1]\n"))
    with pytest.raises(UsageError) as e:
        plan(cfg, src, tmp_path / "out")
    msg = str(e.value)
    assert "sweep point" in msg and "'optimizer.lr': -1" in msg
    assert "optimizer.lr" in msg and "greater than 0" in msg
    assert e.value.exit_code == 2


def test_plan_without_sweep_section(tmp_path):
    cfg, src = load(write_config(tmp_path))
    with pytest.raises(UsageError, match="no sweep section"):
        plan(cfg, src, tmp_path / "out")


# -- run_sweep: outputs ----------------------------------------------------------------------------------------------
def do_sweep(tmp_path, sweep=LR3, workers=1, out="out", overrides=()):
    cfg, src = load(write_config(tmp_path, sweep), overrides)
    result = run_sweep(cfg, src, tmp_path / out, workers=workers)
    return cfg, src, tmp_path / out, result


@pytest.fixture(scope="module")
def lr3(tmp_path_factory):
    """One finished 12-run sweep (read-only: tests that modify results run their own)."""
    return do_sweep(tmp_path_factory.mktemp("lr3"))


SUMMARY_COLUMNS = ["optimizer.lr", "arm", "seed", "status", "diverged", "final_test_acc", "tail_test_acc",
                   "best_test_acc", "final_train_loss", "steps_to_target", "total_steps", "time_s"]


def test_run_sweep_summary_csv(lr3):
    cfg, src, out, result = lr3
    rows = read_csv(out / "summary.csv")
    assert len(rows) == 12 and len(result.rows) == 12
    header = list(rows[0])
    assert header[:len(SUMMARY_COLUMNS)] == SUMMARY_COLUMNS
    assert {(float(r["optimizer.lr"]), r["arm"], int(r["seed"])) for r in rows} == {
        (lr, a, s) for lr in (0.01, 0.1, 1e4) for a in ("none", "before") for s in (0, 1)}
    assert len(run_dirs(out)) == 12
    for r in rows:
        s = check_complete(out / "runs" / r["hash"])
        assert r["status"] == s["status"]
        for k in ("final_test_acc", "tail_test_acc", "best_test_acc", "final_train_loss", "steps_to_target",
                  "time_s"):
            want = s[k]
            assert (as_float(r[k]) == pytest.approx(want)) if want is not None else r[k] == "", (k, r)
        assert r["diverged"] == str(s["status"] == "diverged")
    assert result.skipped == 0 and result.failed == []
    listing = {p.name for p in out.iterdir()}
    assert {"config.yaml", "range.csv", "ranges.csv", "ranges_by_seed.csv", "runs", "summary.csv",
            "sweep.json"} <= listing
    assert "failed" not in listing and not [n for n in listing if n.startswith(".") and n not in (".bncli.json",
                                                                                                 ".bncli.lock")]


def test_run_sweep_marks_diverged_runs(lr3):
    cfg, src, out, result = lr3
    rows = read_csv(out / "summary.csv")
    huge = [r for r in rows if float(r["optimizer.lr"]) == 1e4]
    sane = [r for r in rows if float(r["optimizer.lr"]) == 0.1]
    assert all(r["diverged"] == "True" and r["status"] == "diverged" and r["diverged_reason"] for r in huge)
    assert all(r["diverged"] == "False" and r["status"] == "ok" and not r["diverged_reason"] for r in sane)


def test_range_csv_statistics_leave_out_diverged_runs(lr3):
    cfg, src, out, result = lr3
    rows = read_csv(out / "summary.csv")
    table = read_csv(out / "range.csv")
    assert len(table) == 3 * 2
    for col in ("arm", "optimizer.lr", "n", "n_planned", "acc_mean", "acc_sd", "acc_ci_low", "acc_ci_high",
                "diverged"):
        assert col in table[0]
    for t in table:
        group = [r for r in rows if r["arm"] == t["arm"] and r["optimizer.lr"] == t["optimizer.lr"]]
        ok = [float(r["final_test_acc"]) for r in group if r["diverged"] == "False"]
        assert int(t["n"]) == len(ok) and int(t["n_planned"]) == 2
        assert int(t["diverged"]) == sum(r["diverged"] == "True" for r in group) == 2 - len(ok)
        if len(ok) == 2:
            mean = sum(ok) / 2
            sd = math.sqrt(sum((a - mean) ** 2 for a in ok))  # n - 1 = 1
            half = T975_DF1 * sd / math.sqrt(2)
            assert float(t["acc_mean"]) == pytest.approx(mean, abs=1e-12)
            assert float(t["acc_sd"]) == pytest.approx(sd, abs=1e-12)
            assert float(t["acc_ci_low"]) == pytest.approx(mean - half, abs=1e-4)
            assert float(t["acc_ci_high"]) == pytest.approx(mean + half, abs=1e-4)
        elif not ok:
            assert t["acc_mean"] == ""  # every run diverged: no number, only the count
    assert sum(int(t["diverged"]) for t in table) == 4  # the lr=1e4 runs


def test_ranges_csv_and_sweep_json(lr3):
    cfg, src, out, result = lr3
    per_seed = read_csv(out / "ranges_by_seed.csv")
    ranges = read_csv(out / "ranges.csv")
    assert sorted(r["arm"] for r in ranges) == ["before", "none"]
    assert len(per_seed) == 2 * 2
    for u in ranges:
        mine = [p for p in per_seed if p["arm"] == u["arm"]]
        assert int(u["n_seeds"]) == 2 and int(u["n_learn"]) == sum(p["learns"] == "True" for p in mine)
        assert u["range_key"] == "optimizer.lr" and float(u["floor"]) == cfg.sweep.floor
        for p in mine:
            if p["learns"] == "True":
                assert float(p["lo"]) <= float(p["best_value"]) <= float(p["hi"]) < 1e4  # 1e4 diverged
                assert float(p["decades"]) == pytest.approx(math.log10(float(p["hi"]) / float(p["lo"])))
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["keys"] == ["optimizer.lr"] and sweep["range_key"] == "optimizer.lr"
    assert sweep["n_runs"] == 12 and sweep["failed"] == [] and sweep["n_diverged"] == 4
    assert len(sweep["range"]) == 6 and len(sweep["usable_ranges"]) == 2
    assert len(sweep["usable_ranges_by_seed"]) == 4 and "4x" in sweep["diverged"]


# -- usable ranges, per seed, on hand-made runs ------------------------------------------------------------------------
def run(arm, lr, acc, seed=0, diverged=False, **others):
    return {"arm": arm, **others, "optimizer.lr": lr, "seed": seed, "status": "diverged" if diverged else "ok",
            "diverged": diverged, "tail_test_acc": acc}


def cfg_with(parameters, **sweep):
    return ExperimentConfig(sweep=SweepConfig(parameters=parameters, **sweep))


LR_PARAM = {"optimizer.lr": {"values": [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]}}
ACC = {1e-4: 0.30, 1e-3: 0.915, 1e-2: 0.935, 1e-1: 0.96, 1.0: 0.97, 10.0: 0.40, 100.0: 0.965}


def test_seed_range_is_the_contiguous_block_above_the_floor_around_the_best():
    cfg = cfg_with(LR_PARAM)  # floor 0.5
    rows = [run("none", lr, acc) for lr, acc in reversed(list(ACC.items()))]  # order must not matter
    (u,) = seed_ranges(cfg, ["optimizer.lr"], rows)
    assert u["learns"] and u["best_value"] == 1.0 and u["best_acc"] == 0.97 and u["n_values"] == 7
    # >= 0.5: 1e-3 .. 1; 100 (0.965) lies beyond the gap at 10 (0.40); 1e-4 (0.30) is below the floor
    assert (u["lo"], u["hi"], u["n_usable"]) == (1e-3, 1.0, 4) and u["decades"] == pytest.approx(3.0)
    # within 2 points (>= 0.95): 0.1 and 1; within 5 points (>= 0.92): 0.01 .. 1
    assert (u["lo_2pt"], u["hi_2pt"], u["n_usable_2pt"]) == (0.1, 1.0, 2)
    assert (u["lo_5pt"], u["hi_5pt"]) == (0.01, 1.0) and u["decades_5pt"] == pytest.approx(2.0)


def test_a_diverged_run_breaks_the_block_even_with_a_high_accuracy():
    cfg = cfg_with(LR_PARAM)
    rows = [run("none", lr, acc, diverged=(lr == 1e-2)) for lr, acc in ACC.items()]
    (u,) = seed_ranges(cfg, ["optimizer.lr"], rows)
    assert (u["lo"], u["hi"]) == (0.1, 1.0) and u["n_diverged"] == 1


def test_an_arm_that_never_learns_has_no_usable_range():
    """The issue's check: a net stuck at chance for every learning rate is not 'usable everywhere'."""
    cfg = cfg_with(LR_PARAM)
    rows = [run("none", lr, 0.10 + 0.001 * (lr == 1.0), seed=s) for lr in ACC for s in (0, 1)]
    rows += [run("before", lr, acc, seed=s) for lr, acc in ACC.items() for s in (0, 1)]
    per_seed = seed_ranges(cfg, ["optimizer.lr"], rows)
    for u in per_seed:
        if u["arm"] == "none":
            assert not u["learns"] and u["lo"] is None and u["hi"] is None and math.isnan(u["decades"])
    agg = {u["arm"]: u for u in usable_ranges(cfg, ["optimizer.lr"], rows)}
    assert agg["none"]["n_learn"] == 0 and agg["none"]["lo"] is None and math.isnan(agg["none"]["decades"])
    assert agg["before"]["n_learn"] == 2 and agg["before"]["decades"] == pytest.approx(3.0)


def test_a_seed_whose_every_run_diverged_does_not_learn():
    cfg = cfg_with(LR_PARAM)
    rows = [run("none", lr, math.nan, diverged=True) for lr in ACC]
    (u,) = seed_ranges(cfg, ["optimizer.lr"], rows)
    assert not u["learns"] and u["best_value"] is None and u["n_diverged"] == 7


def test_widths_are_per_seed_then_summarized():
    cfg = cfg_with(LR_PARAM)
    rows = [run("none", lr, acc, seed=0) for lr, acc in ACC.items()]  # 3 decades
    rows += [run("none", lr, 0.9 if lr in (0.1, 1.0) else 0.2, seed=1) for lr in ACC]  # 1 decade
    (agg,) = usable_ranges(cfg, ["optimizer.lr"], rows)
    assert agg["n_learn"] == 2 and agg["decades"] == pytest.approx(2.0)
    assert agg["decades_sd"] == pytest.approx(math.sqrt(2.0))
    assert (agg["lo"], agg["hi"]) == (1e-3, 1.0)  # medians (low) of the per-seed ends


def test_the_floor_is_configurable_and_inclusive():
    cfg = cfg_with({"optimizer.lr": {"values": [0.01, 0.1]}}, floor=0.8)
    (u,) = seed_ranges(cfg, ["optimizer.lr"], [run("none", 0.01, 0.8), run("none", 0.1, 0.85)])
    assert (u["lo"], u["hi"]) == (0.01, 0.1)
    (u,) = seed_ranges(cfg, ["optimizer.lr"], [run("none", 0.01, 0.79), run("none", 0.1, 0.79)])
    assert not u["learns"]


def test_usable_range_groups_by_the_other_swept_keys_and_default_range_key():
    cfg = cfg_with({"optimizer.name": {"values": ["sgd", "adam"]}, **LR_PARAM})  # no range_key given
    keys = ["optimizer.name", "optimizer.lr"]
    rows = [run("none", lr, acc, **{"optimizer.name": "sgd"}) for lr, acc in ACC.items()]
    rows += [run("none", lr, 0.4 if lr != 1e-3 else 0.9, **{"optimizer.name": "adam"}) for lr in ACC]
    out = {u["optimizer.name"]: u for u in usable_ranges(cfg, keys, rows)}
    assert set(out) == {"sgd", "adam"}
    assert out["sgd"]["range_key"] == "optimizer.lr"  # the first numeric swept key
    assert out["sgd"]["best_value"] == 1.0 and (out["sgd"]["lo_2pt"], out["sgd"]["hi_2pt"]) == (0.1, 1.0)
    assert out["adam"]["best_value"] == 1e-3 and out["adam"]["decades"] == 0.0


def test_usable_range_explicit_range_key_and_tolerance_columns():
    cfg = cfg_with({"optimizer.momentum": {"values": [0.5, 0.9]}, **LR_PARAM}, range_key="optimizer.lr",
                   target_points=[0.01, 0.1])
    rows = [run("none", lr, acc, **{"optimizer.momentum": 0.5}) for lr, acc in ACC.items()]
    (u,) = usable_ranges(cfg, ["optimizer.momentum", "optimizer.lr"], rows)
    assert u["range_key"] == "optimizer.lr" and u["optimizer.momentum"] == 0.5
    assert (u["lo_1pt"], u["hi_1pt"]) == (0.1, 1.0) and (u["lo_10pt"], u["hi_10pt"]) == (1e-3, 1.0)
    assert "lo_2pt" not in u


def test_sweep_over_a_list_valued_key(tmp_path):
    cfg, src, out, result = do_sweep(tmp_path, "  parameters:\n    model.hidden:\n"
                                               "      values: [[16], [16, 16]]\n", overrides=["model.bn=[none]"])
    rows = read_csv(out / "summary.csv")
    assert len(rows) == 2 * 1 * 2
    assert len(read_csv(out / "range.csv")) == 2


# -- resuming ---------------------------------------------------------------------------------------------------------
def stat_tree(out):
    return {str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for d in run_dirs(out) for p in [d, *d.iterdir()]}


def test_second_run_skips_everything_and_rewrites_nothing(tmp_path, monkeypatch):
    cfg, src, out, first = do_sweep(tmp_path)
    before = stat_tree(out)
    summary = (out / "summary.csv").read_text()
    range_csv = (out / "range.csv").read_text()
    assert all(r.done for r in plan(cfg, src, out))

    def must_not_run(task, report=None):
        raise AssertionError(f"re-ran {task['run_dir']}")

    monkeypatch.setattr(bncli.runs.dispatcher, "run_task", must_not_run)
    second = run_sweep(cfg, src, out, workers=1)
    assert second.skipped == 12 and second.failed == []
    assert stat_tree(out) == before
    assert (out / "summary.csv").read_text() == summary
    assert (out / "range.csv").read_text() == range_csv


def test_deleted_run_is_the_only_one_rerun(tmp_path, monkeypatch):
    import shutil

    cfg, src, out, first = do_sweep(tmp_path)
    rows = read_csv(out / "summary.csv")
    victim = rows[5]["hash"]
    shutil.rmtree(out / "runs" / victim)
    before = stat_tree(out)
    calls = []
    real = bncli.runs.dispatcher.run_task

    def counting(task, report=None):
        calls.append(Path(task["run_dir"]).name)
        return real(task, report)

    monkeypatch.setattr(bncli.runs.dispatcher, "run_task", counting)
    second = run_sweep(cfg, src, out, workers=1)
    assert calls == [victim]
    assert second.skipped == 11
    after = stat_tree(out)
    assert {k: v for k, v in after.items() if not k.startswith(f"runs/{victim}")} == before
    check_complete(out / "runs" / victim)
    assert numbers(read_csv(out / "summary.csv")) == numbers(rows)


def test_failing_run_is_recorded_and_retried(tmp_path, monkeypatch):
    cfg, src = load(write_config(tmp_path, LR3))
    out = tmp_path / "out"
    runs = plan(cfg, src, out)
    victim = runs[4]
    real = bncli.runs.dispatcher.run_task

    def flaky(task, report=None):
        if Path(task["run_dir"]).name == victim.hash:
            raise RuntimeError("disk on fire")
        return real(task, report)

    monkeypatch.setattr(bncli.runs.dispatcher, "run_task", flaky)
    result = run_sweep(cfg, src, out, workers=1)
    assert [f["hash"] for f in result.failed] == [victim.hash]
    record = json.loads((out / "failed" / f"{victim.hash}.json").read_text())
    assert record["error"] == "RuntimeError: disk on fire"
    assert (record["arm"], record["seed"], record["point"]) == (victim.arm, victim.seed, victim.point)
    assert not (out / "runs" / victim.hash).exists()
    assert len(run_dirs(out)) == 11
    rows = {r["hash"]: r for r in read_csv(out / "summary.csv")}
    assert len(rows) == 12
    assert rows[victim.hash]["status"] == "failed" and "disk on fire" in rows[victim.hash]["error"]
    assert all(r["status"] in ("ok", "diverged") for h, r in rows.items() if h != victim.hash)
    group = [t for t in read_csv(out / "range.csv") if t["arm"] == victim.arm
             and float(t["optimizer.lr"]) == victim.point["optimizer.lr"]]
    assert [(t["n"], t["n_planned"]) for t in group] == [("1", "2")]

    monkeypatch.setattr(bncli.runs.dispatcher, "run_task", real)
    again = run_sweep(cfg, src, out, workers=1)
    assert again.failed == [] and again.skipped == 11
    assert not (out / "failed" / f"{victim.hash}.json").exists()
    rows = {r["hash"]: r for r in read_csv(out / "summary.csv")}
    assert rows[victim.hash]["status"] in ("ok", "diverged") and rows[victim.hash]["error"] == ""
    check_complete(out / "runs" / victim.hash)


def test_one_and_two_workers_give_identical_numbers(tmp_path):
    sweep = "  parameters:\n    optimizer.lr:\n      values: [0.03, 0.3]\n"
    *_, out1, r1 = do_sweep(tmp_path, sweep, workers=1, out="w1")
    *_, out2, r2 = do_sweep(tmp_path, sweep, workers=2, out="w2")
    rows1, rows2 = read_csv(out1 / "summary.csv"), read_csv(out2 / "summary.csv")
    assert len(rows1) == 8
    assert numbers(rows1) == numbers(rows2)
    assert len(read_csv(out1 / "range.csv")) == 4
    assert (out1 / "range.csv").read_text() == (out2 / "range.csv").read_text()
    assert (out1 / "ranges.csv").read_text() == (out2 / "ranges.csv").read_text()
    for d in run_dirs(out2):
        assert (d / "metrics.csv").read_bytes() == (out1 / "runs" / d.name / "metrics.csv").read_bytes()
        assert json.loads((d / "meta.json").read_text())["blas_threads"] == 1  # spawned workers


# -- stale temporary directories --------------------------------------------------------------------------------------
def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def make_hidden(runs: Path, name: str):
    d = runs / name
    d.mkdir(parents=True)
    (d / "metrics.csv").write_text("half a fi")
    return d


def test_stale_temp_dirs_of_dead_writers_are_cleaned(tmp_path):
    cfg, src = load(write_config(tmp_path, LR3))
    out = tmp_path / "out"
    runs = out / "runs"
    dead, live = dead_pid(), os.getpid()
    stale = [make_hidden(runs, f".0123456789abcdef.{dead}.k2j3h4g5.tmp"),
             make_hidden(runs, f".0123456789abcdef.{dead}.a1b2c3d4.old")]
    kept = make_hidden(runs, f".fedcba9876543210.{live}.zzzzzzzz.tmp")
    result = run_sweep(cfg, src, out, workers=1)
    assert result.failed == []
    assert not any(p.exists() for p in stale)
    assert kept.exists() and (kept / "metrics.csv").read_text() == "half a fi"
    assert hidden_leftovers(out) == [kept.name]
    assert len(run_dirs(out)) == 12


def test_clean_stale_counts_and_keeps_live_writers(tmp_path):
    runs = tmp_path / "runs"
    dead = dead_pid()
    make_hidden(runs, f".abc.{dead}.q1w2e3r4.tmp")
    (runs / f".summary.csv.{dead}.x9y8z7.tmp").write_text("x")  # a stale temporary file
    make_hidden(runs, f".abc.{os.getpid()}.q1w2e3r4.tmp")
    make_hidden(runs, "visible")  # not hidden: never touched
    (runs / ".keepme").write_text("x")  # hidden but not a temporary: never touched
    assert atomic.clean_stale(runs) == 2
    assert sorted(p.name for p in runs.iterdir()) == sorted([f".abc.{os.getpid()}.q1w2e3r4.tmp", "visible",
                                                             ".keepme"])
    assert atomic.clean_stale(tmp_path / "missing") == 0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to see zombie processes")
def test_clean_stale_treats_a_zombie_writer_as_dead(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(500):  # until it has exited (not reaped: we do not wait for it yet)
            state = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                break
            time.sleep(0.01)
        assert state == "Z"
        make_hidden(tmp_path, f".0123456789abcdef.{p.pid}.k2j3h4g5.tmp")
        assert atomic.clean_stale(tmp_path) == 1
    finally:
        p.wait()


def test_runs_of_other_code_are_trained_again_and_current_ones_reused(tmp_path):
    """A finished run is reused only if its meta.json records the code hash of the code now running."""
    import bncli.runs

    cfg, src, out, first = do_sweep(tmp_path)
    dirs = run_dirs(out)
    assert first.skipped == 0 and all(bncli.runs.is_current(d) for d in dirs)
    again = run_sweep(cfg, src, out)
    assert again.skipped == 12  # same code: every run reused
    stale = sorted(dirs)[0]
    meta = json.loads((stale / "meta.json").read_text())
    (stale / "meta.json").write_text(json.dumps({**meta, "code_hash": "0" * 16}))
    assert not bncli.runs.is_current(stale)
    third = run_sweep(cfg, src, out)
    assert third.skipped == 11
    assert json.loads((stale / "meta.json").read_text())["code_hash"] == bncli.runs.code_hash()


def test_code_hash_covers_the_numeric_sources():
    import bncli.runs

    pkg = Path(bncli.runs.__file__).parent.parent
    files = {p.relative_to(pkg).as_posix() for pattern in bncli.runs.provenance._NUMERIC_SOURCES for p in pkg.glob(pattern)}
    assert {"core/batchnorm.py", "core/layers.py", "core/model.py", "core/optim.py", "training.py",
            "config.py", "data/datasets.py"} <= files
    assert len(bncli.runs.code_hash()) == 16


# -- hostile sweeps: counted before a point is made, finite ranges, one line naming the key -------------------------
@pytest.mark.parametrize("kw", [
    dict(values=[1, 2, 3]),
    dict(min=1e-4, max=10, per_decade=3),
    dict(min=1e-3, max=1, per_decade=1),
    dict(min=0.3, max=0.3, per_decade=5),
    dict(min=2e-5, max=7, per_decade=7),
    dict(min=1e-3, max=1, num=4),
    dict(min=1, max=5, scale="linear", num=5),
])
def test_size_is_the_number_of_grid_values(kw):
    p = SweepParam(**kw)
    assert p.size() == len(grid_values(p))


def big_grid(n=1000, keys=("optimizer.lr", "optimizer.momentum", "model.init_std", "model.bn_decay")):
    return SweepConfig(parameters={k: {"min": 0.1, "max": 0.5, "scale": "linear", "num": n} for k in keys})


def test_a_grid_of_10_to_the_12_points_is_counted_without_making_it():
    spec = big_grid()
    assert spec.size() == 10**12  # exact: Python ints, and no point made (a list of them would not fit in memory)
    with pytest.raises(UsageError) as e:
        points(spec)
    assert str(e.value) == "sweep: 1,000,000,000,000 points, more than sweep.max_runs (100,000)"


def test_a_billion_random_draws_are_counted_without_drawing_them():
    spec = SweepConfig(method="random", count=10**9, parameters={
        "optimizer.lr": {"min": 1e-3, "max": 1, "distribution": "log_uniform_values"}})
    assert spec.size() == 10**9
    with pytest.raises(UsageError, match="1,000,000,000 points, more than sweep.max_runs"):
        points(spec)


def sweep_error(tmp_path, sweep="", overrides=()) -> str:
    with pytest.raises(UsageError) as e:
        load(write_config(tmp_path, sweep), overrides)
    assert e.value.exit_code == 2
    return str(e.value)


CAP = ("more than sweep.max_runs (100,000); use fewer points, or raise sweep.max_runs (at most 1,000,000) in the "
       "sweep section or with sweep.max_runs=N")


def test_a_huge_linrange_is_refused_naming_the_override_the_count_and_the_cap(tmp_path):
    assert sweep_error(tmp_path, overrides=["optimizer.lr=linrange(0,1,100000000)"]) == (
        "command line 'optimizer.lr=linrange(0,1,100000000)': sweep.parameters.optimizer.lr: the sweep is "
        f"100,000,000 points x 2 arms x 2 seeds = 400,000,000 runs, {CAP}")


def test_a_million_per_decade_is_refused_at_its_line(tmp_path):
    block = "  parameters:\n    optimizer.lr:\n      min: 1.0e-9\n      max: 1\n      per_decade: 1000000\n"
    msg = sweep_error(tmp_path, block)
    text = (tmp_path / "sweep.yaml").read_text()
    assert msg == (f"{tmp_path / 'sweep.yaml'}:{line_of(text, '    optimizer.lr:')}: sweep.parameters.optimizer.lr: "
                   f"the sweep is 9,000,001 points x 2 arms x 2 seeds = 36,000,004 runs, {CAP}")


def test_a_1000_x_1000_grid_is_refused_at_its_largest_parameter(tmp_path):
    block = ("  parameters:\n    optimizer.momentum: {min: 0.1, max: 0.5, scale: linear, num: 10}\n"
             "    optimizer.lr: {min: 0.1, max: 0.5, scale: linear, num: 1000}\n"
             "    model.init_std: {min: 0.1, max: 0.5, scale: linear, num: 100}\n")
    msg = sweep_error(tmp_path, block)
    text = (tmp_path / "sweep.yaml").read_text()
    assert msg.startswith(f"{tmp_path / 'sweep.yaml'}:{line_of(text, '    optimizer.lr:')}: "
                          "sweep.parameters.optimizer.lr: the sweep is 1,000,000 points x 2 arms x 2 seeds")


def test_count_1e9_is_refused_at_the_count_line(tmp_path):
    block = ("  method: random\n  count: 1e9\n  parameters:\n"
             "    optimizer.lr: {min: 1.0e-3, max: 1, distribution: log_uniform_values}\n")
    msg = sweep_error(tmp_path, block)
    text = (tmp_path / "sweep.yaml").read_text()
    assert msg == (f"{tmp_path / 'sweep.yaml'}:{line_of(text, 'count:')}: sweep.count: the sweep is 1,000,000,000 "
                   f"points x 2 arms x 2 seeds = 4,000,000,000 runs, {CAP}")


def test_arms_and_seeds_count_towards_the_cap(tmp_path):
    block = "  parameters:\n    optimizer.lr: {values: [0.1, 0.2, 0.3]}\n  max_runs: 11\n"  # 3 x 2 arms x 2 seeds
    assert "= 12 runs, more than sweep.max_runs (11)" in sweep_error(tmp_path, block)
    cfg, _ = load(write_config(tmp_path, block.replace("11", "12")))
    assert cfg.sweep.max_runs == 12


@pytest.mark.parametrize("order", ["cap first", "cap last"])
def test_max_runs_can_be_raised_on_the_command_line(tmp_path, order):
    items = ["optimizer.lr=linrange(0.01,1,30000)", "sweep.max_runs=120000"]
    cfg, _ = load(write_config(tmp_path), items[::-1] if order == "cap first" else items)
    assert cfg.sweep.size() == 30_000 and cfg.sweep.max_runs == 120_000
    assert "= 120,000 runs, more than sweep.max_runs (119,999)" in sweep_error(
        tmp_path, overrides=["optimizer.lr=linrange(0.01,1,30000)", "sweep.max_runs=119999"])


@pytest.mark.parametrize("item, key, expect", [
    ("optimizer.lr=logrange(1e-3,.inf,2)", "optimizer.lr.max", "Input should be a finite number (got inf)"),
    ("optimizer.lr=logrange(1e-3,.nan,2)", "optimizer.lr.max", "Input should be a finite number (got nan)"),
    ("optimizer.lr=logrange(-.inf,1,2)", "optimizer.lr.min", "Input should be a finite number (got -inf)"),
    ("optimizer.lr=logrange(1e-3,1,.inf)", "optimizer.lr.per_decade", "Input should be a finite number (got inf)"),
    ("optimizer.lr=linrange(0,1,.nan)", "optimizer.lr.num", "Input should be a finite number (got nan)"),
    ("optimizer.lr=logrange(1e-3,1,2.5)", "optimizer.lr.per_decade", "fractional part (got 2.5)"),
    ("optimizer.lr=linrange(0,1,-5)", "optimizer.lr.num", "greater than or equal to 1 (got -5)"),
    ("optimizer.lr=logrange(1e-3,1,1e10)", "optimizer.lr.per_decade",
     "less than or equal to 1000000000 (got 10000000000)"),
    ("optimizer.lr=logrange(1,1e-3,2)", "optimizer.lr", "min (1) is larger than max (0.001)"),
    ("optimizer.lr=.inf,0.1", "optimizer.lr", "values must be finite numbers, not inf or nan (got [inf, 0.1])"),
    ("optimizer.momentum=linrange(-1e308,1e308,3)", "optimizer.momentum",
     "the range from min (-1e+308) to max (1e+308) is too wide to compute"),
])
def test_command_line_ranges_are_checked_naming_the_override(tmp_path, item, key, expect):
    msg = sweep_error(tmp_path, overrides=[item])
    assert msg.startswith(f"command line '{item}': sweep.parameters.{key}: ") and msg.endswith(expect)


@pytest.mark.parametrize("item", ["optimizer.lr=logrange(a,b,c)", "optimizer.lr=logrange(1e-3,1,true)",
                                  "optimizer.lr=logrange(1e-3,1)", "optimizer.lr=logrange(1e-3,1,[2])",
                                  "optimizer.lr=logrange(" + "[" * 5000 + ")"])
def test_a_range_without_three_numbers_shows_the_form(item):
    with pytest.raises(UsageError) as e:
        sweep_override(item)
    assert str(e.value).endswith("': expected logrange(min, max, points per decade) with three numbers")
    assert len(str(e.value)) < 200


@pytest.mark.parametrize("spec, key, expect", [
    ("{min: 2, max: .inf, distribution: int_uniform}", "max", "Input should be a finite number (got inf)"),
    ("{min: 1.0e-3, max: .inf, distribution: log_uniform_values}", "max", "finite number (got inf)"),
    ("{min: .nan, max: 1, distribution: uniform}", "min", "finite number (got nan)"),
    ("{min: 2, max: 1.0e300, distribution: int_uniform}", None, "int_uniform needs min and max within +-2**53"),
    ("{min: -1.0e308, max: 1.0e308, distribution: uniform}", None, "is too wide to compute"),
])
def test_random_ranges_are_finite_and_drawable(tmp_path, spec, key, expect):
    block = f"  method: random\n  count: 3\n  parameters:\n    train.batch_size: {spec}\n"
    msg = sweep_error(tmp_path, block)
    text = (tmp_path / "sweep.yaml").read_text()
    where = f"{tmp_path / 'sweep.yaml'}:{line_of(text, 'train.batch_size:')}: sweep.parameters.train.batch_size"
    assert msg.startswith(where + (f".{key}: " if key else ": ")) and expect in msg


def test_the_widest_drawable_ranges_still_draw():
    spec = SweepConfig(method="random", count=20, parameters={
        "train.batch_size": {"min": 2, "max": 2**53, "distribution": "int_uniform"},
        "optimizer.weight_decay": {"min": 0, "max": 1e308, "distribution": "uniform"},
        "optimizer.lr": {"min": 5e-324, "max": 1e308, "distribution": "log_uniform_values"}})
    for p in points(spec):
        assert 2 <= p["train.batch_size"] <= 2**53 and math.isfinite(p["optimizer.weight_decay"])
        assert 0 < p["optimizer.lr"] <= 1e308


@pytest.mark.parametrize("key", ["a..b", "", ".lr", "optimizer.", "optimizer.lr x", "optimizer.lr\n", ".".join("k" * 9),
                                 "x" * 200_000])
def test_swept_keys_must_be_dotted_names(tmp_path, key):
    with pytest.raises(ValidationError, match="is not a dotted config key such as optimizer.lr") as e:
        SweepConfig(parameters={key: {"values": [1, 2]}})
    assert len(str(e.value)) < 400


def test_a_swept_key_with_an_empty_part_names_the_override(tmp_path):
    assert sweep_error(tmp_path, overrides=["optimizer..lr=0.1,0.2"]) == (
        "override 'optimizer..lr=0.1,0.2': empty key part in 'optimizer..lr'")
