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
5. BN for images: ``SpatialBatchNorm`` is section 4's layer on a 2-D view of a channels-last (N, H, W, C) array,
   one gamma and beta per channel over N*H*W values (or per activation, CLAIMS C13's control).

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


# -- 5. BN for images --------------------------------------------------------------------------------------------
BN_PER = ("channel", "activation")
_MODES = ("train", "eval", "batch")


class SpatialBatchNorm:
    """BN of a channels-last array (N, ..., C): a convolution's output (N, H, W, C), or (N, D). It is ``BatchNorm``
    (the attribute ``bn``) on a 2-D view of the input, so images and the MLP share one implementation of the math.

    ``per="channel"`` (spatial BN, the paper's Sec. 3.2, PyTorch's BatchNorm2d): the rows are x.reshape(-1, C), so
    each channel is normalized over all N*H*W values of the batch, with one gamma, beta and pair of running
    statistics per channel: every position of a feature map is transformed alike, as the convolution treats it.
    The running variance's unbiased factor n/(n-1) uses n = N*H*W, the number of values each statistic is over.
    ``per="activation"`` (CLAIMS C13's control): the rows are x.reshape(N, -1), each (h, w, c) unit normalized over
    the N images alone, with H*W*C parameters; ``spatial=(H, W)`` sizes them (it is ignored for "channel"). On
    (N, D) input both are the usual BN of D = ``channels`` features.

    ``fused=True`` runs section 2 on the layer's own (2, D) state arrays ``state=(running, batch_stats)`` and
    updates the running statistics itself after each "train" forward (one ``update_running_stacked`` call);
    ``fused=False`` runs section 1. Neither overwrites its input or upstream gradient, whose owners may still read
    them. ``params``, ``grads`` and ``buffers`` are the wrapped layer's dicts (the same arrays); modes are its modes;
    ``count`` is the number of values each statistic of the last batch-statistics forward was computed over.
    """

    def __init__(self, channels, *, decay=0.9, eps=1e-5, dtype=np.float32, fused=True, per="channel", spatial=None):
        if per not in BN_PER:
            raise ValueError(f"unknown BN granularity {per!r}; expected one of {BN_PER}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.channels, self.per, self.spatial = channels, per, spatial
        # The shape after the batch axis whose every entry is one feature: (C,) per channel (any spatial shape).
        self.unit_shape = (*spatial, channels) if per == "activation" and spatial is not None else (channels,)
        dim = int(np.prod(self.unit_shape))
        kw = {"decay": decay, "eps": eps, "dtype": dtype}
        if fused:
            self.state = (np.zeros((2, dim), dtype), np.zeros((2, dim), dtype))
            self.bn = BatchNorm(dim, **kw, fused=True, state=self.state)
        else:
            self.state = None
            self.bn = BatchNorm(dim, **kw)
        self.params, self.grads, self.buffers = self.bn.params, self.bn.grads, self.bn.buffers
        self.count = None
        self.shapes = None  # (input shape, rows shape) of the last forward

    # What a model reads of its BN layers, from the wrapped layer (its batch_stats are rebound on the textbook path).
    decay = property(lambda self: self.bn.decay)
    eps = property(lambda self: self.bn.eps)
    fused = property(lambda self: self.bn.fused)
    batch_stats = property(lambda self: self.bn.batch_stats, doc="(mean, biased var) of the last batch per feature")

    def _rows(self, x):
        """The 2-D array BN normalizes column by column: a view of a contiguous input (a convolution's output);
        any other input is copied once, explicitly, so the copy is not a surprise inside reshape."""
        if self.per == "channel":
            if x.ndim < 2 or x.shape[-1] != self.channels:
                raise ValueError(f"expected (N, ..., {self.channels}) input (channels last), got shape {x.shape}")
            return np.ascontiguousarray(x).reshape(-1, self.channels)
        if x.shape[1:] != self.unit_shape:
            raise ValueError(f"expected (N, {', '.join(map(str, self.unit_shape))}) input, got shape {x.shape}")
        return np.ascontiguousarray(x).reshape(x.shape[0], -1)

    def _one_value_message(self, shape, n):
        if self.per == "activation":
            what = f"at least 2 values per activation (got {n}: the batch has N = {shape[0]} sample{'s' * (n != 1)})"
        else:
            names = {2: "N", 3: "N*L", 4: "N*H*W"}.get(len(shape), "the product of the non-channel sizes")
            sizes = "*".join(map(str, shape[:-1]))
            what = f"at least 2 values per channel (got {n} value{'s' * (n != 1)} per channel: {names} = {sizes})"
        return (f"batch normalization in training mode needs {what}: the batch variance of a single value is 0 and "
                "its output would be beta alone")

    def forward(self, x, mode="train"):
        if mode not in _MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {_MODES}")
        rows = self._rows(x)
        n = rows.shape[0]
        if mode == "train" and n < 2:
            raise BatchOfOneError(self._one_value_message(x.shape, n))
        y = self.bn.forward(rows, mode)
        if mode == "train" and self.state is not None:
            update_running_stacked(*self.state, n, self.bn.decay)
        if mode != "eval":
            self.count = n
        self.shapes = (x.shape, rows.shape)
        return y.reshape(x.shape)

    def backward(self, dy):
        x_shape, rows_shape = self.shapes
        return self.bn.backward(dy.reshape(rows_shape)).reshape(x_shape)
