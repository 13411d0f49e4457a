"""bncli.runs.plan: a plan is counted and refused before it is made; what it makes is exactly what was counted."""

from __future__ import annotations

import pytest
from tiny import tiny_config

from bncli.config import SweepConfig, load_config
from bncli.errors import UsageError
from bncli.runs import points
from bncli.runs.plan import plan, sweep_points

TINY = tiny_config("tinyplan")  # 2 arms x 2 seeds


def write(tmp_path, sweep="", base=TINY):
    p = tmp_path / "plan.yaml"
    p.write_text(base + (f"sweep:\n{sweep}" if sweep else ""))
    return p


def test_a_plan_has_exactly_the_counted_runs(tmp_path):
    sweep = ("  parameters:\n    optimizer.lr: {min: 1.0e-3, max: 1, per_decade: 2}\n"
             "    optimizer.momentum: {values: [0.5, 0.9]}\n  max_runs: 56\n")
    cfg, src = load_config(write(tmp_path, sweep))
    assert cfg.sweep.size() == 7 * 2
    runs = plan(cfg, src, tmp_path / "runs", sweep_points(cfg, src))
    assert len(runs) == 7 * 2 * 2 * 2 == cfg.sweep.max_runs  # at the cap exactly: allowed
    assert not (tmp_path / "runs").exists()


def test_one_run_over_the_cap_is_refused_when_loading_before_any_point_is_made(tmp_path):
    sweep = "  parameters:\n    optimizer.lr: {min: 1.0e-3, max: 1, per_decade: 2}\n  max_runs: 27\n"
    with pytest.raises(UsageError) as e:
        load_config(write(tmp_path, sweep))
    assert ": sweep.parameters.optimizer.lr: the sweep is 7 points x 2 arms x 2 seeds = 28 runs, more than " \
           "sweep.max_runs (27)" in str(e.value)


def test_points_refuse_a_huge_sweep_built_in_code_before_making_any():
    # Not through load_config: SweepConfig built directly, 10**15 points; points() counts first.
    spec = SweepConfig(parameters={k: {"min": 0.1, "max": 0.9, "scale": "linear", "num": 10**5}
                                   for k in ("optimizer.lr", "optimizer.momentum", "model.init_std")})
    with pytest.raises(UsageError) as e:
        points(spec)
    assert str(e.value) == "sweep: 1,000,000,000,000,000 points, more than sweep.max_runs (100,000)"


def test_a_train_plan_is_arms_x_seeds(tmp_path):
    cfg, src = load_config(write(tmp_path), ["train.seeds=300", "model.bn=[none,before,after]"])
    assert len(plan(cfg, src, tmp_path / "runs")) == 900  # seeds are capped (10,000), so a train plan is bounded


def test_a_sweep_point_error_does_not_echo_a_huge_value(tmp_path):
    sweep = "  parameters:\n    model.activation:\n      values: [relu, " + "q" * 100_000 + "]\n"
    cfg, src = load_config(write(tmp_path, sweep))
    with pytest.raises(UsageError) as e:
        plan(cfg, src, tmp_path / "runs", sweep_points(cfg, src))
    head, detail = str(e.value).split("\n")
    assert head.startswith("sweep point {'model.activation': 'qqq") and "..." in head and len(head) < 250
    assert detail.startswith(f"{tmp_path / 'plan.yaml'}:") and "model.activation: Input should be" in detail
    assert len(detail) < 300


def test_a_sweep_point_that_is_not_finite_is_refused_before_planning(tmp_path):
    sweep = "  parameters:\n    optimizer.lr:\n      values: [0.1, .nan]\n"
    with pytest.raises(UsageError, match=r"sweep.parameters.optimizer.lr: values must be finite numbers"):
        load_config(write(tmp_path, sweep))
