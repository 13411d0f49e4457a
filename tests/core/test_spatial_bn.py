"""Tests for SpatialBatchNorm (bncli/core/batchnorm.py section 5): BN of channels-last images per channel over
(N, H, W) or per activation, as BatchNorm on a 2-D view: hand-computed numbers, equality with BatchNorm, gradient
checks, running statistics over N*H*W values, batches of one, dtype."""

from __future__ import annotations

import numpy as np
import pytest

from bncli.core.batchnorm import BatchNorm, BatchOfOneError, SpatialBatchNorm, update_running_stacked

from .gradcheck import numerical_grad, rel_error

EPS = 1e-5
BN_TOL = 1e-7
FUSED = [True, False]


def _images(seed, shape):
    """Channels-last images whose channels differ in mean and scale, and whose positions differ in mean too."""
    rng = np.random.default_rng(seed)
    _, h, w, c = shape
    position = rng.standard_normal((1, h, w, 1)) * 3.0
    return rng, rng.standard_normal(shape) * rng.uniform(0.5, 4.0, c) + rng.uniform(-5, 5, c) + position


def _set_affine(layer, rng):
    d = layer.params["gamma"].size
    layer.params["gamma"][...] = rng.uniform(0.5, 2.0, d) * rng.choice([-1.0, 1.0], d)  # not 1, some negative
    layer.params["beta"][...] = rng.standard_normal(d)  # not 0


# -- hand-computed -----------------------------------------------------------------------------------------------
# N=2 images of H=1 x W=2 pixels, C=2 channels; x[n, 0, w] = [channel 0, channel 1]
HAND_X = np.array([[[[1.0, 2.0], [1.0, 6.0]]],
                   [[[3.0, 2.0], [3.0, 6.0]]]])


@pytest.mark.parametrize("fused", FUSED)
def test_hand_computed_example(fused):
    # channel 0 holds 1, 1, 3, 3: mean 2, biased var ((-1)^2 * 2 + 1^2 * 2) / 4 = 1, unbiased 4/3 (n = N*H*W = 4)
    # channel 1 holds 2, 6, 2, 6: mean 4, biased var (2^2 * 4) / 4 = 4, unbiased 16/3
    layer = SpatialBatchNorm(2, eps=0.0, dtype=np.float64, fused=fused)
    layer.params["gamma"][...] = [2.0, 0.5]
    layer.params["beta"][...] = [1.0, -1.0]
    y = layer.forward(HAND_X.copy(), "train")
    # channel 0: 2 * (x - 2) / sqrt(1) + 1   -> x = 1: -1;   x = 3: 3
    # channel 1: 0.5 * (x - 4) / sqrt(4) - 1 -> x = 2: -1.5; x = 6: -0.5
    expected = np.array([[[[-1.0, -1.5], [-1.0, -0.5]]],
                         [[[3.0, -1.5], [3.0, -0.5]]]])
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-15)
    # running mean: 0.9 * 0 + 0.1 * [2, 4] = [0.2, 0.4]
    # running var:  0.9 * 1 + 0.1 * [4/3, 16/3] = [0.9 + 0.4/3, 0.9 + 1.6/3] = [31/30, 43/30]
    np.testing.assert_allclose(layer.buffers["running_mean"], [0.2, 0.4], rtol=1e-14)
    np.testing.assert_allclose(layer.buffers["running_var"], [31 / 30, 43 / 30], rtol=1e-14)
    np.testing.assert_allclose(layer.batch_stats[0], [2.0, 4.0], rtol=1e-14)
    np.testing.assert_allclose(layer.batch_stats[1], [1.0, 4.0], rtol=1e-14)  # biased, as BatchNorm keeps them
    assert layer.count == 4


# -- the same math as BatchNorm ----------------------------------------------------------------------------------
def _reference(dim, fused, dtype=np.float64, **kw):
    """A BatchNorm on its own, with the running update its owner does on the fast path."""
    state = (np.zeros((2, dim), dtype), np.zeros((2, dim), dtype)) if fused else None
    bn = BatchNorm(dim, dtype=dtype, **(dict(fused=True, state=state, **kw) if fused else kw))

    def forward(x, mode):
        y = bn.forward(x, mode)
        if mode == "train" and fused:
            update_running_stacked(*state, x.shape[0], bn.decay)
        return y

    return bn, forward


@pytest.mark.parametrize("fused", FUSED)
def test_per_channel_equals_batchnorm_on_the_pixels_of_each_channel(fused):
    shape = (3, 4, 2, 3)
    rng, _ = _images(20, shape)
    layer = SpatialBatchNorm(3, dtype=np.float64, fused=fused, decay=0.8)
    bn, bn_forward = _reference(3, fused, decay=0.8)
    _set_affine(layer, rng)
    bn.params["gamma"][...], bn.params["beta"][...] = layer.params["gamma"], layer.params["beta"]
    for step in range(3):
        _, x = _images(21 + step, shape)
        # every channel's N*H*W values as one column, gathered channel by channel (not through the layer's view)
        pixels = x.transpose(3, 0, 1, 2).reshape(3, -1).T
        dy = rng.standard_normal(shape)
        y = layer.forward(x, "train")
        dx = layer.backward(dy)
        y_ref = bn_forward(pixels, "train")
        dx_ref = bn.backward(dy.transpose(3, 0, 1, 2).reshape(3, -1).T.copy())
        np.testing.assert_allclose(y.transpose(3, 0, 1, 2).reshape(3, -1).T, y_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx.transpose(3, 0, 1, 2).reshape(3, -1).T, dx_ref, rtol=1e-12, atol=1e-12)
        for k in ("gamma", "beta"):
            np.testing.assert_allclose(layer.grads[k], bn.grads[k], rtol=1e-12, atol=1e-12)
        for k in ("running_mean", "running_var"):
            np.testing.assert_allclose(layer.buffers[k], bn.buffers[k], rtol=1e-12)
        np.testing.assert_allclose(layer.batch_stats[0], x.mean(axis=(0, 1, 2)), rtol=1e-12)
        np.testing.assert_allclose(layer.batch_stats[1], x.var(axis=(0, 1, 2)), rtol=1e-12)


def test_layer_exposes_the_wrapped_layers_arrays():
    layer = SpatialBatchNorm(4, dtype=np.float64)
    assert layer.params is layer.bn.params and layer.grads is layer.bn.grads and layer.buffers is layer.bn.buffers
    assert set(layer.params) == set(layer.grads) == {"gamma", "beta"}
    assert np.shares_memory(layer.buffers["running_var"], layer.state[0])  # the fused layer's own statistics
    assert layer.fused and layer.decay == 0.9 and layer.eps == EPS


@pytest.mark.parametrize("per, shape", [("channel", (3, 4, 2, 3)), ("activation", (5, 2, 3, 2)),
                                        ("channel", (6, 4)), ("activation", (6, 4))])
def test_fused_equals_textbook(per, shape):
    rng = np.random.default_rng(30)
    spatial = shape[1:3] if len(shape) == 4 else None
    layers = [SpatialBatchNorm(shape[-1], dtype=np.float64, fused=f, per=per, spatial=spatial) for f in FUSED]
    for layer in layers:
        layer.params["gamma"][...] = np.linspace(0.5, 2.0, layer.params["gamma"].size)
        layer.params["beta"][...] = np.linspace(-1.0, 1.0, layer.params["beta"].size)
    for _ in range(3):
        x = rng.standard_normal(shape) * 3 + 1
        dy = rng.standard_normal(shape)
        y = [layer.forward(x.copy(), "train") for layer in layers]
        dx = [layer.backward(dy.copy()) for layer in layers]
        np.testing.assert_allclose(y[0], y[1], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx[0], dx[1], rtol=1e-12, atol=1e-12)
        for k in ("gamma", "beta"):
            np.testing.assert_allclose(layers[0].grads[k], layers[1].grads[k], rtol=1e-12, atol=1e-12)
        for k in ("running_mean", "running_var"):
            np.testing.assert_allclose(layers[0].buffers[k], layers[1].buffers[k], rtol=1e-12)
    x = rng.standard_normal(shape)
    for mode in ("batch", "eval"):
        np.testing.assert_allclose(layers[0].forward(x, mode), layers[1].forward(x, mode), rtol=1e-12, atol=1e-12)


# -- gradient checks ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("per, shape", [("channel", (2, 3, 2, 2)), ("activation", (4, 2, 3, 2)),
                                        ("channel", (5, 3)), ("activation", (5, 3))])
def test_gradcheck_float64(per, shape, fused):
    rng = np.random.default_rng(40)
    x = rng.standard_normal(shape) * 2 + 3
    spatial = shape[1:3] if len(shape) == 4 else None
    layer = SpatialBatchNorm(shape[-1], dtype=np.float64, fused=fused, per=per, spatial=spatial)
    _set_affine(layer, rng)
    dy = rng.standard_normal(shape)
    x0, dy0 = x.copy(), dy.copy()
    layer.forward(x, "train")
    dx = layer.backward(dy)
    np.testing.assert_array_equal(x, x0)  # neither the input
    np.testing.assert_array_equal(dy, dy0)  # nor the upstream gradient is overwritten
    assert dx.shape == x.shape

    def loss():
        return np.sum(layer.forward(x, "train") * dy)

    ndx = numerical_grad(loss, x)
    assert rel_error(dx, ndx) < BN_TOL
    assert rel_error(layer.grads["gamma"], numerical_grad(loss, layer.params["gamma"])) < BN_TOL
    assert rel_error(layer.grads["beta"], numerical_grad(loss, layer.params["beta"])) < BN_TOL
    assert np.max(np.abs(ndx)) > 1e-2  # not vacuous


# -- per channel vs per activation -------------------------------------------------------------------------------
def test_per_channel_pools_positions_per_activation_does_not():
    n, h, w, c = shape = (4, 2, 3, 2)
    rng, x = _images(50, shape)
    per_channel = SpatialBatchNorm(c, dtype=np.float64)
    per_activation = SpatialBatchNorm(c, dtype=np.float64, per="activation", spatial=(h, w))
    assert per_channel.params["gamma"].size == c and per_activation.params["gamma"].size == h * w * c
    y_c, y_a = per_channel.forward(x, "batch"), per_activation.forward(x, "batch")
    assert np.max(np.abs(y_c - y_a)) > 0.1
    # Shuffle all N*H*W pixels of the batch across images and positions (each pixel keeps its C values). Per
    # channel the statistics are over the same multiset of values, so each pixel's output moves with it; per
    # activation each position's statistics change, so the outputs do not just move.
    perm = rng.permutation(n * h * w)
    assert np.any(perm % (h * w) != np.arange(n * h * w) % (h * w))  # pixels change position
    shuffled = x.reshape(-1, c)[perm].reshape(shape)
    moved_c = y_c.reshape(-1, c)[perm].reshape(shape)
    np.testing.assert_allclose(per_channel.forward(shuffled, "batch"), moved_c, rtol=1e-12, atol=1e-12)
    moved_a = y_a.reshape(-1, c)[perm].reshape(shape)
    assert np.max(np.abs(per_activation.forward(shuffled, "batch") - moved_a)) > 0.1
    # and per activation is what it says: each (h, w, c) unit normalized over the N images alone
    expected_a = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + EPS)
    np.testing.assert_allclose(y_a, expected_a, rtol=1e-12, atol=1e-12)
    assert per_activation.count == n and per_channel.count == n * h * w


# -- batch of one ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fused", FUSED)
def test_one_image_with_several_pixels_trains(fused):
    rng, x = _images(60, (1, 3, 3, 2))
    layer = SpatialBatchNorm(2, dtype=np.float64, fused=fused)
    y = layer.forward(x, "train")
    dx = layer.backward(rng.standard_normal(x.shape))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    assert np.all(np.isfinite(layer.grads["gamma"])) and np.max(np.abs(layer.grads["gamma"])) > 0
    # running variance: 0.9 * 1 + 0.1 * biased var * 9/8 (n = N*H*W = 9 values per channel)
    np.testing.assert_allclose(layer.buffers["running_var"], 0.9 + 0.1 * x.var(axis=(0, 1, 2)) * 9 / 8, rtol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_mean"], 0.1 * x.mean(axis=(0, 1, 2)), rtol=1e-12)
    assert layer.count == 9


@pytest.mark.parametrize("fused", FUSED)
def test_one_value_per_channel_raises_in_training(fused):
    layer = SpatialBatchNorm(3, dtype=np.float64, fused=fused)
    before = {k: v.copy() for k, v in layer.buffers.items()}
    with pytest.raises(BatchOfOneError, match=r"got 1 value per channel: N\*H\*W = 1\*1\*1"):
        layer.forward(np.ones((1, 1, 1, 3)), "train")
    with pytest.raises(BatchOfOneError, match=r"got 1 value per channel: N = 1\)"):
        layer.forward(np.ones((1, 3)), "train")
    for k, v in before.items():  # nothing was half-updated
        np.testing.assert_array_equal(layer.buffers[k], v)


@pytest.mark.parametrize("fused", FUSED)
def test_one_image_per_activation_raises_in_training(fused):
    layer = SpatialBatchNorm(2, dtype=np.float64, fused=fused, per="activation", spatial=(3, 3))
    with pytest.raises(BatchOfOneError, match=r"2 values per activation \(got 1: the batch has N = 1 sample\)"):
        layer.forward(np.ones((1, 3, 3, 2)), "train")


@pytest.mark.parametrize("fused", FUSED)
def test_eval_and_batch_modes_with_one_value_per_channel(fused):
    rng = np.random.default_rng(61)
    layer = SpatialBatchNorm(3, dtype=np.float64, fused=fused)
    _set_affine(layer, rng)
    layer.buffers["running_mean"][...] = rng.standard_normal(3)
    layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, 3)
    before = {k: v.copy() for k, v in layer.buffers.items()}
    x = rng.standard_normal((1, 1, 1, 3))
    b, p = layer.buffers, layer.params
    expected = (x - b["running_mean"]) / np.sqrt(b["running_var"] + EPS) * p["gamma"] + p["beta"]
    np.testing.assert_allclose(layer.forward(x, "eval"), expected, rtol=1e-12, atol=1e-12)
    # batch statistics of a single value collapse to beta (C5), as BatchNorm's do
    np.testing.assert_array_equal(layer.forward(x, "batch"), np.broadcast_to(p["beta"], x.shape))
    for k, v in before.items():
        np.testing.assert_array_equal(layer.buffers[k], v)


# -- running statistics over N*H*W values ------------------------------------------------------------------------
@pytest.mark.parametrize("fused", FUSED)
def test_running_variance_is_unbiased_over_n_h_w_values(fused):
    _, x = _images(70, (2, 2, 2, 3))
    layer = SpatialBatchNorm(3, dtype=np.float64, fused=fused, decay=0.5)
    layer.forward(x, "train")
    unbiased = x.reshape(-1, 3).var(axis=0, ddof=1)  # over the N*H*W = 8 values: factor 8/7
    with_n_images = x.reshape(-1, 3).var(axis=0) * 2 / 1  # what n = N = 2 would give: factor 2
    assert np.min(np.abs(unbiased - with_n_images)) > 0.1  # the two differ: this test can tell them apart
    np.testing.assert_allclose(layer.buffers["running_var"], 0.5 + 0.5 * unbiased, rtol=1e-12)
    # per activation the same rule gives n = N
    per_activation = SpatialBatchNorm(3, dtype=np.float64, fused=fused, decay=0.5, per="activation", spatial=(2, 2))
    per_activation.forward(x, "train")
    np.testing.assert_allclose(per_activation.buffers["running_var"], 0.5 + 0.5 * x.var(axis=0, ddof=1).reshape(-1),
                               rtol=1e-12)


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("mode", ["batch", "eval"])
def test_batch_and_eval_modes_leave_buffers_untouched(mode, fused):
    _, x = _images(71, (2, 3, 3, 2))
    layer = SpatialBatchNorm(2, dtype=np.float64, fused=fused)
    layer.forward(x, "train")
    before = {k: v.copy() for k, v in layer.buffers.items()}
    layer.forward(x * 2 + 1, mode)
    for k, v in before.items():
        np.testing.assert_array_equal(layer.buffers[k], v)


# -- layouts, dtype, arguments -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fused", FUSED)
def test_non_contiguous_input_gives_the_same_numbers(fused):
    rng, x = _images(80, (3, 2, 4, 2))
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    view = nchw.transpose(0, 2, 3, 1)  # what a model's first layer sees: not contiguous
    assert not view.flags.c_contiguous
    a, b = (SpatialBatchNorm(2, dtype=np.float64, fused=fused) for _ in range(2))
    dy = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(a.forward(view, "train"), b.forward(x, "train"))
    np.testing.assert_array_equal(a.backward(dy.transpose(0, 3, 1, 2).transpose(0, 2, 3, 1)), b.backward(dy))
    np.testing.assert_array_equal(nchw.transpose(0, 2, 3, 1), x)  # the input is unchanged


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("per", ["channel", "activation"])
def test_float32_stays_float32(per, fused):
    rng, x = _images(90, (3, 2, 2, 4))
    x = x.astype(np.float32)
    layer = SpatialBatchNorm(4, fused=fused, per=per, spatial=(2, 2))
    y = layer.forward(x, "train")
    dx = layer.backward(rng.standard_normal(x.shape).astype(np.float32))
    assert y.dtype == dx.dtype == np.float32
    for d in (layer.params, layer.grads, layer.buffers):
        assert all(v.dtype == np.float32 for v in d.values())
    assert layer.forward(x, "eval").dtype == np.float32


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="granularity"):
        SpatialBatchNorm(3, per="pixel")
    with pytest.raises(ValueError, match="channels"):
        SpatialBatchNorm(0)
    with pytest.raises(ValueError, match="decay"):
        SpatialBatchNorm(3, decay=1.0)
    layer = SpatialBatchNorm(3)
    with pytest.raises(ValueError, match=r"\(N, \.\.\., 3\)"):
        layer.forward(np.ones((2, 2, 2, 4), np.float32))
    with pytest.raises(ValueError, match="mode"):
        layer.forward(np.ones((2, 2, 2, 3), np.float32), "test")
    with pytest.raises(ValueError, match=r"\(N, 2, 2, 3\)"):
        SpatialBatchNorm(3, per="activation", spatial=(2, 2)).forward(np.ones((2, 2, 3, 3), np.float32))
