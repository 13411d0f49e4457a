"""Dense layer, activations and the softmax cross-entropy loss: each forward next to its backward.

Every layer has ``params`` and ``grads`` (same keys) and ``buffers`` (non-trainable state; empty here), and caches
in ``forward`` exactly what ``backward`` needs.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .batchnorm import constant_vector, column_sum

INITS = ("he", "glorot", "normal")


def _ones(n, dtype):
    return constant_vector(n, 1.0, dtype)


def init_weights(rng: np.random.Generator, fan_in, fan_out, scheme="he", std=0.05, dtype=np.float32):
    """He: N(0, 2/fan_in); Glorot: U(-a, a) with a = sqrt(6/(fan_in+fan_out)); normal: N(0, std^2)."""
    if scheme == "he":
        w = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
    elif scheme == "glorot":
        a = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-a, a, (fan_in, fan_out))
    elif scheme == "normal":
        w = rng.standard_normal((fan_in, fan_out)) * std
    else:
        raise ValueError(f"unknown init {scheme!r}; expected one of {INITS}")
    return w.astype(dtype)


class Dense:
    """y = x @ W (+ b). ``need_dx=False`` for the first layer skips the one product nobody uses."""

    def __init__(self, W, bias=True, need_dx=True):
        self.buffers = {}
        self.params = {"W": W}
        if bias:
            self.params["b"] = np.zeros(W.shape[1], W.dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.need_dx = need_dx
        self.x = None

    def forward(self, x, mode="train"):
        self.x = x
        y = x @ self.params["W"]
        if "b" in self.params:
            y += self.params["b"]
        return y

    def backward(self, dy):
        np.matmul(self.x.T, dy, out=self.grads["W"])
        if "b" in self.grads:
            column_sum(dy, self.grads["b"])
        return dy @ self.params["W"].T if self.need_dx else None


class Activation:
    """relu, sigmoid, tanh or identity; backward reuses the cached output.

    ``inplace=True`` overwrites the input in forward and the upstream gradient in backward; a model sets it when
    nobody else holds those arrays (they are fresh outputs of the layer before), which saves an allocation and a
    pass over the data per call."""

    NAMES = ("relu", "sigmoid", "tanh", "identity")

    def __init__(self, name, inplace=False):
        if name not in self.NAMES:
            raise ValueError(f"unknown activation {name!r}; expected one of {self.NAMES}")
        self.name = name
        self.inplace = inplace
        self.params, self.grads, self.buffers = {}, {}, {}
        self.cache = None

    def forward(self, x, mode="train"):
        name, out = self.name, x if self.inplace else None
        if name == "relu":
            y = np.maximum(x, 0, out=out)
        elif name == "sigmoid":
            # 0.5 * (1 + tanh(x / 2)) is the logistic function without exp overflow for large |x|.
            y = np.multiply(x, 0.5, out=out)
            np.tanh(y, out=y)
            y *= 0.5
            y += 0.5
        elif name == "tanh":
            y = np.tanh(x, out=out)
        else:
            y = x
        self.cache = y
        return y

    def backward(self, dy):
        y, name, out = self.cache, self.name, dy if self.inplace else None
        if name == "relu":
            return np.multiply(dy, y > 0, out=out)
        if name == "sigmoid":
            d = np.multiply(dy, y, out=out)
            d *= 1 - y
            return d
        if name == "tanh":
            d = y * y
            np.subtract(1, d, out=d)
            return np.multiply(dy, d, out=out if out is not None else d)
        return dy


@lru_cache(maxsize=16)
def _row_starts(n, c):
    """Flat index of each row's first entry in a C-contiguous (n, c) array; ``starts + y`` picks y per row."""
    starts = np.arange(0, n * c, c)
    starts.flags.writeable = False
    return starts


def _shifted_logits(logits, y):
    """(logits - row max, flat indices of the labels, argmax). The row maximum is gathered at the argmax that the
    accuracy needs anyway (a second row reduction costs as much again); one flat take per row is the cheapest
    gather in NumPy. Labels must lie in 0..C-1, as the data loaders guarantee."""
    n, c = logits.shape
    starts = _row_starts(n, c)
    pred = logits.argmax(axis=1)
    row_max = logits.reshape(-1).take(starts + pred)
    return np.subtract(logits, row_max[:, None]), starts + y, pred


def softmax_cross_entropy(logits, y):
    """Mean cross-entropy of integer labels ``y`` and its gradient w.r.t. the logits.

    Shifts each row by its maximum (log-sum-exp), so it is finite for any finite logits; non-finite logits give a
    non-finite loss. Returns (loss as a Python float, dlogits, number of correct argmax predictions).
    """
    n, c = logits.shape
    p, label_at, pred = _shifted_logits(logits, y)
    correct = int(np.count_nonzero(pred == y))
    flat = p.reshape(-1)  # a view: p is a fresh C-contiguous array
    picked = flat.take(label_at)  # logit of the label minus the row maximum
    np.exp(p, out=p)
    sums = np.matmul(p, _ones(c, p.dtype))  # row sums as one BLAS call
    lse = np.log(sums)
    loss = float(np.subtract(lse, picked, out=lse).sum()) / n
    sums *= n
    p /= sums[:, None]
    flat[label_at] -= 1.0 / n
    return loss, p, correct


def cross_entropy_eval(logits, y):
    """Summed loss and number of correct predictions (no gradient), for evaluation in chunks."""
    p, label_at, pred = _shifted_logits(logits, y)
    picked = p.reshape(-1).take(label_at)
    np.exp(p, out=p)
    lse = np.log(np.matmul(p, _ones(p.shape[1], p.dtype)))
    loss_sum = float(np.subtract(lse, picked, out=lse).sum(dtype=np.float64))
    return loss_sum, int(np.count_nonzero(pred == y))
