"""Batch Normalization (Ioffe & Szegedy 2015, Algorithms 1 and 2) — where the BN math lives.

Conventions (stated once, used everywhere):

* Training mode normalizes with the *biased* batch variance  var = mean((x - mu)**2)  and puts eps inside the
  square root:  x_hat = (x - mu) / sqrt(var + eps);  y = gamma * x_hat + beta.
* Running statistics are exponentially weighted averages,  running = decay * running + (1 - decay) * batch_stat.
  ``decay`` is the weight kept on the *old* value (the course notes' "decay" 0.9); PyTorch's ``momentum=0.1`` is
  the same average (momentum = 1 - decay).
* The running variance stores the *unbiased* estimate  var * N / (N - 1)  (as PyTorch and the paper's Alg. 2).
* gamma is 1 and beta 0 at initialization; both are learned (they are parameters, not hyperparameters).

The backward pass is the exact gradient through the batch mean and variance, in the compact form

    dx = (1 / (N * sigma)) * (N * g - sum(g) - x_hat * sum(g * x_hat)),   g = dy * gamma

(not ``dy * gamma / sigma``, which ignores the paths through mu and var — the error in course note 000).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


class BatchOfOneError(ValueError):
    """Training-mode BN on a batch of one sample: the batch variance is 0 and every output would be beta."""


@lru_cache(maxsize=64)
def constant_vector(n, value, dtype):
    w = np.full(n, value, dtype)
    w.flags.writeable = False
    return w


def column_sum(x, out=None, scale=1.0):
    """``scale * x.sum(axis=0)`` as one BLAS matrix-vector product: a third of NumPy's axis-0 reduction at batch
    256 and one call instead of two for a mean. (OpenBLAS's result does not depend on the arrays' alignment.)"""
    return np.matmul(constant_vector(x.shape[0], scale, x.dtype), x, out=out)


def bn_train_forward(x, gamma, beta, eps, overwrite_x=False, stats=None):
    """Normalize with the statistics of this batch. Returns (y, cache, mean, biased_var).

    The cache is (x - mean, 1/sigma, gamma/sigma): x_hat = (x - mean) / sigma is never formed, because the output
    y = (x - mean) * (gamma/sigma) + beta and the backward pass only need it multiplied by per-feature vectors.
    ``overwrite_x=True`` centers ``x`` in place (the model does this for a dense layer's output, which nobody else
    holds); ``stats=(mean, var)`` are arrays to write the batch statistics into."""
    n = x.shape[0]
    if n < 2:
        raise BatchOfOneError(
            "batch normalization in training mode needs at least 2 samples per batch "
            f"(got {n}): the batch variance of one sample is 0 and its output would be beta alone"
        )
    mean, var = (None, None) if stats is None else stats
    mean = column_sum(x, mean, 1.0 / n)
    xc = np.subtract(x, mean, out=x if overwrite_x else None)
    sq = np.square(xc)
    var = column_sum(sq, var, 1.0 / n)
    inv_std = np.power(var + eps, -0.5)  # one call fewer than 1 / sqrt (per-call cost dominates at these sizes)
    scale = gamma * inv_std
    y = np.multiply(xc, scale, out=sq)
    y += beta
    return y, (xc, inv_std, scale), mean, var


def bn_eval_forward(x, gamma, beta, mean, var, eps):
    """Normalize with fixed statistics (running or population), as one affine map per feature."""
    scale = gamma / np.sqrt(var + eps)
    y = x * scale
    y += beta - mean * scale
    return y


def bn_backward(dy, cache, dgamma=None, dbeta=None, overwrite_dy=False):
    """Exact gradient of bn_train_forward. Returns (dx, dgamma, dbeta); ``dgamma``/``dbeta`` may be given as
    arrays to write into, and ``overwrite_dy=True`` lets dx reuse dy's memory."""
    xc, inv_std, scale = cache
    n = dy.shape[0]
    dbeta = column_sum(dy, dbeta)
    prod = dy * xc
    dgamma = column_sum(prod, dgamma)
    dgamma *= inv_std  # sum(dy * x_hat)
    # dx = gamma/sigma * (dy - dbeta/n - x_hat * dgamma/n), with x_hat = xc/sigma folded into per-feature vectors.
    k = scale * (1.0 / n)
    shift = dbeta * k
    k *= inv_std
    k *= dgamma
    dx = np.multiply(dy, scale, out=dy if overwrite_dy else None)
    dx -= np.multiply(xc, k, out=prod)
    dx -= shift
    return dx, dgamma, dbeta


@lru_cache(maxsize=64)
def _running_weights(n, decay, dtype):
    w = np.array([[1.0 - decay], [(1.0 - decay) * n / (n - 1)]], dtype)
    w.flags.writeable = False
    return w


def update_running(running, batch, n, decay):
    """In-place exponential average of stacked statistics, row 0 the means and row 1 the variances (shape (2, D),
    so one call covers every feature of any number of layers). The variance enters as its unbiased estimate
    var * n / (n - 1)."""
    running *= decay
    running += batch * _running_weights(n, decay, running.dtype)


def fold_into_dense(W, b, gamma, beta, mean, var, eps):
    """Fold eval-mode BN after a dense layer into that layer: W' = W * gamma / sigma, b' = (b - mu) * gamma / sigma + beta."""
    scale = gamma / np.sqrt(var + eps)
    b0 = np.zeros_like(beta) if b is None else b
    return W * scale, (b0 - mean) * scale + beta


class BatchNorm:
    """BN over the feature axis of a (N, D) array.

    ``params``/``grads`` share keys (gamma, beta); ``buffers`` hold the non-trainable running statistics.
    ``mode`` in forward: "train" (batch statistics, updates running averages), "eval" (running or population
    statistics), "batch" (batch statistics without touching the buffers — the C5 "test-batch statistics" variant;
    on a single sample it returns beta, the collapse C5 demonstrates).

    ``running`` stacks the running mean and variance (shape (2, D); ``buffers`` are its rows), ``batch_stats`` the
    mean and biased variance of the last batch-statistics forward (``last_stats`` are its rows). A model that owns
    several BN layers may set ``defer_running_update`` and update all their running statistics in one call after
    its forward (MLP does, binding the state of its layers to views into shared arrays with ``bind_state``);
    ``overwrite_input``/``overwrite_grad`` let the layer reuse arrays its owner will not read again.
    """

    def __init__(self, dim, *, decay=0.9, eps=1e-5, dtype=np.float32):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.eps = eps
        self.params = {"gamma": np.ones(dim, dtype), "beta": np.zeros(dim, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.bind_state(np.stack([np.zeros(dim, dtype), np.ones(dim, dtype)]), np.zeros((2, dim), dtype))
        self.defer_running_update = False
        self.overwrite_input = False
        self.overwrite_grad = False
        self.cache = None

    def bind_state(self, running, batch_stats):
        """Keep the running and the batch statistics in these (2, D) arrays (from now on)."""
        self.running, self.batch_stats = running, batch_stats
        self.last_stats = (batch_stats[0], batch_stats[1])

    @property
    def buffers(self):
        return {"running_mean": self.running[0], "running_var": self.running[1]}

    def forward(self, x, mode="train"):
        p = self.params
        if mode == "eval":
            self.cache = None
            return bn_eval_forward(x, p["gamma"], p["beta"], self.running[0], self.running[1], self.eps)
        if mode == "batch" and x.shape[0] == 1:
            # Batch statistics of one sample: x - mean = 0, so the output is beta whatever the input (the collapse
            # that makes running averages necessary at test time, CLAIMS C5). Inference only: no backward.
            self.cache = None
            return np.broadcast_to(p["beta"], x.shape).copy()
        y, self.cache, _, _ = bn_train_forward(x, p["gamma"], p["beta"], self.eps, self.overwrite_input,
                                               self.last_stats)
        if mode == "train" and not self.defer_running_update:
            update_running(self.running, self.batch_stats, x.shape[0], self.decay)
        return y

    def backward(self, dy):
        dx, _, _ = bn_backward(dy, self.cache, self.grads["gamma"], self.grads["beta"], self.overwrite_grad)
        return dx
