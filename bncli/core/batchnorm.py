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

import numpy as np


class BatchOfOneError(ValueError):
    """Training-mode BN on a batch of one sample: the batch variance is 0 and every output would be beta."""


def bn_train_forward(x, gamma, beta, eps):
    """Normalize with the statistics of this batch. Returns (y, cache, mean, biased_var)."""
    n = x.shape[0]
    if n < 2:
        raise BatchOfOneError(
            "batch normalization in training mode needs at least 2 samples per batch "
            f"(got {n}): the batch variance of one sample is 0 and its output would be beta alone"
        )
    # In-place arithmetic on the small per-feature vectors: at batch 60 the cost of BN is the number of NumPy
    # calls, not the arithmetic (np.mean's Python wrapper alone is a third of a reduction).
    mean = x.sum(axis=0)
    mean /= n
    xc = x - mean
    var = np.einsum("ij,ij->j", xc, xc)  # no (x - mu)**2 temporary
    var /= n
    inv_std = var + eps
    np.sqrt(inv_std, out=inv_std)
    np.reciprocal(inv_std, out=inv_std)
    xc *= inv_std  # xc now holds x_hat, reused in place
    x_hat = xc
    y = x_hat * gamma
    y += beta
    return y, (x_hat, inv_std, gamma), mean, var


def bn_eval_forward(x, gamma, beta, mean, var, eps):
    """Normalize with fixed statistics (running or population), as one affine map per feature."""
    scale = gamma / np.sqrt(var + eps)
    y = x * scale
    y += beta - mean * scale
    return y


def bn_backward(dy, cache):
    """Exact gradient of bn_train_forward. Returns (dx, dgamma, dbeta)."""
    x_hat, inv_std, gamma = cache
    n = dy.shape[0]
    dbeta = dy.sum(axis=0)
    dgamma = np.einsum("ij,ij->j", dy, x_hat)
    # With g = dy * gamma: sum(g) = gamma * dbeta and sum(g * x_hat) = gamma * dgamma, so no g array is needed.
    scale = gamma * inv_std
    dx = x_hat * (-dgamma / n)
    dx += dy
    dx -= dbeta / n
    dx *= scale
    return dx, dgamma, dbeta


def update_running(running_mean, running_var, batch_mean, batch_var, n, decay):
    """In-place exponential average; the variance enters as its unbiased estimate var * n / (n - 1)."""
    running_mean *= decay
    running_mean += (1.0 - decay) * batch_mean
    running_var *= decay
    running_var += ((1.0 - decay) * n / (n - 1)) * batch_var


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
    """

    def __init__(self, dim, *, decay=0.9, eps=1e-5, dtype=np.float32):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.eps = eps
        self.params = {"gamma": np.ones(dim, dtype), "beta": np.zeros(dim, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.buffers = {"running_mean": np.zeros(dim, dtype), "running_var": np.ones(dim, dtype)}
        self.cache = None
        self.last_stats = None  # (mean, biased var) of the last batch-statistics forward, for population stats

    def forward(self, x, mode="train"):
        p = self.params
        if mode == "eval":
            self.cache = None
            b = self.buffers
            return bn_eval_forward(x, p["gamma"], p["beta"], b["running_mean"], b["running_var"], self.eps)
        if mode == "batch" and x.shape[0] == 1:
            # Batch statistics of one sample: x - mean = 0, so the output is beta whatever the input (the collapse
            # that makes running averages necessary at test time, CLAIMS C5). Inference only: no backward.
            self.cache = None
            return np.broadcast_to(p["beta"], x.shape).copy()
        y, self.cache, mean, var = bn_train_forward(x, p["gamma"], p["beta"], self.eps)
        if mode == "train":
            update_running(self.buffers["running_mean"], self.buffers["running_var"], mean, var, x.shape[0], self.decay)
        self.last_stats = (mean, var)
        return y

    def backward(self, dy):
        dx, self.grads["gamma"][...], self.grads["beta"][...] = bn_backward(dy, self.cache)
        return dx
