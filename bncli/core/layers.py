"""Dense layer, activations and the softmax cross-entropy loss: each forward next to its backward.

Every layer has ``params`` and ``grads`` (same keys) and ``buffers`` (non-trainable state; empty here), and caches
in ``forward`` exactly what ``backward`` needs.
"""

from __future__ import annotations

import numpy as np

INITS = ("he", "glorot", "normal")


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
            dy.sum(axis=0, out=self.grads["b"])
        return dy @ self.params["W"].T if self.need_dx else None


class Activation:
    """relu, sigmoid, tanh or identity; backward reuses the cached output (or input mask for relu)."""

    NAMES = ("relu", "sigmoid", "tanh", "identity")

    def __init__(self, name):
        if name not in self.NAMES:
            raise ValueError(f"unknown activation {name!r}; expected one of {self.NAMES}")
        self.name = name
        self.params, self.grads, self.buffers = {}, {}, {}
        self.cache = None

    def forward(self, x, mode="train"):
        name = self.name
        if name == "relu":
            y = np.maximum(x, 0)
        elif name == "sigmoid":
            # 0.5 * (1 + tanh(x / 2)) is the logistic function without exp overflow for large |x|.
            y = np.multiply(x, 0.5)
            np.tanh(y, out=y)
            y *= 0.5
            y += 0.5
        elif name == "tanh":
            y = np.tanh(x)
        else:
            y = x
        self.cache = y
        return y

    def backward(self, dy):
        y, name = self.cache, self.name
        if name == "relu":
            return dy * (y > 0)
        if name == "sigmoid":
            d = dy * y
            d *= 1 - y
            return d
        if name == "tanh":
            return dy * (1 - y * y)
        return dy


def softmax_cross_entropy(logits, y):
    """Mean cross-entropy of integer labels ``y`` and its gradient w.r.t. the logits.

    Uses the log-sum-exp shift by the row maximum, so it is finite for any finite logits.
    Returns (loss as a Python float, dlogits, number of correct argmax predictions).
    """
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = float(np.log(sums[:, 0]).sum() - shifted[rows, y].sum()) / n
    exp /= sums
    correct = int((shifted.argmax(axis=1) == y).sum())
    exp[rows, y] -= 1
    exp /= n
    return loss, exp, correct


def cross_entropy_eval(logits, y):
    """Summed loss and number of correct predictions (no gradient), for evaluation in chunks."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=1))
    loss_sum = float((lse - shifted[np.arange(len(y)), y]).sum(dtype=np.float64))
    return loss_sum, int((shifted.argmax(axis=1) == y).sum())
