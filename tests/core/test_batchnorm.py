"""Tests for bncli/core/batchnorm.py: forward/backward math of the textbook and the fast path and their agreement,
running statistics, modes, folding."""

from __future__ import annotations

import numpy as np
import pytest

from bncli.core.batchnorm import (
    BatchNorm,
    BatchOfOneError,
    batchnorm_backward,
    batchnorm_forward,
    bn_backward,
    bn_eval_forward,
    bn_train_forward,
    fold_into_dense,
    update_running_average,
    update_running_stacked,
)

from .gradcheck import numerical_grad, rel_error

EPS = 1e-5
BN_TOL = 1e-7
PATHS = {"textbook": (batchnorm_forward, batchnorm_backward), "fused": (bn_train_forward, bn_backward)}


def _bn_problem(seed=0, n=4, d=5):
    rng = np.random.default_rng(seed)
    x = 5.0 * rng.standard_normal((n, d)) + 12.0
    gamma = rng.uniform(0.5, 2.0, d) * rng.choice([-1.0, 1.0], d)  # not 1, some negative
    beta = rng.standard_normal(d)  # not 0
    dy = rng.standard_normal((n, d))
    return x, gamma, beta, dy


def _bn_numerical(x, gamma, beta, dy, eps=EPS, forward=bn_train_forward):
    def loss():
        return np.sum(forward(x, gamma, beta, eps)[0] * dy)

    return numerical_grad(loss, x), numerical_grad(loss, gamma), numerical_grad(loss, beta)


class _Owner:
    """A BatchNorm on its own. A fused layer keeps its statistics in its owner's arrays and leaves the running
    update to the owner; this owner does for one layer what MLP does for all of its layers."""

    def __init__(self, dim, fused, dtype=np.float64, **kw):
        self.state = (np.empty((2, dim), dtype), np.empty((2, dim), dtype))
        self.bn = BatchNorm(dim, dtype=dtype, **(dict(fused=True, state=self.state, **kw) if fused else kw))

    def forward(self, x, mode="train"):
        y = self.bn.forward(x, mode)
        if mode == "train" and self.bn.fused:
            update_running_stacked(*self.state, x.shape[0], self.bn.decay)
        return y


# -- 1. gradient checks ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
def test_bn_functions_gradcheck_float64(path):
    forward, backward = PATHS[path]
    x, gamma, beta, dy = _bn_problem()
    x0, dy0 = x.copy(), dy.copy()
    y, cache, _, _ = forward(x, gamma, beta, EPS)
    dx, dgamma, dbeta = backward(dy, cache)
    ndx, ndgamma, ndbeta = _bn_numerical(x, gamma, beta, dy, forward=forward)
    np.testing.assert_array_equal(x, x0)  # forward must not modify its input
    np.testing.assert_array_equal(dy, dy0)  # nor backward its upstream gradient
    assert rel_error(dx, ndx) < BN_TOL
    assert rel_error(dgamma, ndgamma) < BN_TOL
    assert rel_error(dbeta, ndbeta) < BN_TOL
    # the check is not vacuous: the gradients are O(1), not ~0
    assert np.max(np.abs(ndx)) > 1e-2 and np.max(np.abs(ndgamma)) > 1e-1


@pytest.mark.parametrize("fused", [False, True])
def test_bn_class_gradcheck_float64_train_mode(fused):
    x, gamma, beta, dy = _bn_problem(seed=1)
    owner = _Owner(x.shape[1], fused, eps=EPS)
    bn = owner.bn
    bn.params["gamma"][...] = gamma
    bn.params["beta"][...] = beta
    dy0 = dy.copy()
    bn.forward(x, mode="train")
    dx = bn.backward(dy)
    np.testing.assert_array_equal(dy, dy0)  # backward must not modify the upstream gradient

    def loss():
        return np.sum(owner.forward(x, mode="train") * dy)

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
    _, _, _, var = batchnorm_forward(x, gamma, beta, EPS)
    naive_dx = dy * gamma / np.sqrt(var + EPS)
    ndx, _, _ = _bn_numerical(x, gamma, beta, dy)
    assert rel_error(naive_dx, ndx) > 1e-1


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("seed, n, d", [(s, 3 + s % 5, 1 + s % 4) for s in range(100, 116)])
def test_bn_gradcheck_random_shapes(seed, n, d, path):
    # n >= 3: with n = 2 the output is +-sqrt(var/(var+eps)) whatever x is, so dx is O(eps) and pure rounding noise
    forward, backward = PATHS[path]
    x, gamma, beta, dy = _bn_problem(seed, n, d)
    _, cache, _, _ = forward(x, gamma, beta, EPS)
    dx, dgamma, dbeta = backward(dy, cache)
    ndx, ndgamma, ndbeta = _bn_numerical(x, gamma, beta, dy, forward=forward)
    assert rel_error(dx, ndx) < 1e-6
    assert rel_error(dgamma, ndgamma) < 1e-6
    assert rel_error(dbeta, ndbeta) < 1e-6


# -- 4. running statistics ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fused", [False, True])
def test_running_stats_hand_computed_n2(fused):
    # column 0: [1, 3] -> mean 2, biased var 1, unbiased var 2;  column 1: [2, 6] -> mean 4, biased var 4, unbiased 8
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    owner = _Owner(2, fused, decay=0.9)
    bn = owner.bn
    np.testing.assert_array_equal(bn.buffers["running_mean"], [0.0, 0.0])
    np.testing.assert_array_equal(bn.buffers["running_var"], [1.0, 1.0])
    owner.forward(x, mode="train")
    np.testing.assert_allclose(bn.buffers["running_mean"], [0.2, 0.4], rtol=1e-14)
    np.testing.assert_allclose(bn.buffers["running_var"], [1.1, 1.7], rtol=1e-14)
    np.testing.assert_allclose(bn.batch_stats[0], [2.0, 4.0], rtol=1e-14)
    np.testing.assert_allclose(bn.batch_stats[1], [1.0, 4.0], rtol=1e-14)  # batch_stats keep the *biased* var
    owner.forward(x, mode="train")
    np.testing.assert_allclose(bn.buffers["running_mean"], [0.38, 0.76], rtol=1e-14)
    np.testing.assert_allclose(bn.buffers["running_var"], [1.19, 2.33], rtol=1e-14)


def _update_both_ways(running, batch, n, decay):
    """(update_running_average's result, update_running_stacked's result) from the same start."""
    rm, rv = running[0].copy(), running[1].copy()
    update_running_average(rm, rv, batch[0], batch[1], n, decay)
    stacked = running.copy()
    update_running_stacked(stacked, batch, n, decay)
    return np.stack([rm, rv]), stacked


def test_update_running_functions_hand_computed():
    # row 0 running means, row 1 running variances
    for got in _update_both_ways(np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[2.0, 4.0], [1.0, 4.0]]), 2, 0.9):
        np.testing.assert_allclose(got, [[0.2, 0.4], [1.1, 1.7]], rtol=1e-14)
    # N = 4: unbiased factor 4/3; decay 0.5
    for got in _update_both_ways(np.array([[1.0], [3.0]]), np.array([[5.0], [6.0]]), 4, 0.5):
        np.testing.assert_allclose(got, [[3.0], [5.5]], rtol=1e-14)  # 0.5*1 + 0.5*5; 0.5*3 + 0.5*8


def test_one_stacked_update_equals_one_per_layer():
    """MLP updates the statistics of all its fused layers, laid side by side, in one call: the same numbers, bit for
    bit, as one call per layer."""
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        running = np.stack([rng.standard_normal(12), rng.uniform(0.5, 2, 12)]).astype(dtype)
        batch = np.stack([rng.standard_normal(12), rng.uniform(0.5, 2, 12)]).astype(dtype)
        together, apart = running.copy(), running.copy()
        update_running_stacked(together, batch, 7, 0.9)
        for a, b in ((0, 5), (5, 9), (9, 12)):
            update_running_stacked(apart[:, a:b], batch[:, a:b], 7, 0.9)
        np.testing.assert_array_equal(together, apart)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("mode", ["batch", "eval"])
def test_batch_and_eval_modes_leave_buffers_untouched(mode, fused):
    rng = np.random.default_rng(4)
    owner = _Owner(3, fused)
    bn = owner.bn
    bn.buffers["running_mean"][...] = rng.standard_normal(3)
    bn.buffers["running_var"][...] = rng.uniform(0.5, 2.0, 3)
    before = {k: v.copy() for k, v in bn.buffers.items()}
    owner.forward(rng.standard_normal((6, 3)) * 3 + 1, mode=mode)
    for k in before:
        np.testing.assert_array_equal(bn.buffers[k], before[k])


@pytest.mark.parametrize("fused", [False, True])
def test_batch_mode_uses_batch_statistics(fused):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 3)) * 2 + 4
    bn = _Owner(3, fused).bn
    y = bn.forward(x, mode="batch")
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(bn.batch_stats[0], x.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(bn.batch_stats[1], x.var(axis=0), rtol=1e-13)


@pytest.mark.parametrize("decay", [1.0, 1.5, -0.1])
def test_decay_out_of_range_raises(decay):
    with pytest.raises(ValueError, match="decay"):
        BatchNorm(3, decay=decay)


def test_fused_options_are_explicit():
    """The fast path is chosen by whoever builds the layer, with its state; its options mean nothing without it."""
    state = (np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="state"):
        BatchNorm(3, fused=True)
    with pytest.raises(ValueError, match="state"):
        BatchNorm(3, state=state)
    with pytest.raises(ValueError, match="fused"):
        BatchNorm(3, overwrite_input=True)
    with pytest.raises(ValueError, match="fused"):
        BatchNorm(3, overwrite_grad=True)
    bn = BatchNorm(3, fused=True, state=state, dtype=np.float64)
    # the layer's buffers and batch statistics are the rows of its owner's arrays, starting at mean 0, variance 1
    assert np.shares_memory(bn.buffers["running_var"], state[0][1]) and bn.batch_stats is state[1]
    np.testing.assert_array_equal(state[0], [[0, 0, 0], [1, 1, 1]])


# -- 5. batch of one ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fused", [False, True])
def test_batch_of_one_raises_in_training_mode(fused):
    owner = _Owner(3, fused)
    before = {k: v.copy() for k, v in owner.bn.buffers.items()}
    with pytest.raises(BatchOfOneError, match=r"got 1\b") as info:
        owner.forward(np.ones((1, 3)), mode="train")
    assert "sample" in str(info.value)
    assert isinstance(info.value, ValueError)
    for k in before:  # nothing was half-updated
        np.testing.assert_array_equal(owner.bn.buffers[k], before[k])


@pytest.mark.parametrize("fused", [False, True])
def test_batch_statistics_of_one_sample_collapse_to_beta(fused):
    """C5 (e): batch statistics of a single example give x - mean = 0, so the output is beta for any input."""
    rng = np.random.default_rng(11)
    bn = _Owner(3, fused).bn
    bn.params["gamma"][...] = rng.standard_normal(3)
    bn.params["beta"][...] = rng.standard_normal(3)
    before = {k: v.copy() for k, v in bn.buffers.items()}
    for x in (rng.standard_normal((1, 3)) * 10, rng.standard_normal((1, 3)) - 5):
        np.testing.assert_array_equal(bn.forward(x, mode="batch"), bn.params["beta"][None, :])
    for k in before:  # inference only: the running statistics are untouched
        np.testing.assert_array_equal(bn.buffers[k], before[k])


@pytest.mark.parametrize("path", PATHS)
def test_batch_of_one_function_raises(path):
    with pytest.raises(BatchOfOneError, match="got 1"):
        PATHS[path][0](np.ones((1, 2)), np.ones(2), np.zeros(2), EPS)


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


# -- 6. the textbook path and the fast path compute the same thing --------------------------------------------
TIGHT = {np.float64: 1e-12, np.float32: 1e-4}  # relative to each array's largest entry


def _assert_close(actual, desired, dtype, what):
    assert actual.dtype == desired.dtype == dtype, what
    scale = np.max(np.abs(desired))
    np.testing.assert_allclose(actual, desired, rtol=TIGHT[dtype], atol=TIGHT[dtype] * scale, err_msg=what)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed, n, d", [(0, 3, 1), (1, 4, 5), (2, 60, 100), (3, 256, 7), (4, 17, 33)])
def test_textbook_and_fused_functions_agree(seed, n, d, dtype):
    """Forward (y, x_hat, batch statistics), backward (dx, dgamma, dbeta) for a random upstream gradient, and the
    running statistics after a few batches: equal to rounding. (n >= 3: see test_bn_gradcheck_random_shapes.)"""
    rng = np.random.default_rng(seed)
    gamma = (rng.uniform(0.5, 2.0, d) * rng.choice([-1.0, 1.0], d)).astype(dtype)
    beta = rng.standard_normal(d).astype(dtype)
    running = np.stack([rng.standard_normal(d), rng.uniform(0.5, 2.0, d)]).astype(dtype)
    for step in range(3):
        x = (5.0 * rng.standard_normal((n, d)) + 12.0).astype(dtype)
        dy = rng.standard_normal((n, d)).astype(dtype)
        y_t, cache_t, mean_t, var_t = batchnorm_forward(x, gamma, beta, EPS)
        y_f, cache, mean_f, var_f = bn_train_forward(x.copy(), gamma, beta, EPS, overwrite_x=True)
        grads_t = batchnorm_backward(dy, cache_t)
        grads_f = bn_backward(dy.copy(), cache, overwrite_dy=True)
        xc, inv_std, _ = cache
        pairs = {"y": (y_f, y_t), "x_hat": (xc * inv_std, cache_t[0]), "mean": (mean_f, mean_t), "var": (var_f, var_t),
                 "dx": (grads_f[0], grads_t[0]), "dgamma": (grads_f[1], grads_t[1]), "dbeta": (grads_f[2], grads_t[2])}
        for what, (fast, textbook) in pairs.items():
            _assert_close(fast, textbook, dtype, f"{what}, step {step}")
        by_formula, stacked = _update_both_ways(running, np.stack([mean_t, var_t]), n, 0.9)
        _assert_close(stacked, by_formula, dtype, f"running statistics, step {step}")
        running = by_formula


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_textbook_and_fused_layers_agree(dtype):
    """The two layers through several training steps (the fused one centering its input and writing dx over dy in
    place, as in MLP), then a batch-statistics and an eval forward: outputs, dx, gradients, statistics."""
    rng = np.random.default_rng(12)
    d = 6
    textbook = _Owner(d, False, dtype, decay=0.8)
    fused = _Owner(d, True, dtype, decay=0.8, overwrite_input=True, overwrite_grad=True)
    for owner in (textbook, fused):
        owner.bn.params["gamma"][...] = np.linspace(0.5, 2.0, d)
        owner.bn.params["beta"][...] = np.linspace(-1.0, 1.0, d)
    for step in range(4):
        x = (3.0 * rng.standard_normal((20, d)) + 2.0).astype(dtype)
        dy = rng.standard_normal((20, d)).astype(dtype)
        y = [o.forward(x.copy(), "train") for o in (textbook, fused)]
        dx = [o.bn.backward(dy.copy()) for o in (textbook, fused)]
        _assert_close(y[1], y[0], dtype, f"y, step {step}")
        _assert_close(dx[1], dx[0], dtype, f"dx, step {step}")
        for k in ("gamma", "beta"):
            _assert_close(fused.bn.grads[k], textbook.bn.grads[k], dtype, f"d{k}, step {step}")
        for k in ("running_mean", "running_var"):
            _assert_close(fused.bn.buffers[k], textbook.bn.buffers[k], dtype, f"{k}, step {step}")
    x = (3.0 * rng.standard_normal((9, d)) + 2.0).astype(dtype)
    for mode in ("batch", "eval"):
        _assert_close(fused.forward(x.copy(), mode), textbook.forward(x.copy(), mode), dtype, mode)
    for i, what in enumerate(("batch mean", "batch var")):
        _assert_close(fused.bn.batch_stats[i], textbook.bn.batch_stats[i], dtype, what)


# -- 7. C8: BN can represent the identity ------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
def test_c8_identity_recovered(path):
    rng = np.random.default_rng(7)
    x = 5.0 * rng.standard_normal((16, 5)) + 12.0
    gamma = np.sqrt(x.var(axis=0) + EPS)
    beta = x.mean(axis=0)
    y, _, _, _ = PATHS[path][0](x, gamma, beta, EPS)
    np.testing.assert_allclose(y, x, rtol=1e-13, atol=1e-12)


# -- 9. normalized output statistics -----------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
def test_train_output_mean_zero_and_variance_with_eps_correction(path):
    rng = np.random.default_rng(9)
    # small-variance features (var ~ 1e-5 .. 1) so the eps term visibly moves the output variance below 1
    scales = np.array([3e-3, 1e-2, 0.1, 1.0, 10.0])
    x = rng.standard_normal((32, 5)) * scales + rng.standard_normal(5) * 5
    y, _, mean, var = PATHS[path][0](x, np.ones(5), np.zeros(5), EPS)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(var, x.var(axis=0), rtol=1e-12)  # biased
    assert np.all(np.abs(y.mean(axis=0)) < 1e-6)
    expected_var = var / (var + EPS)
    assert expected_var[0] < 0.9  # the eps correction matters for the smallest feature
    np.testing.assert_allclose(y.var(axis=0), expected_var, rtol=1e-10)


# -- 10. eval with the batch's own statistics == train ---------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
def test_eval_forward_with_batch_stats_equals_train_forward(path):
    x, gamma, beta, _ = _bn_problem(seed=10, n=9, d=5)
    y_train, _, mean, var = PATHS[path][0](x, gamma, beta, EPS)
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
