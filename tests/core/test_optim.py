"""Tests for bncli/core/optim.py: optimizer updates vs hand computation, weight decay, learning-rate schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bncli.core.optim import OPTIMIZERS, Optimizer, lr_at

W0 = np.array([1.0, -2.0, 0.5])
G1 = np.array([0.1, -0.2, 0.3])
G2 = np.array([0.4, 0.0, -0.1])
LR = 0.1


def _run(name, **kw):
    """Two steps on one tiny parameter; returns the parameter after step 1 and after step 2."""
    params = {"layer.W": W0.copy()}
    grads = {"layer.W": np.zeros(3)}
    opt = Optimizer(params, grads, name, **kw)
    out = []
    for g in (G1, G2):
        grads["layer.W"][...] = g  # in place, as the model's backward does
        opt.step(LR)
        out.append(params["layer.W"].copy())
    return out


def _reference(name, mu=0.9, rho=0.99, b1=0.9, b2=0.999, eps=1e-8):
    """The module docstring's formulas, written out independently (Adam in its textbook bias-corrected form)."""
    w = W0.copy()
    v = np.zeros(3)
    m = np.zeros(3)
    out = []
    for t, g in enumerate((G1, G2), start=1):
        if name == "sgd":
            w = w - LR * g
        elif name == "momentum":
            v = mu * v + g
            w = w - LR * v
        elif name == "rmsprop":
            v = rho * v + (1 - rho) * g**2
            w = w - LR * g / (np.sqrt(v) + eps)
        elif name == "adam":
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g**2
            m_hat = m / (1 - b1**t)
            v_hat = v / (1 - b2**t)
            w = w - LR * m_hat / (np.sqrt(v_hat) + eps)
        out.append(w)
    return out


# -- 13. two steps of each optimizer -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_two_steps_match_reference_formulas(name):
    got = _run(name)
    ref = _reference(name)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-12, atol=1e-14)


# literal values, computed by hand from the formulas (lr = 0.1)
LITERAL = {
    # w - lr*g1 ; then - lr*g2
    "sgd": ([0.99, -1.98, 0.47], [0.95, -1.98, 0.48]),
    # v1 = g1 ; v2 = 0.9*g1 + g2 = [0.49, -0.18, 0.17]
    "momentum": ([0.99, -1.98, 0.47], [0.941, -1.962, 0.453]),
    # s1 = 0.01*g1^2 -> sqrt = [0.01, 0.02, 0.03] -> step = lr*[10, -10, 10];
    # s2 = 0.99*s1 + 0.01*g2^2 = [0.001699, 0.000396, 0.000991] -> step = lr*g2/sqrt(s2)
    "rmsprop": ([0.0, -1.0, -0.5],
                [0.0 - 0.04 / math.sqrt(0.001699), -1.0, -0.5 + 0.01 / math.sqrt(0.000991)]),
    # Adam's first step is lr * sign(g) (m_hat/sqrt(v_hat) = g/|g|)
    "adam": ([0.9, -1.9, 0.4], None),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_two_steps_literal_values(name):
    got = _run(name)
    first, second = LITERAL[name]
    # the literals ignore eps = 1e-8, which is ~1e-6 relative to sqrt(s) ~ 0.01 here: atol 1e-5
    np.testing.assert_allclose(got[0], first, rtol=0, atol=1e-5)
    if second is not None:
        np.testing.assert_allclose(got[1], second, rtol=0, atol=1e-5)


def test_adam_second_step_literal():
    # m2 = 0.09*g1 + 0.1*g2, v2 = 0.000999*g1^2 + 0.001*g2^2, bias corrections 1-0.9^2 = 0.19, 1-0.999^2 = 0.001999
    m2 = 0.09 * G1 + 0.1 * G2
    v2 = 0.000999 * G1**2 + 0.001 * G2**2
    expected = np.array([0.9, -1.9, 0.4]) - LR * (m2 / 0.19) / np.sqrt(v2 / 0.001999)
    # element 1: m2 = -0.018, v2 = 0.000999*0.04 -> step = 0.1 * (-0.018/0.19) / sqrt(0.00003996/0.001999)
    assert expected[1] == pytest.approx(-1.9 + 0.1 * (0.018 / 0.19) / math.sqrt(0.00003996 / 0.001999), rel=1e-12)
    np.testing.assert_allclose(_run("adam")[1], expected, rtol=0, atol=1e-5)


def test_optimizer_state_is_per_parameter_and_hyperparameters_are_used():
    # a different momentum changes the second step: v2 = 0.5*g1 + g2
    got = _run("momentum", momentum=0.5)
    np.testing.assert_allclose(got[1], W0 - LR * G1 - LR * (0.5 * G1 + G2), rtol=1e-12)
    np.testing.assert_allclose(_run("rmsprop", rho=0.9)[1], _reference("rmsprop", rho=0.9)[1], rtol=1e-12)
    np.testing.assert_allclose(_run("adam", beta1=0.5, beta2=0.9)[1], _reference("adam", b1=0.5, b2=0.9)[1],
                               rtol=1e-12)


def test_unknown_optimizer_raises():
    with pytest.raises(ValueError, match="unknown optimizer"):
        Optimizer({}, {}, "adagrad")


# -- 13. weight decay only on ".W" -------------------------------------------------------------------------------
KEYS = ("dense1.W", "dense1.b", "bn1.gamma", "bn1.beta", "out.W", "out.b")


def _wd_problem():
    rng = np.random.default_rng(13)
    params = {k: rng.standard_normal(3) + 2.0 for k in KEYS}
    grads = {k: np.zeros(3) for k in KEYS}
    return params, grads


def test_weight_decay_sgd_exact():
    params, grads = _wd_problem()
    rng = np.random.default_rng(14)
    for g in grads.values():
        g[...] = rng.standard_normal(3)
    before = {k: v.copy() for k, v in params.items()}
    g_before = {k: v.copy() for k, v in grads.items()}  # step consumes the gradient arrays (scratch space)
    Optimizer(params, grads, "sgd", weight_decay=0.5).step(LR)
    for k in KEYS:
        wd = 0.5 if k.endswith(".W") else 0.0
        np.testing.assert_allclose(params[k], before[k] - LR * (g_before[k] + wd * before[k]), rtol=1e-13, err_msg=k)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_weight_decay_applies_to_W_keys_only(name):
    params, grads = _wd_problem()  # zero gradients: only the decay can move a parameter
    before = {k: v.copy() for k, v in params.items()}
    opt = Optimizer(params, grads, name, weight_decay=0.1)
    assert opt.decayed == {"dense1.W", "out.W"}
    opt.step(LR)
    opt.step(LR)
    for k in KEYS:
        if k.endswith(".W"):
            assert np.all(np.abs(params[k]) < np.abs(before[k])), k  # shrunk towards 0
        else:
            np.testing.assert_array_equal(params[k], before[k], err_msg=k)


def test_no_weight_decay_by_default():
    params, grads = _wd_problem()
    before = {k: v.copy() for k, v in params.items()}
    Optimizer(params, grads, "sgd").step(LR)
    for k in KEYS:
        np.testing.assert_array_equal(params[k], before[k])


# -- 13. learning-rate schedules ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, step, expected",
    [
        # constant
        (dict(schedule="constant"), 0, 0.1),
        (dict(schedule="constant"), 99, 0.1),
        # step: x0.5 every 10 steps
        (dict(schedule="step", step_size=10, gamma=0.5), 0, 0.1),
        (dict(schedule="step", step_size=10, gamma=0.5), 9, 0.1),
        (dict(schedule="step", step_size=10, gamma=0.5), 10, 0.05),
        (dict(schedule="step", step_size=10, gamma=0.5), 25, 0.025),
        # cosine over 100 steps to 0 (and to min_lr 0.01)
        (dict(schedule="cosine"), 0, 0.1),
        (dict(schedule="cosine"), 25, 0.08535533905932738),  # 0.05 * (1 + cos(pi/4))
        (dict(schedule="cosine"), 50, 0.05),
        (dict(schedule="cosine"), 75, 0.014644660940672627),  # 0.05 * (1 - cos(pi/4))
        (dict(schedule="cosine"), 100, 0.0),
        (dict(schedule="cosine"), 150, 0.0),  # clamped after the end
        (dict(schedule="cosine", min_lr=0.01), 50, 0.055),
        (dict(schedule="cosine", min_lr=0.01), 100, 0.01),
        # linear warm-up over 4 steps: lr * (step + 1) / 4, then the schedule
        (dict(schedule="constant", warmup=4), 0, 0.025),
        (dict(schedule="constant", warmup=4), 1, 0.05),
        (dict(schedule="constant", warmup=4), 3, 0.1),
        (dict(schedule="constant", warmup=4), 4, 0.1),
        # warm-up shifts the step schedule: decays at warmup + k * step_size
        (dict(schedule="step", step_size=10, gamma=0.1, warmup=5), 5, 0.1),
        (dict(schedule="step", step_size=10, gamma=0.1, warmup=5), 14, 0.1),
        (dict(schedule="step", step_size=10, gamma=0.1, warmup=5), 15, 0.01),
        # warm-up then cosine over the remaining 100 - 20 = 80 steps
        (dict(schedule="cosine", warmup=20), 19, 0.1),
        (dict(schedule="cosine", warmup=20), 20, 0.1),
        (dict(schedule="cosine", warmup=20), 60, 0.05),
        (dict(schedule="cosine", warmup=20), 100, 0.0),
    ],
)
def test_lr_at(kwargs, step, expected):
    assert lr_at(step, 100, 0.1, **kwargs) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_lr_at_unknown_schedule_raises():
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_at(0, 10, 0.1, "linear")


def test_lr_at_returns_python_float():
    """A NumPy float64 learning rate would upcast float32 updates under NEP 50; lr_at returns plain floats."""
    for schedule in ("constant", "step", "cosine"):
        assert type(lr_at(3, 10, 0.1, schedule, step_size=2, warmup=2)) is float
        assert type(lr_at(1, 10, 0.1, schedule, warmup=2)) is float


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adam"])
@pytest.mark.parametrize("wd", [0.0, 1e-2])
def test_flat_update_is_bit_identical_to_per_parameter_updates(name, wd):
    """Optimizer(flat=model.flat) updates the whole buffer at once: same numbers as one update per array."""
    from bncli.core import MLP, softmax_cross_entropy

    models = [MLP(6, [5, 4], 3, rng=np.random.default_rng(21), bn="before", bias_with_bn=True) for _ in range(2)]
    opts = [Optimizer(models[0].params, models[0].grads, name, weight_decay=wd),
            Optimizer(models[1].params, models[1].grads, name, weight_decay=wd, flat=models[1].flat)]
    rng = np.random.default_rng(22)
    for _ in range(4):
        X = rng.standard_normal((8, 6)).astype(np.float32)
        y = rng.integers(0, 3, 8)
        for m, o in zip(models, opts):
            _, d, _ = softmax_cross_entropy(m.forward(X, "train"), y)
            m.backward(d)
            o.step(0.05)
    for k in models[0].params:
        np.testing.assert_array_equal(models[0].params[k], models[1].params[k], err_msg=k)
    assert not np.array_equal(models[0].params["dense1.W"], MLP(6, [5, 4], 3, rng=np.random.default_rng(21),
                                                                 bn="before").params["dense1.W"])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_flat_update_decays_where_the_mask_says(name):
    """With flat=(params, grads, decay_mask) the optimizer takes the mask as given: zero gradients, so only the
    decay moves an entry, and exactly the masked entries move."""
    params, grads = 2.0 + np.arange(6.0), np.zeros(6)
    mask = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    before = params.copy()
    Optimizer({}, {}, name, weight_decay=0.1, flat=(params, grads, mask)).step(LR)
    assert np.all(np.abs(params[mask == 1]) < before[mask == 1])
    np.testing.assert_array_equal(params[mask == 0], before[mask == 0])
