"""Tests for bncli/core/layers.py: Dense, Activation, softmax cross-entropy, init_weights."""

from __future__ import annotations

import numpy as np
import pytest

from bncli.core.layers import Activation, Dense, cross_entropy_eval, init_weights, softmax_cross_entropy

from .gradcheck import numerical_grad, rel_error

TOL = 1e-7


# -- 2. Dense ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_dense_gradcheck(bias):
    rng = np.random.default_rng(20)
    x = rng.standard_normal((5, 4))
    layer = Dense(rng.standard_normal((4, 3)), bias=bias)
    if bias:
        layer.params["b"][...] = rng.standard_normal(3)
        assert set(layer.params) == {"W", "b"}
    else:
        assert set(layer.params) == {"W"} and set(layer.grads) == {"W"}
    R = rng.standard_normal((5, 3))
    y = layer.forward(x)
    expected = x @ layer.params["W"] + (layer.params["b"] if bias else 0)
    np.testing.assert_allclose(y, expected, rtol=1e-13)
    R0 = R.copy()
    dx = layer.backward(R)
    np.testing.assert_array_equal(R, R0)

    def loss():
        return np.sum(layer.forward(x) * R)

    assert rel_error(dx, numerical_grad(loss, x)) < TOL
    assert rel_error(layer.grads["W"], numerical_grad(loss, layer.params["W"])) < TOL
    if bias:
        assert rel_error(layer.grads["b"], numerical_grad(loss, layer.params["b"])) < TOL


def test_dense_need_dx_false_returns_none_but_computes_param_grads():
    rng = np.random.default_rng(21)
    x = rng.standard_normal((3, 2))
    layer = Dense(rng.standard_normal((2, 4)), need_dx=False)
    layer.forward(x)
    R = rng.standard_normal((3, 4))
    assert layer.backward(R) is None
    np.testing.assert_allclose(layer.grads["W"], x.T @ R, rtol=1e-13)
    np.testing.assert_allclose(layer.grads["b"], R.sum(axis=0), rtol=1e-13)


def test_dense_grads_written_in_place():
    """Model and optimizer hold references to the grad arrays; backward must fill them, not rebind them."""
    rng = np.random.default_rng(22)
    layer = Dense(rng.standard_normal((2, 3)))
    gW, gb = layer.grads["W"], layer.grads["b"]
    layer.forward(rng.standard_normal((4, 2)))
    layer.backward(rng.standard_normal((4, 3)))
    assert layer.grads["W"] is gW and layer.grads["b"] is gb
    assert np.any(gW != 0) and np.any(gb != 0)


# -- 2. Activations ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", Activation.NAMES)
def test_activation_gradcheck(name):
    rng = np.random.default_rng(23)
    x = rng.standard_normal((6, 5)) * 2
    if name == "relu":  # keep every input at least 0.1 away from the kink
        x = np.sign(x) * (0.1 + np.abs(x))
        assert np.any(x < 0) and np.any(x > 0)
    R = rng.standard_normal((6, 5))
    act = Activation(name)
    act.forward(x)
    dx = act.backward(R)

    def loss():
        return np.sum(act.forward(x) * R)

    assert rel_error(dx, numerical_grad(loss, x)) < TOL


@pytest.mark.parametrize(
    "name, ref",
    [
        ("relu", lambda x: np.maximum(x, 0.0)),
        ("sigmoid", lambda x: 1.0 / (1.0 + np.exp(-x))),
        ("tanh", np.tanh),
        ("identity", lambda x: x),
    ],
)
def test_activation_forward_values(name, ref):
    x = np.linspace(-6, 6, 25)[None, :]
    np.testing.assert_allclose(Activation(name).forward(x), ref(x), rtol=1e-12, atol=1e-15)


def test_sigmoid_no_overflow_for_large_inputs():
    x = np.array([[-1000.0, -50.0, 0.0, 50.0, 1000.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        y = Activation("sigmoid").forward(x)
    np.testing.assert_allclose(y, [[0.0, 1.0 / (1.0 + np.exp(50.0)), 0.5, 1.0, 1.0]], atol=1e-15)


def test_unknown_activation_raises():
    with pytest.raises(ValueError, match="unknown activation"):
        Activation("gelu")


# -- 2. softmax cross-entropy ------------------------------------------------------------------------------------
def test_softmax_cross_entropy_gradcheck_and_value():
    rng = np.random.default_rng(24)
    logits = rng.standard_normal((7, 4)) * 3
    y = rng.integers(0, 4, 7)
    loss, dlogits, correct = softmax_cross_entropy(logits, y)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert isinstance(loss, float)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(7), y])), rel=1e-13)
    assert correct == int((logits.argmax(axis=1) == y).sum())
    num = numerical_grad(lambda: softmax_cross_entropy(logits, y)[0], logits)
    assert rel_error(dlogits, num) < TOL


def test_softmax_cross_entropy_gradcheck_with_upstream_scale():
    """The loss is a scalar, so the 'random upstream gradient' is a random scalar c: d(c*loss) = c*dlogits."""
    rng = np.random.default_rng(25)
    logits = rng.standard_normal((5, 3))
    y = rng.integers(0, 3, 5)
    c = rng.standard_normal()
    _, dlogits, _ = softmax_cross_entropy(logits, y)
    num = numerical_grad(lambda: c * softmax_cross_entropy(logits, y)[0], logits)
    assert rel_error(c * dlogits, num) < TOL


def test_softmax_cross_entropy_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 1000.0]])
    y = np.array([0, 2])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        loss, d, correct = softmax_cross_entropy(logits, y)
    assert loss == pytest.approx(np.log(2.0) / 2, rel=1e-12)  # row 0: 0, row 1: log 2
    np.testing.assert_allclose(d, [[0.0, 0.0, 0.0], [0.0, 0.25, -0.25]], atol=1e-15)
    assert correct == 1  # row 1: argmax is the first of the tied maxima (class 1), not the label 2


def test_cross_entropy_eval_matches_sum_of_training_loss():
    rng = np.random.default_rng(26)
    logits = rng.standard_normal((9, 5))
    y = rng.integers(0, 5, 9)
    loss, _, correct = softmax_cross_entropy(logits, y)
    loss_sum, correct_eval = cross_entropy_eval(logits, y)
    assert loss_sum == pytest.approx(9 * loss, rel=1e-13)
    assert correct_eval == correct


# -- 16. init_weights --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "scheme, expected_std",
    [
        ("he", np.sqrt(2.0 / 1000)),  # 0.0447
        ("glorot", np.sqrt(6.0 / 1500) / np.sqrt(3.0)),  # U(-a, a) has std a/sqrt(3) = sqrt(2/1500) = 0.0365
        ("normal", 0.05),
    ],
)
def test_init_weights_std(scheme, expected_std):
    rng = np.random.default_rng(27)
    w = init_weights(rng, 1000, 500, scheme, std=0.05, dtype=np.float64)
    assert w.shape == (1000, 500) and w.dtype == np.float64
    # 500k samples: the sample std is within ~0.1% of the true one; 2% is loose yet separates the schemes (>10% apart)
    assert abs(w.std() / expected_std - 1.0) < 0.02
    assert abs(w.mean()) < 5 * expected_std / np.sqrt(w.size)
    if scheme == "glorot":
        a = np.sqrt(6.0 / 1500)
        assert np.max(np.abs(w)) <= a and np.max(np.abs(w)) > 0.99 * a


def test_init_weights_dtype_and_determinism():
    w1 = init_weights(np.random.default_rng(5), 4, 3, "he")
    w2 = init_weights(np.random.default_rng(5), 4, 3, "he")
    assert w1.dtype == np.float32
    np.testing.assert_array_equal(w1, w2)


def test_init_weights_unknown_scheme_raises():
    with pytest.raises(ValueError, match="unknown init"):
        init_weights(np.random.default_rng(0), 3, 2, "xavier")
