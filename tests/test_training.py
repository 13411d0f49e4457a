"""bncli.training.train_run: one arm, one seed, no I/O."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from bncli.config import ExperimentConfig, resolved_budget
from bncli.runs import dataset_for
from bncli.training import build_model, seed_streams, train_run

BASE = {
    "name": "tiny",
    "data": {"name": "synthetic",
             "synthetic": {"n_train": 300, "n_test": 100, "n_features": 8, "n_classes": 3}},
    "model": {"hidden": [16, 16], "bn": ["none", "before"]},
    "optimizer": {"name": "sgd", "lr": 0.1},
    "train": {"batch_size": 30, "steps": 40, "seeds": [0], "eval_every": 10},
}


def make_cfg(arm="before", seed=0, **sections) -> ExperimentConfig:
    """Experiment config from BASE with section updates, e.g. train={"steps": 25}; returns the single run config."""
    d = copy.deepcopy(BASE)
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(d.get(section), dict):
            d[section].update(values)
        else:
            d[section] = values
    exp = ExperimentConfig.model_validate(d)
    return exp.run_config(arm, seed)


def run(cfg, **kw):
    return train_run(cfg, dataset_for(cfg), **kw)


def col(result, name):
    j = result.columns.index(name)
    return [r[j] for r in result.rows]


def canon(rows):
    """Rows with NaN made comparable (NaN != NaN) but values otherwise exact."""
    return [[("nan" if isinstance(v, float) and math.isnan(v) else v) for v in r] for r in rows]


# -- metric rows ---------------------------------------------------------------------------------------------------
def test_rows_at_step_zero_every_eval_every_and_final_step():
    res = run(make_cfg(train={"steps": 45, "eval_every": 10}))
    assert res.status == "ok"
    assert col(res, "step") == [0, 10, 20, 30, 40, 45]
    assert res.summary["steps_done"] == 45 == res.summary["total_steps"]
    assert res.columns == ["step", "epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]
    # step 0: nothing trained yet, so no training-window statistics; evaluation is there
    first = res.rows[0]
    assert math.isnan(first[3]) and math.isnan(first[4])
    assert 0.0 <= first[6] <= 1.0 and math.isfinite(first[5])
    # every later row has finite training-window statistics
    for r in res.rows[1:]:
        assert all(math.isfinite(v) for v in r), r
    # epoch = step / steps per epoch (300 / 30 = 10 steps per epoch)
    assert res.summary["steps_per_epoch"] == 10
    assert col(res, "epoch") == [s / 10 for s in col(res, "step")]
    assert col(res, "lr") == [0.1] * 6


def test_default_eval_every_is_once_per_epoch_and_epochs_budget():
    res = run(make_cfg(train={"steps": None, "epochs": 3, "eval_every": None}))
    assert col(res, "step") == [0, 10, 20, 30]
    assert res.summary["steps_done"] == 30 == res.summary["total_steps"]


def test_val_and_train_eval_columns():
    res = run(make_cfg(data={"val_fraction": 0.2}, train={"eval_train": True}))
    assert res.columns == ["step", "epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                           "val_loss", "val_acc", "train_eval_loss", "train_eval_acc"]
    for r in res.rows:
        assert len(r) == len(res.columns)
        assert all(0.0 <= r[res.columns.index(c)] <= 1.0 for c in ("test_acc", "val_acc", "train_eval_acc"))


def test_no_val_columns_without_val_fraction():
    res = run(make_cfg())
    assert not any(c.startswith("val_") or c.startswith("train_eval_") for c in res.columns)


@pytest.mark.parametrize("steps", [40, 37])
def test_steps_done_equals_budget(steps):
    res = run(make_cfg(train={"steps": steps, "eval_every": 10}))
    assert res.summary["steps_done"] == steps
    assert res.rows[-1][0] == steps
    assert res.summary["diverged_at_step"] is None


# -- divergence ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation,arm,lr", [("relu", "none", 1e6), ("sigmoid", "after", 1e6),
                                               ("relu", "before", 1e20)])
def test_huge_learning_rate_diverges_without_exception(activation, arm, lr):
    # (a sigmoid network without BN only reaches huge but finite losses: bounded activations; not "diverged")
    cfg = make_cfg(arm=arm, model={"activation": activation}, optimizer={"name": "sgd", "lr": lr},
                   train={"steps": 200, "eval_every": 10})
    res = run(cfg)
    assert res.status == "diverged"
    s = res.summary
    assert s["status"] == "diverged"
    assert isinstance(s["diverged_at_step"], int) and 1 <= s["diverged_at_step"] <= 200
    assert s["steps_done"] == s["diverged_at_step"] - 1 < 200
    # the last row is the divergence step, with a non-finite training loss; steps stay increasing
    assert res.rows[-1][0] == s["diverged_at_step"]
    assert not math.isfinite(res.rows[-1][res.columns.index("train_loss")])
    steps = col(res, "step")
    assert steps == sorted(set(steps))


# -- steps to target -----------------------------------------------------------------------------------------------
def _first_reaching(res, column, target):
    j = res.columns.index(column)
    return next((r[0] for r in res.rows if math.isfinite(r[j]) and r[j] >= target), None)


@pytest.mark.parametrize("target", [0.5, 0.9, 0.97])
def test_steps_to_target_on_test_split(target):
    res = run(make_cfg(train={"target_accuracy": target, "eval_every": 5}))
    expected = _first_reaching(res, "test_acc", target)
    assert res.summary["steps_to_target"] == expected
    if expected is not None:
        assert expected in col(res, "step")


def test_steps_to_target_is_reached_midway_and_none_when_unreachable():
    res = run(make_cfg(train={"target_accuracy": 0.9, "eval_every": 5}))
    reached = res.summary["steps_to_target"]
    # this configuration learns: the target is reached at an evaluation after step 0 and before the end
    assert reached is not None and 0 < reached
    accs = col(res, "test_acc")
    steps = col(res, "step")
    assert all(a < 0.9 for s, a in zip(steps, accs) if s < reached)
    res2 = run(make_cfg(train={"target_accuracy": 1.0, "steps": 5, "eval_every": 5}))
    assert max(col(res2, "test_acc")) < 1.0
    assert res2.summary["steps_to_target"] is None


def test_steps_to_target_on_val_split():
    cfg = make_cfg(data={"val_fraction": 0.3},
                   train={"target_split": "val", "target_accuracy": 0.8, "eval_every": 5})
    res = run(cfg)
    assert res.summary["target_split"] == "val"
    expected = _first_reaching(res, "val_acc", 0.8)
    assert expected is not None
    assert res.summary["steps_to_target"] == expected


def test_steps_to_target_on_train_split():
    cfg = make_cfg(train={"eval_train": True, "target_split": "train", "target_accuracy": 0.85, "eval_every": 5})
    res = run(cfg)
    expected = _first_reaching(res, "train_eval_acc", 0.85)
    assert expected is not None
    assert res.summary["steps_to_target"] == expected


# -- determinism and pairing ---------------------------------------------------------------------------------------
def test_same_config_and_seed_gives_identical_rows():
    a = run(make_cfg(seed=3))
    b = run(make_cfg(seed=3))
    assert a.columns == b.columns
    assert canon(a.rows) == canon(b.rows)
    assert a.summary["final_test_loss"] == b.summary["final_test_loss"]


def test_different_seed_gives_different_rows():
    a = run(make_cfg(seed=0))
    b = run(make_cfg(seed=1))
    assert canon(a.rows) != canon(b.rows)
    assert col(a, "test_loss")[0] != col(b, "test_loss")[0]  # different initial weights


def test_arms_with_same_seed_start_from_identical_dense_weights():
    exp = make_cfg()
    data = dataset_for(exp)
    cfg_none, cfg_before = make_cfg(arm="none", seed=5), make_cfg(arm="before", seed=5)
    m_none = build_model(cfg_none, data, seed_streams(5)[0])
    m_before = build_model(cfg_before, data, seed_streams(5)[0])
    w_none = {k: v for k, v in m_none.params.items() if k.endswith(".W")}
    w_before = {k: v for k, v in m_before.params.items() if k.endswith(".W")}
    assert sorted(w_none) == sorted(w_before) == ["dense1.W", "dense2.W", "out.W"]
    for k in w_none:
        np.testing.assert_array_equal(w_none[k], w_before[k])
    # a different seed gives different weights
    m_other = build_model(cfg_none, data, seed_streams(6)[0])
    assert not np.array_equal(m_other.params["dense1.W"], w_none["dense1.W"])
    # and the trained models of both arms really started there: the order streams agree too
    o1, o2 = seed_streams(5)[1], seed_streams(5)[1]
    np.testing.assert_array_equal(o1.permutation(300), o2.permutation(300))


def test_weight_stream_is_independent_of_the_order_stream():
    init_rng, order_rng = seed_streams(0)
    assert not np.array_equal(init_rng.permutation(50), order_rng.permutation(50))


# -- never a batch of one in BN training mode ----------------------------------------------------------------------
@pytest.mark.parametrize("data", [
    {"name": "synthetic", "synthetic": {"n_train": 61, "n_test": 50, "n_features": 8, "n_classes": 3}},
    {"name": "mnist-5k", "limit_train": 61, "limit_test": 100},
])
def test_last_partial_batch_of_one_is_dropped(data):
    cfg = make_cfg(arm="before", data=data, model={"hidden": [16, 16], "bn": ["before"]},
                   train={"batch_size": 60, "steps": None, "epochs": 3, "eval_every": None})
    ds = dataset_for(cfg)
    assert len(ds.X_train) == 61
    assert resolved_budget(cfg.train, 61) == (3, 1)
    res = run(cfg)  # would raise BatchOfOneError if a single sample reached BN in training mode
    assert res.status == "ok"
    assert res.summary["steps_per_epoch"] == 1
    assert res.summary["steps_done"] == 3
    assert col(res, "step") == [0, 1, 2, 3]
    assert col(res, "epoch") == [0.0, 1.0, 2.0, 3.0]


def test_last_partial_batch_of_two_is_kept():
    cfg = make_cfg(data={"synthetic": {"n_train": 62, "n_test": 50, "n_features": 8, "n_classes": 3}},
                   train={"batch_size": 60, "steps": None, "epochs": 2, "eval_every": None})
    res = run(cfg)
    assert res.status == "ok"
    assert res.summary["steps_per_epoch"] == 2
    assert res.summary["steps_done"] == 4
    # training accuracy in a window is a fraction of samples seen: 60 + 2 samples per epoch
    for acc in col(res, "train_acc")[1:]:
        assert round(acc * 62) == pytest.approx(acc * 62, abs=1e-9)


# -- population statistics for eval mode ---------------------------------------------------------------------------
def test_bn_eval_population_changes_final_evaluation_only():
    running = run(make_cfg(arm="before", model={"bn_eval": "running"}))
    pop = run(make_cfg(arm="before", model={"bn_eval": "population"}))
    assert pop.summary["bn_eval"] == "population"
    assert running.summary["bn_eval"] == "running"
    assert len(pop.rows) == len(running.rows)
    # training is identical: all rows but the last agree exactly
    assert canon(pop.rows[:-1]) == canon(running.rows[:-1])
    j = pop.columns.index("test_loss")
    assert pop.rows[-1][0] == running.rows[-1][0] == 40
    assert pop.rows[-1][j] != running.rows[-1][j]
    assert math.isfinite(pop.rows[-1][j])


def test_bn_eval_population_without_bn_is_a_no_op():
    running = run(make_cfg(arm="none", model={"bn_eval": "running"}))
    pop = run(make_cfg(arm="none", model={"bn_eval": "population"}))
    assert canon(pop.rows) == canon(running.rows)


def test_bn_eval_population_keeps_final_training_loss():
    running = run(make_cfg(arm="before", model={"bn_eval": "running"}))
    pop = run(make_cfg(arm="before", model={"bn_eval": "population"}))
    for c in ("train_loss", "train_acc"):
        j = pop.columns.index(c)
        assert pop.rows[-1][j] == running.rows[-1][j]
    assert pop.summary["final_train_loss"] == running.summary["final_train_loss"]
    assert math.isfinite(pop.summary["final_train_loss"])


# -- dtype -----------------------------------------------------------------------------------------------------------
def test_float64_run():
    cfg = make_cfg(train={"dtype": "float64"})
    res = run(cfg, keep_model=True)
    assert res.status == "ok"
    assert dataset_for(cfg).X_train.dtype == np.float64
    assert all(v.dtype == np.float64 for v in res.model.params.values())
    assert all(math.isfinite(v) for r in res.rows[1:] for v in r)
    res32 = run(make_cfg(), keep_model=True)
    assert all(v.dtype == np.float32 for v in res32.model.params.values())
    # same computation in another precision: close, but not bit-identical
    l64, l32 = col(res, "test_loss")[-1], col(res32, "test_loss")[-1]
    assert l64 == pytest.approx(l32, rel=1e-3)
    assert l64 != l32


def test_keep_model_false_drops_model():
    assert run(make_cfg()).model is None


def test_train_run_refuses_multi_arm_config():
    exp = ExperimentConfig.model_validate(BASE)
    with pytest.raises(AssertionError):
        train_run(exp, dataset_for(exp))


def test_progress_callback_sees_every_evaluation():
    seen = []
    res = run(make_cfg(), progress=lambda step, total, info: seen.append((step, total, info["test_acc"])))
    assert [s for s, _, _ in seen] == col(res, "step")
    assert {t for _, t, _ in seen} == {40}
    assert [a for _, _, a in seen] == col(res, "test_acc")


# -- the one definition of divergence ------------------------------------------------------------------------------------
def test_divergence_compares_training_losses_like_with_like():
    from bncli.training import divergence

    assert divergence("diverged", None, 2.3)[0]
    assert divergence("ok", math.inf, 2.3)[0] and divergence("ok", math.nan, 2.3)[0]
    assert divergence("ok", 9.21, 2.3)[0] and "4 x" in divergence("ok", 9.21, 2.3)[1]
    assert divergence("ok", 9.2, 2.3) == (False, None)  # exactly 4x is not above it
    assert divergence("ok", 0.1, 2.3) == (False, None) and divergence("ok", 5.0, None) == (False, None)


def test_initial_train_loss_is_the_first_minibatch_before_any_update_and_tail_accuracy():
    res = run(make_cfg())
    s = res.summary
    assert s["initial_train_loss"] == pytest.approx(math.log(3), rel=0.5)  # near chance for 3 classes
    accs = col(res, "test_acc")[1:]
    assert s["tail_test_acc"] == pytest.approx(sum(accs[-3:]) / 3)
    assert s["status"] == "ok" and s["diverged_reason"] is None


def test_a_blown_up_but_finite_run_is_diverged_with_its_reason():
    from bncli.training import summarize

    cols = ["step", "epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]
    rows = [[0, 0, 0.1, math.nan, math.nan, 2.3, 0.1], [10, 1, 0.1, 50.0, 0.1, 60.0, 0.1]]
    s = summarize(cols, rows, "ok", "test_acc", 0.9, initial_train_loss=2.2)
    assert s["status"] == "diverged" and "exceeds 4 x" in s["diverged_reason"]


# -- the noisy arm and the probes (CLAIMS C14, C15) ----------------------------------------------------------------
def test_noisy_arm_without_noise_trains_exactly_like_bn_before():
    """noise_mean 0 and scale [1, 1]: the noisy arm's loop (draws every step, noise applied) gives the rows of BN
    before bit for bit; with the default noise the rows differ (the draws do reach the model)."""
    quiet = dict(noise_mean=0.0, noise_scale_low=1.0, noise_scale_high=1.0)
    before = run(make_cfg("before", model={**BASE["model"], **quiet}))
    silent = run(make_cfg("noisy", model={**BASE["model"], **quiet}))
    assert canon(silent.rows) == canon(before.rows)
    noisy = run(make_cfg("noisy"))
    assert canon(noisy.rows) != canon(before.rows)


def test_noisy_arm_is_reproducible_and_its_draws_depend_on_the_seed():
    a, b = run(make_cfg("noisy")), run(make_cfg("noisy"))
    assert canon(a.rows) == canon(b.rows)
    assert canon(run(make_cfg("noisy", seed=1)).rows) != canon(a.rows)


def test_noise_stream_leaves_the_weight_and_order_streams_alone():
    from bncli.training import noise_stream

    init, order = seed_streams(7)
    first_two = np.random.SeedSequence(7).spawn(2)
    assert init.random() == np.random.default_rng(first_two[0]).random()
    assert order.random() == np.random.default_rng(first_two[1]).random()
    assert noise_stream(7).random() != np.random.default_rng(first_two[0]).random()


def test_noisy_percentiles_see_the_noise_of_the_step():
    """The noisy arm's recorded sigmoid inputs are those its training step sees (with the noise): they differ from
    BN before's, whose weights start the same, from the first evaluation after a step on."""
    cfg = {"train": {**BASE["train"], "measure": ["percentiles"], "percentile_images": 20}}
    noisy = run(make_cfg("noisy", model={**BASE["model"], "activation": "sigmoid"}, **cfg))
    quiet = run(make_cfg("noisy", model={**BASE["model"], "activation": "sigmoid", "noise_mean": 0.0,
                                         "noise_scale_low": 1.0, "noise_scale_high": 1.0}, **cfg))
    pn, pq = (np.array(r.tables["percentiles"][1]) for r in (noisy, quiet))
    assert pn.shape == pq.shape
    np.testing.assert_array_equal(pn[pn[:, 0] == 0], pq[pq[:, 0] == 0])  # step 0: nothing drawn yet
    assert not np.allclose(pn[pn[:, 0] == 10], pq[pq[:, 0] == 10])


@pytest.mark.parametrize("arm", ["none", "before", "noisy"])
def test_probes_do_not_change_training_and_write_their_tables(arm):
    plain = run(make_cfg(arm))
    probed = run(make_cfg(arm, train={**BASE["train"], "measure": ["ics", "smoothness"], "probe_every": 15,
                                      "probe_lr_multiples": [0.5, 2.0]}))
    assert canon(probed.rows) == canon(plain.rows)
    cols, rows = probed.tables["ics"]
    assert cols[:3] == ["step", "layer", "rel_change"]
    # steps 0, 15, 30 of 40; every dense layer with something below it: dense2 and out
    assert [(r[0], r[1]) for r in rows] == [(s, n) for s in (0, 15, 30) for n in ("dense2", "out")]
    assert all(math.isclose(r[2], r[5] / r[4]) for r in rows)
    cols, rows = probed.tables["smoothness"]
    assert [(r[0], r[1]) for r in rows] == [(s, m) for s in (0, 15, 30) for m in (0.5, 2.0)]
    assert all(math.isclose(r[2], r[1] * 0.1) for r in rows)  # eta = multiple x lr
