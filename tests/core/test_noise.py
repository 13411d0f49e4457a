"""Tests for bncli/core/noise.py (NoisyShift) and the bn="noisy" placement of MLP (Santurkar et al. 2018, §2.1):
gradients, the draw, modes, the tie to "before", and the paths that refuse noisy BN."""

from __future__ import annotations

import numpy as np
import pytest

from bncli.core.convnet import ConvNet
from bncli.core.layers import softmax_cross_entropy
from bncli.core.model import BN_IMPLS, MLP
from bncli.core.noise import NoisyShift
from bncli.core.optim import Optimizer
from bncli.core.stack import Stack

from .gradcheck import numerical_grad, rel_error
from .test_model import ACTIVATIONS, NET_TOL, _net_gradcheck, _net_problem, _structurally_zero

TOL = 1e-7


def _drawn(dim=5, seed=0, **kw):
    layer = NoisyShift(dim, dtype=np.float64, **kw)
    layer.draw(np.random.default_rng(seed))
    return layer


# -- the layer ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("inplace", [False, True])
def test_noisy_shift_gradcheck(inplace):
    rng = np.random.default_rng(30)
    layer = _drawn(inplace=inplace)
    x, R = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    y = layer.forward(x.copy(), "train")
    np.testing.assert_allclose(y, layer.scale * x + layer.shift, rtol=1e-14)
    assert np.all(np.abs(layer.scale - 1) > 1e-3) and np.all(np.abs(layer.shift) > 1e-4)  # a non-trivial draw
    dx = layer.backward(R.copy())
    num = numerical_grad(lambda: np.sum(layer.forward(x.copy(), "train") * R), x)
    assert rel_error(dx, num) < TOL
    np.testing.assert_allclose(dx, R * layer.scale, rtol=1e-14)


def test_before_the_first_draw_it_is_the_identity():
    layer = NoisyShift(4, dtype=np.float64)
    np.testing.assert_array_equal(layer.scale, np.ones(4))
    np.testing.assert_array_equal(layer.shift, np.zeros(4))
    x = np.random.default_rng(0).standard_normal((3, 4))
    np.testing.assert_array_equal(layer.forward(x, "train"), x)
    assert layer.params == layer.grads == layer.buffers == {}


def test_draw_order_dtype_and_determinism():
    """Scales first (log-uniform), then shifts, from the rng given; the same seed gives the same draw, the next
    call a new one."""
    layer = NoisyShift(7, mean=0.7, scale_low=0.3, scale_high=4.0)
    layer.draw(np.random.default_rng(5))
    ref = np.random.default_rng(5)
    s = np.exp(ref.uniform(np.log(0.3), np.log(4.0), 7))
    m = ref.uniform(-0.7, 0.7, 7)
    assert layer.scale.dtype == layer.shift.dtype == np.float32
    np.testing.assert_array_equal(layer.scale, s.astype(np.float32))
    np.testing.assert_array_equal(layer.shift, m.astype(np.float32))
    rng = np.random.default_rng(6)
    layer.draw(rng)
    first = layer.scale.copy(), layer.shift.copy()
    layer.draw(rng)
    assert not np.any(layer.scale == first[0]) and not np.any(layer.shift == first[1])
    again = NoisyShift(7, mean=0.7, scale_low=0.3, scale_high=4.0)
    again.draw(np.random.default_rng(6))
    np.testing.assert_array_equal(again.scale, first[0])
    np.testing.assert_array_equal(again.shift, first[1])


@pytest.mark.parametrize("mean, low, high", [(1.0, 0.5, 2.0), (0.3, 0.25, 3.0)])
def test_draw_statistics(mean, low, high):
    """Over many draws: s in [low, high] with log s uniform on [log low, log high], m uniform on [-mean, mean]."""
    layer, rng = NoisyShift(100, mean=mean, scale_low=low, scale_high=high, dtype=np.float64), np.random.default_rng(7)
    s, m = [], []
    for _ in range(200):
        layer.draw(rng)
        s.append(layer.scale)
        m.append(layer.shift)
    s, m = np.concatenate(s), np.concatenate(m)
    a, b = np.log(low), np.log(high)
    assert low <= s.min() and s.max() <= high and -mean <= m.min() and m.max() <= mean
    u = (np.log(s) - a) / (b - a)  # Uniform[0, 1] if s is log-uniform (s uniform would give a mean of log s off by
    v = (m + mean) / (2 * mean)  # +0.155 on [0.5, 2], far beyond the tolerances below)
    for w in (u, v):
        assert abs(w.mean() - 0.5) < 0.01
        np.testing.assert_allclose(np.quantile(w, [0.1, 0.25, 0.5, 0.75, 0.9]), [0.1, 0.25, 0.5, 0.75, 0.9], atol=0.015)
    assert abs(np.log(s).mean() - (a + b) / 2) < 0.01 * (b - a)


def test_modes_and_always():
    rng = np.random.default_rng(8)
    layer = _drawn(4)
    x, dy = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    noised = layer.scale * x + layer.shift
    for mode in ("eval", "batch"):
        np.testing.assert_array_equal(layer.forward(x, mode), x)
        np.testing.assert_array_equal(layer.backward(dy), dy)
    np.testing.assert_allclose(layer.forward(x, "train"), noised, rtol=1e-14)
    np.testing.assert_allclose(layer.backward(dy), dy * layer.scale, rtol=1e-14)
    layer.always = True
    for mode in ("eval", "batch", "train"):
        np.testing.assert_allclose(layer.forward(x, mode), noised, rtol=1e-14)
        np.testing.assert_allclose(layer.backward(dy), dy * layer.scale, rtol=1e-14)


@pytest.mark.parametrize("kw", [{"mean": -0.1}, {"scale_low": 0.0}, {"scale_low": -1.0},
                                {"scale_low": 2.0, "scale_high": 1.0}, {"mean": float("nan")}])
def test_bad_arguments_raise(kw):
    with pytest.raises(ValueError, match="noise"):
        NoisyShift(3, **kw)


def test_equal_bounds_and_zero_mean_are_allowed():
    layer = _drawn(3, mean=0.0, scale_low=1.5, scale_high=1.5)
    np.testing.assert_allclose(layer.scale, 1.5, rtol=1e-15)
    np.testing.assert_array_equal(layer.shift, 0.0)


# -- the model ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bn_impl", BN_IMPLS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_noisy_mlp_gradcheck_with_the_noise_held_fixed(activation, bn_impl):
    model, X, _, R = _net_problem("noisy", activation, bn_impl=bn_impl)
    noise = model.noise_layers()
    assert [n for n, _ in noise] == ["noise1", "noise2"]
    assert all(np.all(np.abs(layer.scale - 1) > 1e-4) and np.all(layer.shift != 0) for _, layer in noise)
    drawn = [(layer.scale.copy(), layer.shift.copy()) for _, layer in noise]
    errors = _net_gradcheck(model, X, lambda logits: (np.sum(logits * R), R.copy()),
                            _structurally_zero("noisy", activation))
    assert max(errors.values()) < NET_TOL, errors
    for (_, layer), (s, m) in zip(noise, drawn):  # held fixed: no forward or backward draws
        np.testing.assert_array_equal(layer.scale, s)
        np.testing.assert_array_equal(layer.shift, m)


def test_draw_noise_draws_each_layer_in_order_and_nothing_without_noise():
    model = MLP(6, [5, 4], 3, rng=np.random.default_rng(0), bn="noisy", noise_mean=0.5, noise_scale=(0.8, 1.6))
    model.draw_noise(np.random.default_rng(9))
    ref = np.random.default_rng(9)
    for (_, layer), d in zip(model.noise_layers(), (5, 4)):
        expected = NoisyShift(d, mean=0.5, scale_low=0.8, scale_high=1.6)
        expected.draw(ref)
        np.testing.assert_array_equal(layer.scale, expected.scale)
        np.testing.assert_array_equal(layer.shift, expected.shift)
    for bn in ("none", "before", "after"):
        rng = np.random.default_rng(9)
        state = rng.bit_generator.state
        other = MLP(6, [5, 4], 3, rng=np.random.default_rng(0), bn=bn)
        other.draw_noise(rng)
        assert other.noise_layers() == [] and rng.bit_generator.state == state


def test_noise_always_applies_the_draw_in_eval_and_restores():
    rng = np.random.default_rng(10)
    model = MLP(6, [5, 4], 3, rng=rng, bn="noisy", dtype=np.float64)
    X = rng.standard_normal((12, 6))
    model.draw_noise(rng)
    plain = model.forward(X, "eval")
    model.noise_layers()[1][1].always = True  # one layer already True: restored to True, the other to False
    with model.noise_always() as m:
        assert m is model and all(layer.always for _, layer in model.noise_layers())
        noisy = model.forward(X, "eval")
        inputs = model.activation_inputs(X, "batch")
    assert [layer.always for _, layer in model.noise_layers()] == [False, True]
    assert not np.allclose(noisy, plain, rtol=1e-6)
    x = X  # the last activation's input as the training step sees it
    names = [n for n, _ in model.layers]
    for _, layer in model.layers[:names.index("act2")]:
        x = layer.forward(x, "train")
    np.testing.assert_allclose(inputs, x, rtol=1e-12)
    model.noise_layers()[1][1].always = False
    assert not np.allclose(model.activation_inputs(X, "batch"), x, rtol=1e-6)
    np.testing.assert_array_equal(model.forward(X, "eval"), plain)
    with pytest.raises(RuntimeError), model.noise_always():
        raise RuntimeError
    assert not any(layer.always for _, layer in model.noise_layers())


@pytest.mark.parametrize("bn_impl", BN_IMPLS)
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_zero_noise_is_bn_before_bit_for_bit(activation, bn_impl):
    """noise_mean=0, noise_scale=(1, 1): the same weights, logits, gradients and statistics as "before", over a few
    training steps; the default noise changes the logits (so the comparison can fail)."""
    rng = np.random.default_rng(11)
    X, y = rng.standard_normal((40, 6)), rng.integers(0, 3, 40)
    kw = {"activation": activation, "dtype": np.float64, "bn_impl": bn_impl}
    before = MLP(6, [7, 5], 3, rng=np.random.default_rng(1), bn="before", **kw)
    zero = MLP(6, [7, 5], 3, rng=np.random.default_rng(1), bn="noisy", noise_mean=0.0, noise_scale=(1, 1), **kw)
    noisy = MLP(6, [7, 5], 3, rng=np.random.default_rng(1), bn="noisy", **kw)
    assert set(before.params) == set(zero.params)
    opts = [Optimizer(m.params, m.grads, "momentum", flat=m.flat) for m in (before, zero)]
    noise_rng = np.random.default_rng(12)
    for step in range(4):
        xb, yb = X[10 * step:10 * (step + 1)], y[10 * step:10 * (step + 1)]
        zero.draw_noise(noise_rng)
        noisy.draw_noise(noise_rng)
        logits = [m.forward(xb, "train") for m in (before, zero)]
        np.testing.assert_array_equal(logits[0], logits[1])
        assert not np.allclose(noisy.forward(xb, "train"), logits[0], rtol=1e-6)
        for m, lg, opt in zip((before, zero), logits, opts):
            m.backward(softmax_cross_entropy(lg, yb)[1])
        for k in before.params:
            np.testing.assert_array_equal(before.grads[k], zero.grads[k], err_msg=k)
        for opt in opts:
            opt.step(0.1)
    for k, v in before.get_buffers().items():
        np.testing.assert_array_equal(v, zero.get_buffers()[k], err_msg=k)
    np.testing.assert_array_equal(before.forward(X, "eval"), zero.forward(X, "eval"))


# -- what refuses noisy BN ---------------------------------------------------------------------------------------
def test_convnet_refuses_noisy():
    with pytest.raises(ValueError, match="noisy BN is implemented for MLPs only"):
        ConvNet((1, 6, 6), [(2, 3)], [4], 3, rng=np.random.default_rng(0), bn="noisy")
    ConvNet((1, 6, 6), [(2, 3)], [4], 3, rng=np.random.default_rng(0), bn="before")  # the same net otherwise builds


def test_stack_refuses_noisy():
    models = [MLP(6, [5], 3, rng=np.random.default_rng(s), bn=bn) for s, bn in enumerate(("before", "noisy"))]
    with pytest.raises(ValueError, match="noisy BN"):
        Stack(models)
    Stack(models[:1])  # the other arm stacks


def test_folded_layers_refuses_noisy():
    with pytest.raises(ValueError, match="cannot fold noisy BN"):
        MLP(6, [5], 3, rng=np.random.default_rng(0), bn="noisy").folded_layers()
    assert len(MLP(6, [5], 3, rng=np.random.default_rng(0), bn="before").folded_layers()) == 2
