"""Tests for bncli/core/conv.py: convolution, pooling and flattening against direct loops, float64 gradient checks,
dtype, initialization, argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from bncli.core.conv import AvgPool2d, Conv2d, Flatten, MaxPool2d, col2im, init_conv, windows

from .gradcheck import numerical_grad, rel_error

TOL = 1e-7


# -- direct loops, the definitions the layers are checked against ------------------------------------------------
def naive_conv(x, W, b, stride, padding):
    n, h, w, c_in = x.shape
    kh, kw, _, c_out = W.shape
    xp = np.zeros((n, h + 2 * padding, w + 2 * padding, c_in))
    xp[:, padding:padding + h, padding:padding + w] = x
    ho, wo = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    y = np.zeros((n, ho, wo, c_out))
    for i in range(n):
        for r in range(ho):
            for s in range(wo):
                for o in range(c_out):
                    total = 0.0 if b is None else b[o]
                    for p in range(kh):
                        for q in range(kw):
                            for c in range(c_in):
                                total += xp[i, r * stride + p, s * stride + q, c] * W[p, q, c, o]
                    y[i, r, s, o] = total
    return y


def naive_pool(x, k, stride, reduce):
    n, h, w, c = x.shape
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    y = np.zeros((n, ho, wo, c))
    for i in range(n):
        for r in range(ho):
            for s in range(wo):
                for ch in range(c):
                    y[i, r, s, ch] = reduce(x[i, r * stride:r * stride + k, s * stride:s * stride + k, ch])
    return y


def _conv_problem(seed, shape=(2, 5, 4, 2), kernel=(3, 2), c_out=3, bias=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    W = rng.standard_normal((*kernel, shape[3], c_out))
    b = rng.standard_normal(c_out) if bias else None
    return rng, x, W, b


def _distinct(rng, shape):
    """Values 0.1 apart in random order: no ties, and a perturbation of 1e-6 cannot change any window's maximum."""
    return rng.permutation(np.arange(np.prod(shape)) * 0.1).reshape(shape)


# -- convolution -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stride, padding, kernel, shape", [
    (1, 0, (3, 3), (2, 5, 6, 2)),
    (1, 1, (3, 2), (2, 4, 5, 3)),
    (2, 0, (3, 3), (1, 7, 6, 2)),  # (7 - 3) // 2 + 1 = 3 rows; the last column of 6 is reached by no window
    (2, 1, (2, 3), (2, 5, 4, 2)),
    (3, 2, (1, 1), (1, 4, 5, 2)),  # 1x1 kernel: some outputs read padding only
    (1, 0, (5, 4), (1, 5, 4, 2)),  # kernel as large as the input: one output position
])
def test_conv_forward_equals_direct_loops(stride, padding, kernel, shape):
    _, x, W, b = _conv_problem(0, shape, kernel)
    y = Conv2d(W, b, stride=stride, padding=padding).forward(x)
    expected = naive_conv(x, W, b, stride, padding)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_conv_forward_without_bias_and_on_a_strided_view():
    """The model feeds its (N, C, H, W) input as a transposed, non-contiguous view."""
    rng, _, W, _ = _conv_problem(1)
    nchw = rng.standard_normal((2, 2, 5, 4))
    x = nchw.transpose(0, 2, 3, 1)
    assert not x.flags.c_contiguous
    layer = Conv2d(W, stride=2, padding=1)
    assert set(layer.params) == set(layer.grads) == {"W"}
    np.testing.assert_allclose(layer.forward(x), naive_conv(x, W, None, 2, 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("stride, padding", [(1, 0), (1, 1), (2, 0), (2, 1)])
def test_conv_gradcheck(stride, padding, bias):
    rng, x, W, b = _conv_problem(2, kernel=(3, 2), bias=bias)
    layer = Conv2d(W, b, stride=stride, padding=padding)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    dy0 = dy.copy()
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dy, dy0)  # backward must not modify the upstream gradient
    assert dx.shape == x.shape

    def loss():
        return np.sum(layer.forward(x) * dy)

    assert rel_error(dx, numerical_grad(loss, x)) < TOL
    assert rel_error(layer.grads["W"], numerical_grad(loss, layer.params["W"])) < TOL
    if bias:
        assert rel_error(layer.grads["b"], numerical_grad(loss, layer.params["b"])) < TOL
    assert np.max(np.abs(dx)) > 0.1  # not vacuous


def test_conv_need_dx_false_returns_none_and_fills_grads_in_place():
    rng, x, W, b = _conv_problem(3)
    layer = Conv2d(W, b, padding=1, need_dx=False)
    gW, gb = layer.grads["W"], layer.grads["b"]
    dy = rng.standard_normal(layer.forward(x).shape)
    assert layer.backward(dy) is None
    assert layer.grads["W"] is gW and layer.grads["b"] is gb  # filled, not rebound
    reference = Conv2d(W.copy(), b.copy(), padding=1)
    reference.forward(x)
    reference.backward(dy)
    np.testing.assert_allclose(gW, reference.grads["W"], rtol=1e-13)
    np.testing.assert_allclose(gb, dy.sum(axis=(0, 1, 2)), rtol=1e-13)
    assert np.max(np.abs(gW)) > 0.1


def test_conv_grads_reach_views_into_a_flat_buffer():
    """A model re-homes parameters and gradients into flat buffers: backward must write into those views, and
    forward must read the parameters through ``params`` each call."""
    rng, x, W, b = _conv_problem(4)
    layer = Conv2d(W.copy(), b.copy())
    flat_p, flat_g = np.zeros(W.size + b.size), np.zeros(W.size + b.size)
    layer.params["W"] = flat_p[:W.size].reshape(W.shape)
    layer.params["b"] = flat_p[W.size:]
    layer.grads["W"] = flat_g[:W.size].reshape(W.shape)
    layer.grads["b"] = flat_g[W.size:]
    flat_p[:W.size], flat_p[W.size:] = W.reshape(-1), b
    dy = rng.standard_normal(layer.forward(x).shape)
    layer.backward(dy)
    reference = Conv2d(W, b)
    np.testing.assert_allclose(layer.forward(x), reference.forward(x), rtol=1e-13)
    reference.backward(dy)
    np.testing.assert_allclose(flat_g[:W.size], reference.grads["W"].reshape(-1), rtol=1e-13)
    np.testing.assert_allclose(flat_g[W.size:], reference.grads["b"], rtol=1e-13)


def test_conv_grad_into_a_non_contiguous_array():
    rng, x, W, b = _conv_problem(5)
    layer = Conv2d(W, b)
    store = np.zeros((*W.shape[:3], 2 * W.shape[3]))
    layer.grads["W"] = store[..., ::2]  # not contiguous: its matrix reshape would be a copy
    dy = rng.standard_normal(layer.forward(x).shape)
    layer.backward(dy)
    reference = Conv2d(W, b)
    reference.forward(x)
    reference.backward(dy)
    np.testing.assert_allclose(store[..., ::2], reference.grads["W"], rtol=1e-13)
    assert np.max(np.abs(store[..., ::2])) > 0.1


# -- pooling -----------------------------------------------------------------------------------------------------
POOLS = {"max": (MaxPool2d, np.max), "avg": (AvgPool2d, np.mean)}
POOL_CASES = [  # kernel, stride, shape
    (2, None, (2, 4, 6, 3)),  # non-overlapping, divisible: the fast path
    (2, None, (2, 5, 7, 2)),  # non-overlapping with a remainder row and column
    (3, 1, (1, 5, 4, 2)),  # overlapping
    (3, 2, (2, 7, 5, 2)),  # overlapping, odd size
    (1, 2, (1, 5, 5, 1)),
]


@pytest.mark.parametrize("kernel, stride, shape", POOL_CASES)
@pytest.mark.parametrize("kind", POOLS)
def test_pool_forward_equals_direct_loops(kind, kernel, stride, shape):
    cls, reduce = POOLS[kind]
    x = np.random.default_rng(6).standard_normal(shape)
    y = cls(kernel, stride).forward(x)
    expected = naive_pool(x, kernel, kernel if stride is None else stride, reduce)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("kernel, stride, shape", POOL_CASES)
@pytest.mark.parametrize("kind", POOLS)
def test_pool_gradcheck(kind, kernel, stride, shape):
    rng = np.random.default_rng(7)
    x = _distinct(rng, shape)
    layer = POOLS[kind][0](kernel, stride)
    dy = rng.standard_normal(layer.forward(x).shape)
    dy0 = dy.copy()
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dy, dy0)
    assert dx.shape == x.shape and dx.flags.writeable  # the layer below may write into it (in-place activation)

    def loss():
        return np.sum(layer.forward(x) * dy)

    assert rel_error(dx, numerical_grad(loss, x)) < TOL
    # each window passes its whole gradient down, however windows overlap
    np.testing.assert_allclose(dx.sum(), dy.sum(), rtol=1e-12)


@pytest.mark.parametrize("stride", [None, 1])
def test_max_pool_ties_route_to_the_first_entry_only(stride):
    """Constant input (ReLU's zeros): every window's maximum is tied; the gradient goes once, to its top-left
    entry, and the total is preserved (routing to every tied entry would multiply it by k*k)."""
    rng = np.random.default_rng(8)
    x = np.zeros((2, 4, 6, 3))
    layer = MaxPool2d(2, stride)
    dy = rng.standard_normal(layer.forward(x).shape)
    dx = layer.backward(dy)
    s = 2 if stride is None else stride
    expected = np.zeros_like(x)
    for r in range(dy.shape[1]):
        for c in range(dy.shape[2]):
            expected[:, r * s, c * s] += dy[:, r, c]
    np.testing.assert_allclose(dx, expected, rtol=1e-14)
    np.testing.assert_allclose(dx.sum(), dy.sum(), rtol=1e-12)
    if stride is None:  # non-overlapping: exactly one non-zero entry per window
        assert np.count_nonzero(dx) == dy.size


def test_max_pool_tie_inside_a_window_picks_row_major_first():
    x = np.array([[1.0, 5.0], [5.0, 2.0]]).reshape(1, 2, 2, 1)
    layer = MaxPool2d(2)
    assert layer.forward(x).item() == 5.0
    dx = layer.backward(np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(dx.reshape(2, 2), [[0.0, 1.0], [0.0, 0.0]])


@pytest.mark.parametrize("kind", POOLS)
@pytest.mark.parametrize("shape", [(2, 4, 6, 3), (1, 6, 2, 2)])
def test_pool_fast_path_equals_general_path(kind, shape):
    rng = np.random.default_rng(9)
    x = rng.standard_normal(shape)
    x[0, :2, :2, 0] = 0.0  # a tied window too
    fast, general = POOLS[kind][0](2), POOLS[kind][0](2)
    general.fast = False
    y = fast.forward(x)
    np.testing.assert_array_equal(y, general.forward(x))
    dy = rng.standard_normal(y.shape)
    # each entry lies in one window and receives one term either way: the same numbers, bit for bit
    np.testing.assert_array_equal(fast.backward(dy), general.backward(dy))


@pytest.mark.parametrize("kh, kw, stride, h, w", [
    (2, 2, 2, 6, 4),  # the windows tile the input: the fast path
    (2, 3, 2, 4, 6),  # stride == kh but not kw, and W = W'*kw: yet windows overlap along W (not the fast path)
    (3, 3, 2, 7, 5),  # overlapping
    (2, 2, 2, 5, 4),  # a remainder row no window reaches
])
def test_col2im_is_the_adjoint_of_windows(kh, kw, stride, h, w):
    """<windows(x), g> == <x, col2im(g)> on both paths: col2im is the transpose of taking windows."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, h, w, 3))
    win = windows(x, kh, kw, stride).transpose(0, 1, 2, 4, 5, 3)  # (N, H', W', kh, kw, C)
    g = rng.standard_normal(win.shape)
    for fast in (True, False):
        np.testing.assert_allclose(np.sum(x * col2im(g, x.shape, stride, fast)), np.sum(win * g), rtol=1e-12)


def test_conv_gradcheck_when_windows_tile_the_input():
    """stride == kernel and sizes divisible: the backward takes col2im's fast path."""
    rng, x, W, b = _conv_problem(17, shape=(2, 4, 6, 2), kernel=(2, 2))
    layer = Conv2d(W, b, stride=2)
    dy = rng.standard_normal(layer.forward(x).shape)
    dx = layer.backward(dy)

    def loss():
        return np.sum(layer.forward(x) * dy)

    assert rel_error(dx, numerical_grad(loss, x)) < TOL
    assert rel_error(layer.grads["W"], numerical_grad(loss, layer.params["W"])) < TOL


# -- Flatten -----------------------------------------------------------------------------------------------------
def test_flatten_round_trip_and_gradient():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 2, 4, 5))
    layer = Flatten()
    y = layer.forward(x)
    assert y.shape == (3, 40) and np.shares_memory(y, x)  # a view of a contiguous input
    np.testing.assert_array_equal(y[1], x[1].reshape(-1))  # each example's (H, W, C) values in order
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    assert dx.shape == x.shape

    def loss():
        return np.sum(layer.forward(x) * dy)

    assert rel_error(dx, numerical_grad(loss, x)) < TOL


# -- dtype -------------------------------------------------------------------------------------------------------
def test_float32_stays_float32():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 6, 6, 2)).astype(np.float32)
    layers = [Conv2d(init_conv(rng, 3, 3, 2, 4), np.zeros(4, np.float32), padding=1),
              MaxPool2d(2), AvgPool2d(2, 1), Flatten()]
    h = x
    for layer in layers:
        h = layer.forward(h)
        assert h.dtype == np.float32, type(layer).__name__
    d = rng.standard_normal(h.shape).astype(np.float32)
    for layer in reversed(layers):
        d = layer.backward(d)
        assert d.dtype == np.float32, type(layer).__name__
    for k, g in layers[0].grads.items():
        assert g.dtype == np.float32, k
    assert d.shape == x.shape


# -- initialization ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["he", "glorot", "normal"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_conv_shape_and_dtype(scheme, dtype):
    W = init_conv(np.random.default_rng(13), 3, 2, 4, 5, scheme, dtype=dtype)
    assert W.shape == (3, 2, 4, 5) and W.dtype == dtype and W.flags.c_contiguous
    assert np.all(np.isfinite(W)) and np.std(W) > 0


def test_init_conv_he_std_uses_fan_in_kh_kw_cin():
    W = init_conv(np.random.default_rng(14), 3, 3, 16, 64, "he", dtype=np.float64)
    # 9216 draws: the sample std is within ~0.7% (one standard error) of the true std; 5% is > 6 standard errors
    assert abs(W.std() / np.sqrt(2.0 / (3 * 3 * 16)) - 1) < 0.05
    assert abs(W.mean()) < 0.05 * W.std()


def test_init_conv_glorot_bound_uses_fan_out_kh_kw_cout():
    W = init_conv(np.random.default_rng(15), 3, 3, 4, 32, "glorot", dtype=np.float64)
    bound = np.sqrt(6.0 / (3 * 3 * 4 + 3 * 3 * 32))
    # 1152 uniform draws: their largest magnitude is within 1% of the bound; fan_out = c_out would give a bound 2x
    # as large, and draws far outside this one
    assert bound * 0.99 < np.max(np.abs(W)) <= bound


def test_init_conv_normal_std_and_reproducible():
    W = init_conv(np.random.default_rng(16), 3, 3, 8, 32, "normal", std=0.2, dtype=np.float64)
    assert abs(W.std() / 0.2 - 1) < 0.05
    np.testing.assert_array_equal(W, init_conv(np.random.default_rng(16), 3, 3, 8, 32, "normal", std=0.2,
                                               dtype=np.float64))


def test_init_conv_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown init"):
        init_conv(np.random.default_rng(0), 3, 3, 2, 2, "xavier")
    with pytest.raises(ValueError, match="kh"):
        init_conv(np.random.default_rng(0), 0, 3, 2, 2)


# -- argument checks ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("W, kw, match", [
    (np.zeros((0, 3, 2, 2)), {}, "kernel_height"),
    (np.zeros((3, 0, 2, 2)), {}, "kernel_width"),
    (np.zeros((3, 3, 2, 2)), {"stride": 0}, "stride"),
    (np.zeros((3, 3, 2, 2)), {"padding": -1}, "padding"),
    (np.zeros((3, 3, 2)), {}, "kh, kw, C_in, C_out"),
    (np.zeros((3, 3, 2, 2)), {"b": np.zeros(3)}, "bias"),
])
def test_conv_bad_arguments_raise(W, kw, match):
    with pytest.raises(ValueError, match=match):
        Conv2d(W, **kw)


@pytest.mark.parametrize("cls", [MaxPool2d, AvgPool2d])
def test_pool_bad_arguments_raise(cls):
    with pytest.raises(ValueError, match="kernel"):
        cls(0)
    with pytest.raises(ValueError, match="stride"):
        cls(2, 0)


def test_window_larger_than_input_raises_with_the_sizes():
    x = np.zeros((1, 3, 4, 2))
    with pytest.raises(ValueError, match=r"5x3 window is larger than the 3x4 input$"):
        Conv2d(np.zeros((5, 3, 2, 1)), padding=0).forward(x)
    with pytest.raises(ValueError, match=r"6x3 window is larger than the 3x4 input \(padded by 1 to 5x6\)"):
        Conv2d(np.zeros((6, 3, 2, 1)), padding=1).forward(x)
    Conv2d(np.zeros((5, 3, 2, 1)), padding=1).forward(x)  # fits once padded
    with pytest.raises(ValueError, match="4x4 window is larger than the 3x4 input"):
        MaxPool2d(4).forward(x)
    with pytest.raises(ValueError, match=r"expected \(N, H, W, 3\) images, got shape \(1, 3, 4, 2\)"):
        Conv2d(np.zeros((1, 1, 3, 1))).forward(x)


@pytest.mark.parametrize("stride,shape", [(1, (2, 7, 6, 3)), (2, (2, 9, 8, 3)), (3, (1, 8, 8, 2))])
def test_dx_by_offsets_is_col2im_of_the_column_gradient(stride, shape):
    """The fast input gradient (one small product per kernel offset) against the textbook col2im(dy @ W.T)."""
    from bncli.core.conv import col2im, dx_by_offsets

    rng = np.random.default_rng(3)
    W = rng.standard_normal((3, 2, shape[3], 4))
    ho, wo = (shape[1] - 3) // stride + 1, (shape[2] - 2) // stride + 1
    dy2d = rng.standard_normal((shape[0] * ho * wo, 4))
    textbook = col2im((dy2d @ W.reshape(-1, 4).T).reshape(shape[0], ho, wo, 3, 2, shape[3]), shape, stride,
                      fast=False)
    np.testing.assert_allclose(dx_by_offsets(dy2d, W, (shape[0], ho, wo), shape, stride), textbook, rtol=1e-12,
                               atol=1e-12)
