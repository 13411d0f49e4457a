"""Several MLPs of one architecture trained as one computation: the training step of M models at once.

Each model is an ordinary `MLP`, built as a single run builds it; `Stack` moves its parameters, gradients and BN
statistics into row m of stacked arrays (the model keeps views into them, so its own evaluation, buffers and
summary code work unchanged) and runs the training step on (M, batch, features) arrays: one NumPy call per layer
for all models instead of one per model. Every operation is the single model's operation with a leading model
axis — the same products slice by slice, the same element-wise arithmetic, the same reductions along the same
axes — so each model's numbers are bit-identical to training it alone (tests/core/test_stack.py checks this;
what NumPy and the BLAS guarantee per slice is all it relies on). Models may differ in their initial weights,
batch order and learning rate; everything else is shared.
"""

from __future__ import annotations

import numpy as np

from .batchnorm import BatchNorm, column_sum, update_running_stacked
from .layers import Activation, Dense, _shifted_logits, constant_vector
from .model import MLP
from .model import offset as _offset

NOISY_REFUSED = ("stacked training does not cover noisy BN (its noise layers are redrawn per model and step); train "
                 "a noisy arm's runs one by one")


class _DenseS:
    def __init__(self, layer: Dense, P, G, base):
        din, dout = layer.params["W"].shape
        o = _offset(base, layer.params["W"])
        self.W, self.gW = (A[:, o:o + din * dout].reshape(len(P), din, dout) for A in (P, G))
        self.b = self.gb = None
        if "b" in layer.params:
            o = _offset(base, layer.params["b"])
            self.b, self.gb = P[:, o:o + dout], G[:, o:o + dout]
        self.need_dx = layer.need_dx

    def forward(self, x):
        self.x = x
        y = np.matmul(x, self.W)
        if self.b is not None:
            y += self.b[:, None, :]
        return y

    def backward(self, dy):
        np.matmul(self.x.transpose(0, 2, 1), dy, out=self.gW)
        if self.gb is not None:
            column_sum(dy, self.gb)
        return np.matmul(dy, self.W.transpose(0, 2, 1)) if self.need_dx else None


class _BatchNormS:
    """bn_train_forward / bn_backward (batchnorm.py, the fused path) with a leading model axis."""

    def __init__(self, layer: BatchNorm, P, G, base, stats):
        d = layer.params["gamma"].shape[0]
        og, ob = _offset(base, layer.params["gamma"]), _offset(base, layer.params["beta"])
        self.gamma, self.beta = P[:, og:og + d], P[:, ob:ob + d]
        self.ggamma, self.gbeta = G[:, og:og + d], G[:, ob:ob + d]
        self.stats, self.eps = stats, layer.eps  # (M, 2, d) views: row 0 the batch means, row 1 the variances
        self.overwrite_input = layer.overwrite_input

    def forward(self, x):
        n = x.shape[1]
        mean = column_sum(x, self.stats[:, 0], 1.0 / n)
        xc = np.subtract(x, mean[:, None, :], out=x if self.overwrite_input else None)
        sq = np.square(xc)
        var = column_sum(sq, self.stats[:, 1], 1.0 / n)
        inv_std = np.power(var + self.eps, -0.5)
        scale = self.gamma * inv_std
        y = np.multiply(xc, scale[:, None, :], out=sq)
        y += self.beta[:, None, :]
        self.cache = xc, inv_std, scale
        return y

    def backward(self, dy):
        xc, inv_std, scale = self.cache
        n = dy.shape[1]
        dbeta = column_sum(dy, self.gbeta)
        prod = dy * xc
        dgamma = column_sum(prod, self.ggamma)
        dgamma *= inv_std
        k = scale * (1.0 / n)
        shift = dbeta * k
        k *= inv_std
        k *= dgamma
        dx = np.multiply(dy, scale[:, None, :], out=dy)
        dx -= np.multiply(xc, k[:, None, :], out=prod)
        dx -= shift[:, None, :]
        return dx


class Stack:
    """M models of one architecture (fused BN or none) with their parameters in the rows of ``params`` (M, P) and
    gradients in ``grads``; ``decay_mask`` (P,) as `MLP.flat`'s. ``forward`` in training mode updates the running
    averages of every model; ``backward`` fills every model's gradients."""

    def __init__(self, models: list[MLP]):
        m0 = models[0]
        if any(m.bn == "noisy" for m in models):
            raise ValueError(NOISY_REFUSED)
        if m0.bn != "none" and m0.bn_impl != "fused":
            raise ValueError("stacked training runs the fused BN path only")
        M, dtype = len(models), m0.dtype
        self.models = models
        self.params = np.empty((M, m0.flat.params.size), dtype)
        self.grads = np.zeros_like(self.params)
        self.decay_mask = m0.flat.decay_mask
        self.running = np.empty((M,) + m0._running.shape, dtype)
        self.batch_stats = np.zeros_like(self.running)
        self.decay = m0.bn_decay
        for i, m in enumerate(models):
            m.rehome(self.params[i], self.grads[i], self.running[i], self.batch_stats[i])
        self.layers = []
        for name, layer in m0.layers:
            if isinstance(layer, Dense):
                self.layers.append(_DenseS(layer, self.params, self.grads, m0.flat.params))
            elif isinstance(layer, BatchNorm):
                s = _offset(m0._batch_stats[0], layer.batch_stats[0])
                d = layer.params["gamma"].shape[0]
                self.layers.append(_BatchNormS(layer, self.params, self.grads, m0.flat.params,
                                               self.batch_stats[:, :, s:s + d]))
            else:
                self.layers.append(Activation(layer.name, inplace=layer.inplace))

    def forward_train(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        if self.running.shape[-1]:
            update_running_stacked(self.running, self.batch_stats, x.shape[1], self.decay)
        return x

    def backward(self, dlogits):
        d = dlogits
        for layer in reversed(self.layers):
            d = layer.backward(d)
            if d is None:
                break


def softmax_cross_entropy_stacked(logits, y):
    """`softmax_cross_entropy` of (M, n, C) logits and (M, n) labels, per model: (losses as float64 (M,), dlogits
    (M, n, C), correct (M,)). The rows of all models are one (M*n, C) array for the row-wise work; each model's
    loss is the pairwise sum of its own n values, as the single model's."""
    M, n, c = logits.shape
    flat_y = y.reshape(-1)
    p, label_at, pred = _shifted_logits(logits.reshape(M * n, c), flat_y)
    correct = np.count_nonzero((pred == flat_y).reshape(M, n), axis=1)
    flat = p.reshape(-1)
    picked = flat.take(label_at)
    np.exp(p, out=p)
    sums = np.matmul(p, constant_vector(c, 1.0, p.dtype))
    lse = np.log(sums)
    losses = np.subtract(lse, picked, out=lse).reshape(M, n).sum(axis=1).astype(np.float64) / n
    sums *= n
    p /= sums[:, None]
    flat[label_at] -= 1.0 / n
    return losses, p.reshape(M, n, c), correct
