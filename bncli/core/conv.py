"""Convolution, pooling and flattening for images: each forward next to its backward.

Conventions (stated once, used everywhere):

* Images inside the network are channels-last, (N, H, W, C). The convolution is one GEMM whose rows are output
  positions and whose columns are output channels, so its (N*H'*W', C_out) product *is* the (N, H', W', C_out)
  output, without a transpose; and BN per channel is then BN on the (N*H*W, C) view of that array, without a copy
  (batchnorm.py section 5). A model that takes (N, C, H, W) input converts it once, with a transpose view.
* Weights are (kh, kw, C_in, C_out) ("HWIO"): reshaped to (kh*kw*C_in, C_out) they are the GEMM's right-hand
  matrix, so the im2col columns are ordered (kh, kw, C_in) to match. As in every deep-learning framework the
  "convolution" is a cross-correlation (the kernel is not flipped).
* Output size per spatial axis: H' = (H + 2*padding - kh) // stride + 1. Padding is zeros; rows or columns that
  no window reaches (when the stride does not divide) get a zero gradient.
* Windows are views (``sliding_window_view``); the backward passes add each window's gradient back with one
  strided add per kernel offset (``col2im``), kh*kw vectorised adds rather than a loop over pixels, correct for
  overlapping windows (stride < kernel).
* Max pooling routes each window's gradient to one entry, its first maximum in row-major window order (as PyTorch
  does), so tied maxima (common after ReLU) do not multiply the gradient.
* The dtype follows the arrays (float32 by default, float64 for gradient checks); nothing here draws random
  numbers except ``init_conv``, from the Generator it is given.

Every layer has ``params`` and ``grads`` (same keys) and ``buffers`` (empty here), caches in ``forward`` what
``backward`` needs, and writes its parameter gradients into ``grads`` in place (they may be views into a model's
flat gradient buffer).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .batchnorm import column_sum
from .layers import init_weights


def _check_positive(**values):
    for name, v in values.items():
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")


def _check_fits(shape, kh, kw, padding=0):
    h, w = shape[1] + 2 * padding, shape[2] + 2 * padding
    if kh > h or kw > w:
        padded = f" (padded by {padding} to {h}x{w})" if padding else ""
        raise ValueError(f"a {kh}x{kw} window is larger than the {shape[1]}x{shape[2]} input{padded}")


def windows(x, kh, kw, stride):
    """Every ``stride``-th (kh, kw) window of (N, H, W, C) as a view, shape (N, H', W', C, kh, kw)."""
    return sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]


def col2im(dwin, shape, stride, fast=True):
    """The adjoint of ``windows``: window gradients (N, H', W', kh, kw, C) summed back into a fresh, writable
    (N, H, W, C) array of ``shape`` (the layer below may work in it in place), one strided add per kernel offset.
    ``fast``: when the windows tile the input exactly (stride == kernel, H = H'*kh, W = W'*kw) every entry belongs
    to one window, and one transposing copy does it (the same numbers: each entry receives a single term either
    way)."""
    n, ho, wo, kh, kw, c = dwin.shape
    if fast and stride == kh == kw and shape[1] == ho * kh and shape[2] == wo * kw:
        dx = np.empty(shape, dwin.dtype)
        dx.reshape(n, ho, kh, wo, kw, c)[...] = dwin.transpose(0, 1, 3, 2, 4, 5)
        return dx
    dx = np.zeros(shape, dwin.dtype)
    h_end, w_end = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    for i in range(kh):
        for j in range(kw):
            dx[:, i:i + h_end:stride, j:j + w_end:stride] += dwin[:, :, :, i, j]
    return dx


def dx_by_offsets(dy2d, W, out_shape, x_shape, stride):
    """The convolution's input gradient: col2im(dy2d @ W2d.T), computed offset by offset. For each kernel offset
    (i, j), dy2d @ W[i, j].T is a contiguous (N*H'*W', C_in) block added at its strided place: twice as fast as
    forming the (N*H'*W', kh*kw*C_in) gradient of the columns and reading it back strided (the same sums, up to
    the BLAS kernel's order of addition; tests/core/test_conv.py ties it to col2im)."""
    n, ho, wo = out_shape
    kh, kw, c_in, _ = W.shape
    dx = np.zeros(x_shape, dy2d.dtype)
    block = np.empty((n * ho * wo, c_in), dy2d.dtype)
    h_end, w_end = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    for i in range(kh):
        for j in range(kw):
            np.matmul(dy2d, W[i, j].T, out=block)
            dx[:, i:i + h_end:stride, j:j + w_end:stride] += block.reshape(n, ho, wo, c_in)
    return dx


# -- Convolution -------------------------------------------------------------------------------------------------
def init_conv(rng: np.random.Generator, kh, kw, c_in, c_out, scheme="he", std=0.05, dtype=np.float32):
    """(kh, kw, c_in, c_out) weights, the schemes of ``init_weights`` with fan_in = kh*kw*c_in and
    fan_out = kh*kw*c_out (PyTorch's fans for convolutions): He N(0, 2/fan_in), Glorot U(+-sqrt(6/(fan_in+fan_out))),
    normal N(0, std^2)."""
    _check_positive(kh=kh, kw=kw, c_in=c_in, c_out=c_out)
    fan_in, fan_out = kh * kw * c_in, kh * kw * c_out
    # init_weights reads fan_out from the shape it draws, and its entries are i.i.d.: the first c_out columns of a
    # (fan_in, fan_out) draw are a draw of the conv's c_out columns with the conv's fans. This reuses the schemes
    # rather than restating Glorot's bound here, at kh*kw times the random numbers, once per layer.
    w = init_weights(rng, fan_in, fan_out, scheme, std, dtype)[:, :c_out]
    return np.ascontiguousarray(w).reshape(kh, kw, c_in, c_out)


class Conv2d:
    """y = conv(x, W) (+ b) on (N, H, W, C_in) -> (N, H', W', C_out), by im2col and one GEMM.

    ``W`` is (kh, kw, C_in, C_out); ``b`` a (C_out,) array, or None for no bias (BN right after cancels it, as for
    Dense). ``need_dx=False`` for the first layer skips the input gradient nobody uses."""

    def __init__(self, W, b=None, *, stride=1, padding=0, need_dx=True):
        if W.ndim != 4:
            raise ValueError(f"conv weights must be (kh, kw, C_in, C_out), got shape {W.shape}")
        kh, kw, c_in, c_out = W.shape
        _check_positive(kernel_height=kh, kernel_width=kw, in_channels=c_in, out_channels=c_out, stride=stride)
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        if b is not None and b.shape != (c_out,):
            raise ValueError(f"conv bias must have shape ({c_out},), got {b.shape}")
        self.params = {"W": W} if b is None else {"W": W, "b": b}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.buffers = {}
        self.stride, self.padding, self.need_dx = stride, padding, need_dx
        self.cache = None

    def _pad(self, x):
        p = self.padding
        if p == 0:
            return x
        n, h, w, c = x.shape
        xp = np.zeros((n, h + 2 * p, w + 2 * p, c), x.dtype)
        xp[:, p:p + h, p:p + w] = x
        return xp

    def forward(self, x, mode="train"):
        kh, kw, c_in, c_out = self.params["W"].shape
        if x.ndim != 4 or x.shape[3] != c_in:
            raise ValueError(f"expected (N, H, W, {c_in}) images, got shape {x.shape}")
        _check_fits(x.shape, kh, kw, self.padding)
        xp = self._pad(x)
        win = windows(xp, kh, kw, self.stride)  # (N, H', W', C_in, kh, kw)
        n, ho, wo = win.shape[:3]
        # The one copy: window entries reordered (kh, kw, C_in) to match the rows of W reshaped to a matrix.
        cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(n * ho * wo, kh * kw * c_in)
        y = (cols @ self.params["W"].reshape(-1, c_out)).reshape(n, ho, wo, c_out)
        if "b" in self.params:
            y += self.params["b"]
        self.cache = (cols, x.shape, xp.shape)
        return y

    def backward(self, dy):
        cols, x_shape, xp_shape = self.cache
        W, gW = self.params["W"], self.grads["W"]
        kh, kw, c_in, c_out = W.shape
        n, ho, wo = dy.shape[:3]
        dy2d = dy.reshape(-1, c_out)
        if gW.flags.c_contiguous:  # then its matrix reshape is a view and the product lands in gW itself
            np.matmul(cols.T, dy2d, out=gW.reshape(-1, c_out))
        else:
            gW[...] = (cols.T @ dy2d).reshape(gW.shape)
        if "b" in self.grads:
            column_sum(dy2d, self.grads["b"])
        if not self.need_dx:
            return None
        dxp = dx_by_offsets(dy2d, W, (n, ho, wo), xp_shape, self.stride)
        p = self.padding
        return dxp[:, p:p + x_shape[1], p:p + x_shape[2]] if p else dxp


# -- Pooling -----------------------------------------------------------------------------------------------------
class _Pool2d:
    """kernel x kernel windows every ``stride`` (default: kernel) positions, no padding. ``fast`` (on by default)
    lets col2im use its non-overlapping shortcut; tests turn it off to compare with the general path."""

    def __init__(self, kernel, stride=None):
        stride = kernel if stride is None else stride
        _check_positive(kernel=kernel, stride=stride)
        self.kernel, self.stride = kernel, stride
        self.params, self.grads, self.buffers = {}, {}, {}
        self.fast = True
        self.cache = None

    def _windows(self, x):
        if x.ndim != 4:
            raise ValueError(f"expected (N, H, W, C) images, got shape {x.shape}")
        _check_fits(x.shape, self.kernel, self.kernel)
        return windows(x, self.kernel, self.kernel, self.stride)


class MaxPool2d(_Pool2d):
    """Maximum of each window; the gradient goes to the window's first maximum (row-major), once."""

    def forward(self, x, mode="train"):
        win = self._windows(x)  # (N, H', W', C, k, k)
        flat = win.reshape(*win.shape[:4], -1)  # a copy: windows of a strided view
        arg = flat.argmax(axis=-1)  # argmax returns the first maximum: ties go to one entry
        self.cache = (arg, x.shape)
        return np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]

    def backward(self, dy):
        arg, shape = self.cache
        k = self.kernel
        dflat = np.zeros((*arg.shape, k * k), dy.dtype)
        np.put_along_axis(dflat, arg[..., None], dy[..., None], axis=-1)
        dwin = dflat.reshape(*arg.shape, k, k).transpose(0, 1, 2, 4, 5, 3)  # (N, H', W', k, k, C), a view
        return col2im(dwin, shape, self.stride, self.fast)


class AvgPool2d(_Pool2d):
    """Mean of each window; each entry of a window gets dy / (k*k) of it."""

    def forward(self, x, mode="train"):
        win = self._windows(x)  # checks the shapes; its mean would read a 6-D strided view (5x slower than this)
        k, s = self.kernel, self.stride
        h_end, w_end = s * (win.shape[1] - 1) + 1, s * (win.shape[2] - 1) + 1
        y = x[:, 0:h_end:s, 0:w_end:s].copy()
        for i in range(k):
            for j in range(k):
                if i or j:
                    y += x[:, i:i + h_end:s, j:j + w_end:s]
        self.cache = x.shape
        y *= 1.0 / (k * k)
        return y

    def backward(self, dy):
        k = self.kernel
        share = dy * (1.0 / (k * k))
        dwin = np.broadcast_to(share[:, :, :, None, None, :], (*dy.shape[:3], k, k, dy.shape[3]))
        return col2im(dwin, self.cache, self.stride, self.fast)


class Flatten:
    """(N, H, W, C) -> (N, H*W*C), a view when the input is contiguous; backward restores the shape."""

    def __init__(self):
        self.params, self.grads, self.buffers = {}, {}, {}
        self.shape = None

    def forward(self, x, mode="train"):
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self.shape)
