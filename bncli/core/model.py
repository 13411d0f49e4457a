"""Networks: ``Network`` (what every model does with its list of layers) and ``MLP``, dense -> [BN] -> activation
-> [BN] per hidden layer, then a dense output layer. ``convnet.ConvNet`` puts convolution blocks in front.

``bn="before"`` puts BN between the dense layer and its activation (the paper's and the notes' usual choice) and
drops that dense layer's bias, which BN's mean subtraction cancels (CLAIMS C7; ``bias_with_bn=True`` keeps it for
the experiment that shows it). ``bn="after"`` normalizes the activation's output instead. ``bn="noisy"`` is "before"
with a `noise.NoisyShift` between each BN and its activation (Santurkar et al. 2018, §2.1): the activation's inputs
get a random per-unit scale and shift, redrawn each training step by ``draw_noise``; same weights as "before".
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import NamedTuple

import numpy as np

from .batchnorm import BatchNorm, SpatialBatchNorm, fold_into_dense, update_running_stacked
from .layers import Activation, Dense, init_weights
from .noise import NoisyShift

PLACEMENTS = ("none", "before", "after", "noisy")
BN_IMPLS = ("fused", "textbook")


def chunks(n: int, chunk: int) -> list[tuple[int, int]]:
    """[start, stop) spans of at most ``chunk`` rows covering ``n``, except that a last span of one row is merged
    into the one before: BLAS takes its matrix-vector path for a single row, which on some kernels (OpenBLAS's
    Haswell) rounds differently from the matrix-matrix path, and eval results must not depend on the chunking."""
    spans = [(i, min(i + chunk, n)) for i in range(0, n, chunk)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] == 1:
        spans[-2:] = [(spans[-2][0], n)]
    return spans


class Flat(NamedTuple):
    """Every parameter and gradient of a model as views into one contiguous buffer each, and the weight-decay mask
    laid out alike (1 on weight-matrix entries, 0 on biases, gamma and beta). ``Optimizer(..., flat=model.flat)``
    updates all of them in one pass."""

    params: np.ndarray
    grads: np.ndarray
    decay_mask: np.ndarray


def offset(base: np.ndarray, view: np.ndarray) -> int:
    """Where ``view`` starts in the flat array ``base``, in elements."""
    return (view.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // base.itemsize


class Network:
    """What every model does with ``self.layers`` (a list of (name, layer)): forward and backward passes, inference
    in chunks, its BN layers' statistics, and one flat buffer for every parameter and gradient. A subclass builds
    the layers, then calls ``_finish``."""

    eval_chunk = 4096  # examples per inference chunk

    def _finish(self):
        self.flat = self._flatten()
        self.params = {f"{n}.{k}": v for n, layer in self.layers for k, v in layer.params.items()}
        self.grads = {f"{n}.{k}": v for n, layer in self.layers for k, v in layer.grads.items()}

    def _flatten(self):
        """Re-home every parameter and gradient into one buffer each (in layer order) and lay out the weight-decay
        mask alongside: weight decay applies to weight matrices only (optim.py)."""
        total = sum(v.size for _, layer in self.layers for v in layer.params.values())
        flat = Flat(np.empty(total, self.dtype), np.zeros(total, self.dtype), np.zeros(total, self.dtype))
        offset = 0
        for _, layer in self.layers:
            for k, v in layer.params.items():
                end = offset + v.size
                layer.params[k] = flat.params[offset:end].reshape(v.shape)
                layer.params[k][...] = v
                layer.grads[k] = flat.grads[offset:end].reshape(v.shape)
                flat.decay_mask[offset:end] = k == "W"
                offset = end
        return flat

    # -- training and inference ------------------------------------------------------------------------------
    def forward(self, x, mode="train"):
        """mode: "train" (batch stats, running averages updated), "eval" (running/population stats),
        "batch" (batch stats, buffers untouched)."""
        if mode not in ("train", "eval", "batch"):
            raise ValueError(f"unknown mode {mode!r}; expected 'train', 'eval' or 'batch'")
        n = x.shape[0]
        for _, layer in self.layers:
            x = layer.forward(x, mode)
        if mode == "train" and self._running.size:
            self.update_running_stats(n)
        return x

    def update_running_stats(self, n):
        """Every fused BN layer's running averages from its last batch statistics, in one call."""
        update_running_stacked(self._running, self._batch_stats, n, self.bn_decay)

    def backward(self, dlogits):
        d = dlogits
        for _, layer in reversed(self.layers):
            d = layer.backward(d)
            if d is None:
                break

    def activation_inputs(self, X, mode="eval", layer=None):
        """The array entering the last hidden layer's nonlinearity (Ioffe & Szegedy Fig. 1b,c), or the one of the
        activation layer named ``layer``, for X."""
        acts = [i for i, (n, a) in enumerate(self.layers) if isinstance(a, Activation) and layer in (None, n)]
        if not acts:
            names = [n for n, a in self.layers if isinstance(a, Activation)]
            raise ValueError(f"no activation layer {layer!r}; expected one of {names}")
        for _, layer in self.layers[:acts[-1]]:
            X = layer.forward(X, mode)
        return X

    def logits(self, X, mode="eval", chunk=None):
        """Inference in large chunks (per-example results do not depend on the chunking in eval mode)."""
        spans = chunks(len(X), chunk or self.eval_chunk)
        if len(spans) <= 1:
            return self.forward(X, mode)
        return np.concatenate([self.forward(X[a:b], mode) for a, b in spans])

    # -- BN statistics ---------------------------------------------------------------------------------------
    def bn_layers(self):
        return [(n, layer) for n, layer in self.layers if isinstance(layer, (BatchNorm, SpatialBatchNorm))]

    def get_buffers(self):
        return {f"{n}.{k}": v.copy() for n, layer in self.bn_layers() for k, v in layer.buffers.items()}

    def set_buffers(self, buffers):
        for n, layer in self.bn_layers():
            for k in layer.buffers:
                layer.buffers[k][...] = buffers[f"{n}.{k}"]

    def population_stats(self, X, batch_size):
        """Ioffe & Szegedy Alg. 2: over training minibatches of size m, E[x] = mean of batch means and
        Var[x] = c/(c-1) * mean of biased batch variances, c the values behind each statistic (m, or m·H·W). Returns buffers; the model is not changed."""
        bns = self.bn_layers()
        m = batch_size
        n_batches = len(X) // m
        if n_batches == 0 or m < 2:
            raise ValueError(f"population statistics need batches of >= 2 samples and >= 1 batch (N={len(X)}, m={m})")
        sums = {n: [np.zeros(layer.params["gamma"].shape), np.zeros(layer.params["gamma"].shape)] for n, layer in bns}
        counts = {}  # values behind each statistic: m, or m * H * W for the per-channel BN of a feature map
        for i in range(n_batches):
            self.forward(X[i * m:(i + 1) * m], "batch")
            for n, layer in bns:
                mean, var = layer.batch_stats
                sums[n][0] += mean
                sums[n][1] += var
                counts[n] = getattr(layer, "count", m)
        out = {}
        for n, _ in bns:
            c = counts[n]
            out[f"{n}.running_mean"] = (sums[n][0] / n_batches).astype(self.dtype)
            out[f"{n}.running_var"] = (sums[n][1] / n_batches * (c / (c - 1))).astype(self.dtype)
        return out

    # -- noisy BN (noise.py) ---------------------------------------------------------------------------------
    def noise_layers(self):
        return [(n, layer) for n, layer in self.layers if isinstance(layer, NoisyShift)]

    def draw_noise(self, rng: np.random.Generator):
        """A new draw for every noise layer, in layer order (once per training step; nothing without noise)."""
        for _, layer in self.noise_layers():
            layer.draw(rng)

    @contextmanager
    def noise_always(self):
        """Within the block every noise layer applies its current draw in every mode, not only in "train"."""
        layers = [layer for _, layer in self.noise_layers()]
        old = [layer.always for layer in layers]
        for layer in layers:
            layer.always = True
        try:
            yield self
        finally:
            for layer, a in zip(layers, old):
                layer.always = a

class MLP(Network):
    """``bn_impl="fused"`` (the default) builds BN layers on the fast path (batchnorm.py section 2), "textbook"
    on the textbook path (section 1): the same network up to rounding."""

    def __init__(self, n_in, hidden, n_out, *, rng: np.random.Generator, activation="relu", bn="none",
                 init="he", init_std=0.05, bn_decay=0.9, bn_eps=1e-5, bias_with_bn=False, dtype=np.float32,
                 bn_impl="fused", noise_mean=1.0, noise_scale=(0.5, 2.0)):
        if bn not in PLACEMENTS:
            raise ValueError(f"unknown BN placement {bn!r}; expected one of {PLACEMENTS}")
        if bn_impl not in BN_IMPLS:
            raise ValueError(f"unknown BN implementation {bn_impl!r}; expected one of {BN_IMPLS}")
        self.bn, self.bn_impl, self.bn_decay, self.bn_eps = bn, bn_impl, bn_decay, bn_eps
        self.dtype = np.dtype(dtype)
        # The fused BN layers keep their statistics in views into these arrays (layer after layer along axis 1),
        # so one update_running_stacked call per training step covers every layer.
        total = sum(hidden) if bn != "none" and bn_impl == "fused" else 0
        self._running = np.stack([np.zeros(total, self.dtype), np.ones(total, self.dtype)])
        self._batch_stats = np.zeros((2, total), self.dtype)
        self.layers: list[tuple[str, object]] = []
        sizes = [n_in, *hidden]
        before = bn in ("before", "noisy")  # BN between the dense layer and its activation
        # Weights are drawn in the same order for every placement, so arms with the same seed share their weights.
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            W = init_weights(rng, a, b, init, init_std, self.dtype)
            self.layers.append((f"dense{i}", Dense(W, bias=not before or bias_with_bn, need_dx=i > 1)))
            start = sum(sizes[1:i])
            if before:
                self.layers.append((f"bn{i}", self._bn_layer(start, b, input_is_fresh=True)))
            if bn == "noisy":
                self.layers.append((f"noise{i}", NoisyShift(b, mean=noise_mean, scale_low=noise_scale[0],
                                                            scale_high=noise_scale[1], dtype=self.dtype,
                                                            inplace=True)))
            # Every activation's input (a dense, BN or noise output) and upstream gradient are fresh arrays nobody
            # else holds, so the activation (and the noise) may work in place.
            self.layers.append((f"act{i}", Activation(activation, inplace=True)))
            if bn == "after":
                self.layers.append((f"bn{i}", self._bn_layer(start, b, input_is_fresh=False)))
        W = init_weights(rng, sizes[-1], n_out, init, init_std, self.dtype)
        self.layers.append(("out", Dense(W, bias=True, need_dx=len(sizes) > 1)))
        self._finish()

    def _bn_layer(self, start, dim, input_is_fresh):
        """Every BN layer of the model is built here. ``input_is_fresh``: its input is a dense layer's output,
        which nobody reads after BN; an activation's output is not (the activation keeps it for its backward)."""
        kw = dict(decay=self.bn_decay, eps=self.bn_eps, dtype=self.dtype)
        if self.bn_impl == "textbook":
            return BatchNorm(dim, **kw)
        state = (self._running[:, start:start + dim], self._batch_stats[:, start:start + dim])
        # The upstream gradient of a BN layer is always a fresh array (an activation's or a dense layer's dx).
        return BatchNorm(dim, **kw, fused=True, state=state, overwrite_input=input_is_fresh, overwrite_grad=True)

    def rehome(self, params, grads, running, batch_stats):
        """Move every parameter, gradient and fused BN statistic into the given arrays (laid out as ``flat`` and
        ``_running``), keeping their values: `core.stack.Stack` gives each model a row of its stacked arrays."""
        base, stats_base = self.flat.params, self._running[0]
        for _, layer in self.layers:
            for k, v in layer.params.items():
                o = offset(base, v)
                params[o:o + v.size] = v.reshape(-1)
                grads[o:o + v.size] = layer.grads[k].reshape(-1)
                layer.params[k] = params[o:o + v.size].reshape(v.shape)
                layer.grads[k] = grads[o:o + v.size].reshape(v.shape)
        running[...], batch_stats[...] = self._running, self._batch_stats
        for _, layer in self.bn_layers():
            if layer.fused:
                s, d = offset(stats_base, layer.buffers["running_mean"]), layer.params["gamma"].size
                layer.buffers = {"running_mean": running[0, s:s + d], "running_var": running[1, s:s + d]}
                layer.batch_stats = batch_stats[:, s:s + d]
        self._running, self._batch_stats = running, batch_stats
        self.flat = Flat(params, grads, self.flat.decay_mask)
        self.params = {f"{n}.{k}": v for n, layer in self.layers for k, v in layer.params.items()}
        self.grads = {f"{n}.{k}": v for n, layer in self.layers for k, v in layer.grads.items()}

    # -- inference-time folding (CLAIMS C12) ---------------------------------------------------------------
    def folded_layers(self):
        """Inference layers with every "before" BN folded into its dense layer: [(W, b, activation or None)]."""
        if self.bn == "after":
            raise ValueError("folding needs BN directly after a dense layer (placement 'before' or 'none')")
        if self.bn == "noisy":
            raise ValueError("cannot fold noisy BN: a noise layer sits between each BN and its activation (folding "
                             "covers placements 'before' and 'none')")
        out, i = [], 0
        while i < len(self.layers):
            _, dense = self.layers[i]
            W, b = dense.params["W"], dense.params.get("b")
            i += 1
            if i < len(self.layers) and isinstance(self.layers[i][1], BatchNorm):
                bn = self.layers[i][1]
                W, b = fold_into_dense(W, b, bn.params["gamma"], bn.params["beta"], bn.buffers["running_mean"],
                                       bn.buffers["running_var"], bn.eps)
                i += 1
            act = None
            if i < len(self.layers) and isinstance(self.layers[i][1], Activation):
                act = self.layers[i][1].name
                i += 1
            out.append((W, np.zeros(W.shape[1], W.dtype) if b is None else b, act))
        return out
