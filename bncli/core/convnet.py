"""Convolutional networks: convolution blocks, then the MLP's dense layers.

A block is conv -> [BN] -> activation -> [BN] -> [pooling], with the same ``bn`` placements as the MLP
(``before``: BN between the convolution and its activation, the convolution's bias dropped; ``after``: BN on the
activation's output). The BN of a convolution normalizes each channel over (N, H, W) (``bn_per="channel"``, PyTorch's
BatchNorm2d); ``bn_per="activation"`` normalizes every (h, w, c) activation over N alone, as an MLP's BN would if the
feature map were flattened (the control of CLAIMS C13). Dense layers' BN is the usual per-feature BN either way.

The network takes rows of ``C*H*W`` values in (C, H, W) order (as the datasets store images) or (N, C, H, W)
arrays, and works channels-last inside (conv.py says why).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .batchnorm import SpatialBatchNorm
from .conv import AvgPool2d, Conv2d, Flatten, MaxPool2d, init_conv
from .layers import Activation, Dense, init_weights
from .model import BN_IMPLS, PLACEMENTS, Network

BN_PER = ("channel", "activation")
EVAL_VALUES = 1 << 24  # im2col values per inference chunk (64 MB in float32): the chunk adapts to the net


class ConvSpec(NamedTuple):
    channels: int
    kernel: int = 3
    stride: int = 1
    padding: int = 0
    pool: int = 0  # 0 or 1: no pooling
    pool_type: str = "max"


class ConvShapeError(ValueError):
    """A block does not fit the feature map it receives; ``index`` is the block (0-based), ``key`` the setting."""

    def __init__(self, index, key, message):
        super().__init__(message)
        self.index, self.key = index, key


def conv_shapes(image_shape, specs) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """For each block, (H, W, C) after its convolution and after its pooling. Raises ConvShapeError when a kernel or
    a pooling window is larger than the map it slides over."""
    c, h, w = image_shape
    out = []
    for i, s in enumerate(specs):
        s = ConvSpec(*s) if not isinstance(s, ConvSpec) else s
        hp, wp = h + 2 * s.padding, w + 2 * s.padding
        if s.kernel > min(hp, wp):
            padded = f" (padded to {hp}x{wp})" if s.padding else ""
            raise ConvShapeError(i, "kernel", f"a {s.kernel}x{s.kernel} kernel does not fit the {h}x{w} feature map"
                                 f"{padded} it receives")
        h, w, c = (hp - s.kernel) // s.stride + 1, (wp - s.kernel) // s.stride + 1, s.channels
        after_conv = (h, w, c)
        if s.pool > 1:
            if s.pool > min(h, w):
                raise ConvShapeError(i, "pool", f"a {s.pool}x{s.pool} pooling window does not fit the {h}x{w} map "
                                     "the convolution gives")
            h, w = (h - s.pool) // s.pool + 1, (w - s.pool) // s.pool + 1
        out.append((after_conv, (h, w, c)))
    return out


def conv_products(image_shape, specs) -> list[tuple[int, int, int]]:
    """Each convolution's im2col product per image as (rows, k, n) = (H'*W', kh*kw*C_in, C_out)."""
    c, out = image_shape[0], []
    for s, ((h, w, ch), _) in zip(specs, conv_shapes(image_shape, specs)):
        s = ConvSpec(*s) if not isinstance(s, ConvSpec) else s
        out.append((h * w, s.kernel * s.kernel * c, ch))
        c = ch
    return out


class ConvNet(Network):
    """``image_shape`` (C, H, W); ``conv`` a list of ConvSpec (or tuples in its field order); ``hidden`` the dense
    widths after flattening. Weights are drawn in the same order for every placement, so arms with the same seed
    share their initial weights, as the MLP's do."""

    def __init__(self, image_shape, conv, hidden, n_out, *, rng: np.random.Generator, activation="relu", bn="none",
                 init="he", init_std=0.05, bn_decay=0.9, bn_eps=1e-5, bias_with_bn=False, dtype=np.float32,
                 bn_impl="fused", bn_per="channel"):
        if bn == "noisy":
            raise ValueError("noisy BN is implemented for MLPs only")
        if bn not in PLACEMENTS:
            raise ValueError(f"unknown BN placement {bn!r}; expected one of {PLACEMENTS}")
        if bn_impl not in BN_IMPLS:
            raise ValueError(f"unknown BN implementation {bn_impl!r}; expected one of {BN_IMPLS}")
        if bn_per not in BN_PER:
            raise ValueError(f"unknown BN granularity {bn_per!r}; expected one of {BN_PER}")
        specs = [s if isinstance(s, ConvSpec) else ConvSpec(*s) for s in conv]
        if not specs:
            raise ValueError("a ConvNet needs at least one convolution block (use MLP otherwise)")
        self.image_shape = tuple(int(v) for v in image_shape)
        self.bn, self.bn_impl, self.bn_per, self.bn_decay, self.bn_eps = bn, bn_impl, bn_per, bn_decay, bn_eps
        self.dtype = np.dtype(dtype)
        self._running = np.zeros((2, 0), self.dtype)  # every BN layer here keeps and updates its own statistics
        bias = bn != "before" or bias_with_bn
        self.layers: list[tuple[str, object]] = []
        shapes = conv_shapes(self.image_shape, specs)
        c_in = self.image_shape[0]
        for i, (s, ((h, w, c), _)) in enumerate(zip(specs, shapes), start=1):
            W = init_conv(rng, s.kernel, s.kernel, c_in, s.channels, init, init_std, self.dtype)
            b = np.zeros(s.channels, self.dtype) if bias else None
            self.layers.append((f"conv{i}", Conv2d(W, b, stride=s.stride, padding=s.padding, need_dx=i > 1)))
            if bn == "before":
                self.layers.append((f"convbn{i}", self._bn(c, (h, w), bn_per)))
            self.layers.append((f"convact{i}", Activation(activation, inplace=True)))
            if bn == "after":
                self.layers.append((f"convbn{i}", self._bn(c, (h, w), bn_per)))
            if s.pool > 1:
                pool = MaxPool2d(s.pool) if s.pool_type == "max" else AvgPool2d(s.pool)
                self.layers.append((f"pool{i}", pool))
            c_in = s.channels
        self.layers.append(("flatten", Flatten()))
        sizes = [math.prod(shapes[-1][1]), *hidden]
        for i, (a, b_) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            W = init_weights(rng, a, b_, init, init_std, self.dtype)
            self.layers.append((f"dense{i}", Dense(W, bias=bias)))
            if bn == "before":
                self.layers.append((f"bn{i}", self._bn(b_, None, "channel")))
            self.layers.append((f"act{i}", Activation(activation, inplace=True)))
            if bn == "after":
                self.layers.append((f"bn{i}", self._bn(b_, None, "channel")))
        W = init_weights(rng, sizes[-1], n_out, init, init_std, self.dtype)
        self.layers.append(("out", Dense(W, bias=True)))
        cols = max(r * k for r, k, _ in conv_products(self.image_shape, specs))  # im2col values per image
        self.eval_chunk = int(max(1, min(4096, EVAL_VALUES // cols)))
        self._finish()

    def _bn(self, channels, spatial, per):
        return SpatialBatchNorm(channels, decay=self.bn_decay, eps=self.bn_eps, dtype=self.dtype,
                                fused=self.bn_impl == "fused", per=per, spatial=spatial)

    def images(self, x):
        """(N, H, W, C) view of rows of C*H*W values in (C, H, W) order, or of (N, C, H, W) images."""
        c, h, w = self.image_shape
        if x.ndim == 2 and x.shape[1] != c * h * w or x.ndim == 4 and x.shape[1:] != (c, h, w) or x.ndim not in (2, 4):
            raise ValueError(f"expected images of shape (N, {c}, {h}, {w}) or rows of {c * h * w} values, "
                             f"got {x.shape}")
        return x.reshape(-1, c, h, w).transpose(0, 2, 3, 1)

    def forward(self, x, mode="train"):
        return super().forward(self.images(x), mode)

    def activation_inputs(self, X, mode="eval", layer=None):
        """As the MLP's, or the input of the activation named ``layer`` (e.g. "convact1"); a feature map's values
        come back as rows per channel, (N*H*W, C): a channel is one unit, as BN per channel treats it."""
        x = super().activation_inputs(self.images(X), mode, layer)
        return x.reshape(-1, x.shape[-1])
