"""Batch Normalization (Ioffe & Szegedy 2015, Algorithms 1 and 2) — where the BN math lives.

Conventions (stated once, used everywhere):

* Training mode normalizes with the *biased* batch variance  var = mean((x - mu)**2)  and puts eps inside the
  square root:  x_hat = (x - mu) / sqrt(var + eps);  y = gamma * x_hat + beta.
* Running statistics are exponentially weighted averages,  running = decay * running + (1 - decay) * batch_stat.
  ``decay`` is the weight kept on the *old* value (the course notes' "decay" 0.9); PyTorch's ``momentum=0.1`` is
  the same average (momentum = 1 - decay).
* The running variance stores the *unbiased* estimate  var * N / (N - 1)  (as PyTorch and the paper's Alg. 2).
* gamma is 1 and beta 0 at initialization; both are learned (they are parameters, not hyperparameters).

The module, in reading order:

1. The textbook path, to read first: ``batchnorm_forward`` forms x_hat and caches what the backward needs (as
   CS231n does), ``batchnorm_backward`` is the exact gradient of Alg. 1's transform in compact form, and
   ``update_running_average`` is the running update written out.
2. The fast path, which computes the same thing with fewer passes over memory: ``bn_train_forward`` /
   ``bn_backward`` never form x_hat, and ``update_running_stacked`` updates the statistics of every BN layer of a
   model in one call. MLP trains with it by default.
3. Inference: ``bn_eval_forward`` and ``fold_into_dense``, shared by both paths.
4. ``BatchNorm``, the layer: ``fused=False`` runs section 1, ``fused=True`` section 2.

tests/core/test_batchnorm.py ties the two paths: both pass the float64 central-difference gradient check with a
random upstream gradient, and they agree to rounding (float64 to 1e-12, float32 loosely) on y, the batch
statistics, dx, dgamma, dbeta and the running statistics; tests/core/test_model.py trains a whole MLP both ways.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


class BatchOfOneError(ValueError):
    """Training-mode BN on a batch of one sample: the batch variance is 0 and every output would be beta."""


def check_batch(n):
    if n < 2:
        raise BatchOfOneError(
            "batch normalization in training mode needs at least 2 samples per batch "
            f"(got {n}): the batch variance of one sample is 0 and its output would be beta alone"
        )


# -- 1. The textbook path ----------------------------------------------------------------------------------------
def batchnorm_forward(x, gamma, beta, eps):
    """Alg. 1 as written: normalize with the statistics of this batch. Returns (y, cache, mean, biased_var)."""
    check_batch(x.shape[0])
    mu = x.mean(axis=0)
    var = ((x - mu) ** 2).mean(axis=0)
    sigma = np.sqrt(var + eps)
    x_hat = (x - mu) / sigma
    y = gamma * x_hat + beta
    return y, (x_hat, gamma, sigma), mu, var


def batchnorm_backward(dy, cache):
    """Exact gradient of batchnorm_forward. Returns (dx, dgamma, dbeta).

    x feeds y through x_hat directly and through mu and var, which every sample shares; the chain rule through
    all three (the paper's Sec. 3 derivatives, collected) gives

        dx = (1 / (N * sigma)) * (N * g - sum(g) - x_hat * sum(g * x_hat)),   g = dy * gamma = dL/dx_hat

    The two sums are the paths through mu and var; ``dy * gamma / sigma`` alone misses them (course note 000's
    error)."""
    x_hat, gamma, sigma = cache
    n = dy.shape[0]
    dbeta = dy.sum(axis=0)
    dgamma = (dy * x_hat).sum(axis=0)
    g = dy * gamma
    dx = (n * g - g.sum(axis=0) - x_hat * (g * x_hat).sum(axis=0)) / (n * sigma)
    return dx, dgamma, dbeta


def update_running_average(running_mean, running_var, mean, var, n, decay):
    """Alg. 2's estimates of the population statistics, as exponential averages over training batches (in place).
    The batch variance enters as its unbiased estimate var * n / (n - 1)."""
    running_mean[...] = decay * running_mean + (1 - decay) * mean
    running_var[...] = decay * running_var + (1 - decay) * var * n / (n - 1)


# -- 2. The fast path: the same function, fewer passes over memory -----------------------------------------------
@lru_cache(maxsize=64)
def constant_vector(n, value, dtype):
    w = np.full(n, value, dtype)
    w.flags.writeable = False
    return w


def column_sum(x, out=None, scale=1.0):
    """``scale * x.sum(axis=0)`` as one BLAS matrix-vector product: a third of NumPy's axis-0 reduction at batch
    256 and one call instead of two for a mean. (OpenBLAS's result does not depend on the arrays' alignment.) On a
    stack of models (M, n, D) it sums each model's n rows: (M, D)."""
    return np.matmul(constant_vector(x.shape[-2], scale, x.dtype), x, out=out)


def bn_train_forward(x, gamma, beta, eps, overwrite_x=False, stats=None):
    """batchnorm_forward, fast. Returns (y, cache, mean, biased_var).

    The cache is (x - mean, 1/sigma, gamma/sigma): x_hat = (x - mean) / sigma is never formed, because the output
    y = (x - mean) * (gamma/sigma) + beta and the backward pass only need it multiplied by per-feature vectors.
    ``overwrite_x=True`` centers ``x`` in place (the model does this for a dense layer's output, which nobody else
    holds); ``stats=(mean, var)`` are arrays to write the batch statistics into."""
    n = x.shape[0]
    check_batch(n)
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


def bn_backward(dy, cache, dgamma=None, dbeta=None, overwrite_dy=False):
    """batchnorm_backward, fast, for bn_train_forward's cache. Returns (dx, dgamma, dbeta); ``dgamma``/``dbeta``
    may be given as arrays to write into, and ``overwrite_dy=True`` lets dx reuse dy's memory."""
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


def update_running_stacked(running, batch_stats, n, decay):
    """update_running_average on stacked statistics: row 0 the means, row 1 the variances (shape (2, D), so one
    call covers every feature of any number of layers laid side by side)."""
    running *= decay
    running += batch_stats * _running_weights(n, decay, running.dtype)


# -- 3. Inference ------------------------------------------------------------------------------------------------
def bn_eval_forward(x, gamma, beta, mean, var, eps):
    """Normalize with fixed statistics (running or population), as one affine map per feature."""
    scale = gamma / np.sqrt(var + eps)
    y = x * scale
    y += beta - mean * scale
    return y


def fold_into_dense(W, b, gamma, beta, mean, var, eps):
    """Fold eval-mode BN after a dense layer into that layer: W' = W * gamma / sigma, b' = (b - mu) * gamma / sigma + beta."""
    scale = gamma / np.sqrt(var + eps)
    b0 = np.zeros_like(beta) if b is None else b
    return W * scale, (b0 - mean) * scale + beta


# -- 4. The layer ------------------------------------------------------------------------------------------------
class BatchNorm:
    """BN over the feature axis of a (N, D) array.

    ``params``/``grads`` share keys (gamma, beta). ``buffers`` (running_mean, running_var) are the running
    statistics; ``batch_stats`` is (mean, biased var) of the last forward with batch statistics. ``mode`` in
    forward: "train" (batch statistics, running averages updated), "eval" (running or population statistics),
    "batch" (batch statistics without touching the buffers — the C5 "test-batch statistics" variant; on a single
    sample it returns beta, the collapse C5 demonstrates).

    ``fused=False`` (the default): the textbook path. The layer owns its statistics and updates the running
    averages in every "train" forward.

    ``fused=True``: the fast path, for a model that owns several BN layers (MLP). ``state=(running, batch_stats)``
    are two (2, D) arrays of that owner, row 0 the means and row 1 the variances (MLP passes views into arrays
    shared by all its layers); the layer's ``buffers`` and ``batch_stats`` are their rows. The layer writes the
    batch statistics, and the owner updates the running averages of all its layers after its forward, in one
    ``update_running_stacked(running, batch_stats, n, decay)`` call. ``overwrite_input=True`` centers the input in
    place and ``overwrite_grad=True`` reuses the upstream gradient's memory for dx: for an owner that will not read
    those arrays again.
    """

    def __init__(self, dim, *, decay=0.9, eps=1e-5, dtype=np.float32, fused=False, state=None,
                 overwrite_input=False, overwrite_grad=False):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if fused != (state is not None):
            raise ValueError("a fused BatchNorm keeps its statistics in its owner's arrays: pass "
                             "state=(running, batch_stats) with fused=True, and only then")
        if not fused and (overwrite_input or overwrite_grad):
            raise ValueError("overwrite_input/overwrite_grad are options of the fused path (fused=True)")
        self.decay, self.eps, self.fused = decay, eps, fused
        self.overwrite_input, self.overwrite_grad = overwrite_input, overwrite_grad
        self.params = {"gamma": np.ones(dim, dtype), "beta": np.zeros(dim, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        if fused:
            running, self.batch_stats = state
            running[0], running[1] = 0, 1
        else:
            running, self.batch_stats = (np.zeros(dim, dtype), np.ones(dim, dtype)), None
        self.buffers = {"running_mean": running[0], "running_var": running[1]}
        self.cache = None

    def forward(self, x, mode="train"):
        p, b = self.params, self.buffers
        if mode == "eval":
            self.cache = None
            return bn_eval_forward(x, p["gamma"], p["beta"], b["running_mean"], b["running_var"], self.eps)
        if mode == "batch" and x.shape[0] == 1:
            # Batch statistics of one sample: x - mean = 0, so the output is beta whatever the input (the collapse
            # that makes running averages necessary at test time, CLAIMS C5). Inference only: no backward.
            self.cache = None
            return np.broadcast_to(p["beta"], x.shape).copy()
        if self.fused:
            y, self.cache, _, _ = bn_train_forward(x, p["gamma"], p["beta"], self.eps, self.overwrite_input,
                                                   self.batch_stats)
            return y
        y, self.cache, mean, var = batchnorm_forward(x, p["gamma"], p["beta"], self.eps)
        self.batch_stats = (mean, var)
        if mode == "train":
            update_running_average(b["running_mean"], b["running_var"], mean, var, x.shape[0], self.decay)
        return y

    def backward(self, dy):
        g = self.grads
        if self.fused:
            return bn_backward(dy, self.cache, g["gamma"], g["beta"], self.overwrite_grad)[0]
        dx, dgamma, dbeta = batchnorm_backward(dy, self.cache)
        g["gamma"][...] = dgamma  # in place: the arrays may be views into a model's flat gradient buffer
        g["beta"][...] = dbeta
        return dx
