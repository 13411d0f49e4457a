"""Tests for bncli/core/batchnorm.py: forward/backward math, running statistics, modes, folding."""

from __future__ import annotations

import numpy as np
import pytest

from bncli.core.batchnorm import (
    BatchNorm,
    BatchOfOneError,
    bn_backward,
    bn_eval_forward,
    bn_train_forward,
    fold_into_dense,
    update_running,
)

from .gradcheck import numerical_grad, rel_error

EPS = 1e-5
BN_TOL = 1e-7


def _bn_problem(seed=0, n=4, d=5):
    rng = np.random.default_rng(seed)
    x = 5.0 * rng.standard_normal((n, d)) + 12.0
    gamma = rng.uniform(0.5, 2.0, d) * rng.choice([-1.0, 1.0], d)  # not 1, some negative
    beta = rng.standard_normal(d)  # not 0
    dy = rng.standard_normal((n, d))
    return x, gamma, beta, dy


def _bn_numerical(x, gamma, beta, dy, eps=EPS):
    def loss():
        return np.sum(bn_train_forward(x, gamma, beta, eps)[0] * dy)

    return numerical_grad(loss, x), numerical_grad(loss, gamma), numerical_grad(loss, beta)


# -- 1. gradient checks ------------------------------------------------------------------------------------------
def test_bn_functions_gradcheck_float64():
    x, gamma, beta, dy = _bn_problem()
    x0 = x.copy()
    y, cache, _, _ = bn_train_forward(x, gamma, beta, EPS)
    dx, dgamma, dbeta = bn_backward(dy, cache)
    ndx, ndgamma, ndbeta = _bn_numerical(x, gamma, beta, dy)
    np.testing.assert_array_equal(x, x0)  # forward must not modify its input
    assert rel_error(dx, ndx) < BN_TOL
    assert rel_error(dgamma, ndgamma) < BN_TOL
    assert rel_error(dbeta, ndbeta) < BN_TOL
    # the check is not vacuous: the gradients are O(1), not ~0
    assert np.max(np.abs(ndx)) > 1e-2 and np.max(np.abs(ndgamma)) > 1e-1


def test_bn_class_gradcheck_float64_train_mode():
    x, gamma, beta, dy = _bn_problem(seed=1)
    bn = BatchNorm(x.shape[1], eps=EPS, dtype=np.float64)
    bn.params["gamma"][...] = gamma
    bn.params["beta"][...] = beta
    dy0 = dy.copy()
    bn.forward(x, mode="train")
    dx = bn.backward(dy)
    np.testing.assert_array_equal(dy, dy0)  # backward must not modify the upstream gradient

    def loss():
        return np.sum(bn.forward(x, mode="train") * dy)

    # perturb the layer's own parameter arrays
    ndx = numerical_grad(loss, x)
    ndgamma = numerical_grad(loss, bn.params["gamma"])
    ndbeta = numerical_grad(loss, bn.params["beta"])
    assert rel_error(dx, ndx) < BN_TOL
    assert rel_error(bn.grads["gamma"], ndgamma) < BN_TOL
    assert rel_error(bn.grads["beta"], ndbeta) < BN_TOL


def test_naive_course_note_formula_fails_the_same_check():
    """dx = dy * gamma / sqrt(var + eps) ignores the paths through mu and var: the check must reject it."""
    x, gamma, beta, dy = _bn_problem()
    _, _, _, var = bn_train_forward(x, gamma, beta, EPS)
    naive_dx = dy * gamma / np.sqrt(var + EPS)
    ndx, _, _ = _bn_numerical(x, gamma, beta, dy)
    assert rel_error(naive_dx, ndx) > 1e-1


@pytest.mark.parametrize("seed, n, d", [(s, 3 + s % 5, 1 + s % 4) for s in range(100, 116)])
def test_bn_gradcheck_random_shapes(seed, n, d):
    # n >= 3: with n = 2 the output is +-sqrt(var/(var+eps)) whatever x is, so dx is O(eps) and pure rounding noise
    x, gamma, beta, dy = _bn_problem(seed, n, d)
    _, cache, _, _ = bn_train_forward(x, gamma, beta, EPS)
    dx, dgamma, dbeta = bn_backward(dy, cache)
    ndx, ndgamma, ndbeta = _bn_numerical(x, gamma, beta, dy)
    assert rel_error(dx, ndx) < 1e-6
    assert rel_error(dgamma, ndgamma) < 1e-6
    assert rel_error(dbeta, ndbeta) < 1e-6


# -- 4. running statistics ---------------------------------------------------------------------------------------
def test_running_stats_hand_computed_n2():
    # column 0: [1, 3] -> mean 2, biased var 1, unbiased var 2;  column 1: [2, 6] -> mean 4, biased var 4, unbiased 8
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    bn = BatchNorm(2, decay=0.9, dtype=np.float64)
    np.testing.assert_array_equal(bn.buffers["running_mean"], [0.0, 0.0])
    np.testing.assert_array_equal(bn.buffers["running_var"], [1.0, 1.0])
    bn.forward(x, mode="train")
    np.testing.assert_allclose(bn.buffers["running_mean"], [0.2, 0.4], rtol=1e-14)
    np.testing.assert_allclose(bn.buffers["running_var"], [1.1, 1.7], rtol=1e-14)
    np.testing.assert_allclose(bn.last_stats[0], [2.0, 4.0], rtol=1e-14)
    np.testing.assert_allclose(bn.last_stats[1], [1.0, 4.0], rtol=1e-14)  # last_stats keeps the *biased* var
    bn.forward(x, mode="train")
    np.testing.assert_allclose(bn.buffers["running_mean"], [0.38, 0.76], rtol=1e-14)
    np.testing.assert_allclose(bn.buffers["running_var"], [1.19, 2.33], rtol=1e-14)


def test_update_running_function_hand_computed():
    running = np.array([[0.0, 0.0], [1.0, 1.0]])  # row 0 running means, row 1 running variances
    update_running(running, np.array([[2.0, 4.0], [1.0, 4.0]]), 2, 0.9)
    np.testing.assert_allclose(running, [[0.2, 0.4], [1.1, 1.7]], rtol=1e-14)
    # N = 4: unbiased factor 4/3; decay 0.5
    running = np.array([[1.0], [3.0]])
    update_running(running, np.array([[5.0], [6.0]]), 4, 0.5)
    np.testing.assert_allclose(running, [[3.0], [5.5]], rtol=1e-14)  # 0.5*1 + 0.5*5; 0.5*3 + 0.5*8


@pytest.mark.parametrize("mode", ["batch", "eval"])
def test_batch_and_eval_modes_leave_buffers_untouched(mode):
    rng = np.random.default_rng(4)
    bn = BatchNorm(3, dtype=np.float64)
    bn.buffers["running_mean"][...] = rng.standard_normal(3)
    bn.buffers["running_var"][...] = rng.uniform(0.5, 2.0, 3)
    before = {k: v.copy() for k, v in bn.buffers.items()}
    bn.forward(rng.standard_normal((6, 3)) * 3 + 1, mode=mode)
    for k in before:
        np.testing.assert_array_equal(bn.buffers[k], before[k])


def test_batch_mode_uses_batch_statistics():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 3)) * 2 + 4
    bn = BatchNorm(3, dtype=np.float64)
    y = bn.forward(x, mode="batch")
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(bn.last_stats[0], x.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(bn.last_stats[1], x.var(axis=0), rtol=1e-13)


@pytest.mark.parametrize("decay", [1.0, 1.5, -0.1])
def test_decay_out_of_range_raises(decay):
    with pytest.raises(ValueError, match="decay"):
        BatchNorm(3, decay=decay)


# -- 5. batch of one ---------------------------------------------------------------------------------------------
def test_batch_of_one_raises_in_training_mode():
    bn = BatchNorm(3, dtype=np.float64)
    before = {k: v.copy() for k, v in bn.buffers.items()}
    with pytest.raises(BatchOfOneError, match=r"got 1\b") as info:
        bn.forward(np.ones((1, 3)), mode="train")
    assert "sample" in str(info.value)
    assert isinstance(info.value, ValueError)
    for k in before:  # nothing was half-updated
        np.testing.assert_array_equal(bn.buffers[k], before[k])


def test_batch_statistics_of_one_sample_collapse_to_beta():
    """C5 (e): batch statistics of a single example give x - mean = 0, so the output is beta for any input."""
    rng = np.random.default_rng(11)
    bn = BatchNorm(3, dtype=np.float64)
    bn.params["gamma"][...] = rng.standard_normal(3)
    bn.params["beta"][...] = rng.standard_normal(3)
    before = {k: v.copy() for k, v in bn.buffers.items()}
    for x in (rng.standard_normal((1, 3)) * 10, rng.standard_normal((1, 3)) - 5):
        np.testing.assert_array_equal(bn.forward(x, mode="batch"), bn.params["beta"][None, :])
    for k in before:  # inference only: the running statistics are untouched
        np.testing.assert_array_equal(bn.buffers[k], before[k])


def test_batch_of_one_function_raises():
    with pytest.raises(BatchOfOneError, match="got 1"):
        bn_train_forward(np.ones((1, 2)), np.ones(2), np.zeros(2), EPS)


def test_eval_mode_works_with_one_sample():
    rng = np.random.default_rng(6)
    bn = BatchNorm(4, dtype=np.float64)
    bn.params["gamma"][...] = rng.uniform(0.5, 2, 4)
    bn.params["beta"][...] = rng.standard_normal(4)
    bn.buffers["running_mean"][...] = rng.standard_normal(4)
    bn.buffers["running_var"][...] = rng.uniform(0.5, 2, 4)
    x = rng.standard_normal((1, 4))
    y = bn.forward(x, mode="eval")
    b, p = bn.buffers, bn.params
    expected = (x - b["running_mean"]) / np.sqrt(b["running_var"] + bn.eps) * p["gamma"] + p["beta"]
    assert y.shape == (1, 4)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


# -- 7. C8: BN can represent the identity ------------------------------------------------------------------------
def test_c8_identity_recovered():
    rng = np.random.default_rng(7)
    x = 5.0 * rng.standard_normal((16, 5)) + 12.0
    gamma = np.sqrt(x.var(axis=0) + EPS)
    beta = x.mean(axis=0)
    y, _, _, _ = bn_train_forward(x, gamma, beta, EPS)
    np.testing.assert_allclose(y, x, rtol=1e-13, atol=1e-12)


# -- 9. normalized output statistics -----------------------------------------------------------------------------
def test_train_output_mean_zero_and_variance_with_eps_correction():
    rng = np.random.default_rng(9)
    # small-variance features (var ~ 1e-5 .. 1) so the eps term visibly moves the output variance below 1
    scales = np.array([3e-3, 1e-2, 0.1, 1.0, 10.0])
    x = rng.standard_normal((32, 5)) * scales + rng.standard_normal(5) * 5
    y, _, mean, var = bn_train_forward(x, np.ones(5), np.zeros(5), EPS)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(var, x.var(axis=0), rtol=1e-12)  # biased
    assert np.all(np.abs(y.mean(axis=0)) < 1e-6)
    expected_var = var / (var + EPS)
    assert expected_var[0] < 0.9  # the eps correction matters for the smallest feature
    np.testing.assert_allclose(y.var(axis=0), expected_var, rtol=1e-10)


# -- 10. eval with the batch's own statistics == train ---------------------------------------------------------
def test_eval_forward_with_batch_stats_equals_train_forward():
    x, gamma, beta, _ = _bn_problem(seed=10, n=9, d=5)
    y_train, _, mean, var = bn_train_forward(x, gamma, beta, EPS)
    y_eval = bn_eval_forward(x, gamma, beta, x.mean(axis=0), x.var(axis=0), EPS)
    np.testing.assert_allclose(y_eval, y_train, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bn_eval_forward(x, gamma, beta, mean, var, EPS), y_train, rtol=1e-12, atol=1e-12)


# -- folding (function level; the model-level check is in test_model.py) --------------------------------------
@pytest.mark.parametrize("with_bias", [False, True])
def test_fold_into_dense_matches_dense_then_eval_bn(with_bias):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((7, 4))
    W = rng.standard_normal((4, 3))
    b = rng.standard_normal(3) if with_bias else None
    gamma, beta = rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    mean, var = rng.standard_normal(3), rng.uniform(0.1, 3, 3)
    h = x @ W + (0 if b is None else b)
    expected = bn_eval_forward(h, gamma, beta, mean, var, EPS)
    Wf, bf = fold_into_dense(W, b, gamma, beta, mean, var, EPS)
    np.testing.assert_allclose(x @ Wf + bf, expected, rtol=1e-12, atol=1e-12)
