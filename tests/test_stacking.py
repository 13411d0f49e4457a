"""Runs trained as one stack (bncli/stacking.py, core/stack.py) give each run the metrics of training it alone,
bit for bit: every optimizer, activation and BN placement, learning rates that differ, a run that diverges while
the others go on, float64, evaluation of the training split, population statistics and percentile measurements."""

from __future__ import annotations

import numpy as np
import pytest

from bncli.config import load_config
from bncli.runs import dataset_for
from bncli.stacking import stack_key, train_stack
from bncli.training import train_run
from tiny import tiny_config


def configs(tmp_path, overrides, lrs=(0.1, 0.1, 0.1), seeds=(0, 1, 2), arm="before"):
    (tmp_path / "s.yaml").write_text(tiny_config("stack", steps=45))
    cfg, _ = load_config(tmp_path / "s.yaml", [f"model.bn=[{arm}]", *overrides])
    return [load_config(tmp_path / "s.yaml", [f"model.bn=[{arm}]", *overrides, f"optimizer.lr={lr}"])[0]
            .run_config(arm, s) for lr, s in zip(lrs, seeds)]


def assert_identical(cfgs):
    data = dataset_for(cfgs[0])
    alone = [train_run(c, data) for c in cfgs]
    stacked = train_stack(cfgs, data)
    assert len({stack_key(c) for c in cfgs}) == 1
    for a, s in zip(alone, stacked):
        assert a.columns == s.columns and a.status == s.status
        assert np.array_equal(np.array(a.rows, dtype=float), np.array(s.rows, dtype=float), equal_nan=True)
        for k in ("final_test_acc", "final_train_loss", "steps_to_target", "steps_done", "diverged_at_step",
                  "initial_train_loss", "best_step"):
            assert a.summary[k] == s.summary[k] or (a.summary[k] != a.summary[k] and s.summary[k] != s.summary[k]), k
        assert a.tables.keys() == s.tables.keys()
        for name in a.tables:
            assert np.array_equal(np.array(a.tables[name][1]), np.array(s.tables[name][1]), equal_nan=True)
    return alone


@pytest.mark.parametrize("opt", ["sgd", "momentum", "rmsprop", "adam"])
@pytest.mark.parametrize("arm", ["none", "before", "after"])
def test_every_optimizer_and_placement(tmp_path, opt, arm):
    lrs = (0.01, 0.003, 0.001) if opt in ("rmsprop", "adam") else (0.1, 0.3, 0.05)
    assert_identical(configs(tmp_path, [f"optimizer.name={opt}", "model.activation=sigmoid"], lrs=lrs, arm=arm))


def test_relu_float64_weight_decay_and_schedules(tmp_path):
    assert_identical(configs(tmp_path, ["model.activation=relu", "train.dtype=float64", "optimizer.weight_decay=0.01",
                                        "optimizer.schedule=cosine", "optimizer.warmup=5", "train.eval_train=true"]))


def test_a_diverging_run_stops_and_the_others_go_on(tmp_path):
    alone = assert_identical(configs(tmp_path, ["optimizer.name=sgd", "model.activation=relu"],
                                     lrs=(0.1, 1e6, 0.05), arm="none"))
    assert [r.status for r in alone] == ["ok", "diverged", "ok"]
    assert alone[1].summary["steps_done"] < alone[0].summary["steps_done"] == 45


def test_population_statistics_and_percentiles(tmp_path):
    assert_identical(configs(tmp_path, ["model.bn_eval=population", "train.measure=[percentiles]",
                                        "train.percentile_images=20"]))


def test_only_seed_and_learning_rate_may_differ(tmp_path):
    a, b = configs(tmp_path, [], lrs=(0.1, 0.2), seeds=(0, 1))
    c = configs(tmp_path, ["train.batch_size=20"], lrs=(0.1,), seeds=(0,))[0]
    assert stack_key(a) == stack_key(b) != stack_key(c)


def test_a_convnet_is_refused_with_a_clear_message():
    from bncli.config import ExperimentConfig, ModelConfig
    from bncli.stacking import train_stack

    cfg = ExperimentConfig(model=ModelConfig(conv=[{"channels": 2, "kernel": 3}], bn=["before"]))
    with pytest.raises(ValueError, match="MLPs only"):
        train_stack([cfg.run_config("before", 0)], None)


def test_a_noisy_arm_is_refused_with_a_clear_message():
    """Its noise layers are redrawn per model and step, which core/stack.py does not stack."""
    from bncli.config import ExperimentConfig

    cfg = ExperimentConfig()
    with pytest.raises(ValueError, match="noisy BN"):
        train_stack([cfg.run_config("noisy", 0)], None)
    with pytest.raises(AttributeError):  # the same call with a stackable arm gets past the check (to the data)
        train_stack([cfg.run_config("before", 0)], None)
