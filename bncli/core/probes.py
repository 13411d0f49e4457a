"""Two measurements of Santurkar, Tsipras, Ilyas & Madry 2018 ("How Does Batch Normalization Help Optimization?"),
taken at a training step: arrays in, arrays out, no I/O, no random numbers.

1. Internal covariate shift, their Definition 2.1. At step t with minibatch (x, y) and parameters θ_t, for a weight
   layer i: G = ∇_{W_i} L(θ_t) and G' = ∇_{W_i} L(θ'), where θ' is θ_{t+1} (the parameters after this step's update)
   for every parameter *below* layer i and θ_t for layer i and everything above it. Reported: ||G - G'||_2
   (Frobenius), cos(G, G') and ||G||. "Below" a layer = every parameter of every layer that precedes it in
   ``model.layers`` (dense weights and biases, BN gamma and beta of the blocks underneath).

2. Smoothness of the loss landscape along the gradient, their §3.1 and Fig. 4. At θ with gradient g = ∇L(θ), for
   each step size η: L(θ - ηg) and ∇L(θ - ηg) on the same minibatch, and from those
     loss variation        = max L - min L over the base point η = 0 and every η of the list,
     gradient predictiveness = max_η ||∇L(θ) - ∇L(θ - ηg)||_2,
     effective β-smoothness  = max_η ||∇L(θ) - ∇L(θ - ηg)||_2 / ||ηg||_2   (η = 0 left out; ||ηg|| = |η| ||g||).
   The base point belongs to the loss range: the figure's band is the loss met when moving from θ along -g, and θ
   itself is where the move starts (without it, a single η would give a variation of 0). A non-finite probe value
   propagates (an inf loss gives an inf variation, a nan a nan): the landscape blew up there.

Norms, dot products and differences are computed in float64 whatever the model's dtype.

The generic part (``gradient_change``, ``smoothness``, ``smoothness_summary``) knows nothing of models: it takes
functions of a flat parameter vector. ``probe_step`` adapts it to a ``Network`` and its ``Optimizer``: one training
step exactly as ``training.train_step`` takes it, with both measurements taken around it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from .layers import softmax_cross_entropy
from .model import offset

_QUIET = {"over": "ignore", "invalid": "ignore", "divide": "ignore", "under": "ignore"}


class Smoothness(NamedTuple):
    """What ``smoothness`` measured at θ: L(θ), ||g|| and one row per step size. ``smoothness`` gives rows
    (eta, loss, grad_diff_l2); ``probe_step`` gives rows (multiple, eta, loss, grad_diff_l2) with eta = multiple * lr.
    Either way the last three entries of a row are (eta, L(θ - eta g), ||∇L(θ) - ∇L(θ - eta g)||_2)."""

    base_loss: float
    grad_norm: float
    rows: list[tuple]


def _norm(v64: np.ndarray) -> float:
    return math.sqrt(float(np.dot(v64, v64)))


def gradient_change(grad_fn: Callable[[np.ndarray], np.ndarray], theta0: np.ndarray, theta1: np.ndarray,
                    blocks: Sequence[tuple], g0: np.ndarray | None = None) -> list[tuple[float, float, float]]:
    """Santurkar et al. Def. 2.1 on a flat parameter vector.

    ``grad_fn(theta)`` returns the flat gradient at ``theta`` (it may return a buffer that the next call overwrites:
    each result is read before the next call, and ``theta`` is never kept). ``blocks``: one ``(below, own)`` per
    layer, both indexing the flat vector (a slice or an index array): ``below`` the parameters beneath the layer,
    ``own`` the layer's weights. For each block, G = grad_fn(theta0)[own] and G' = grad_fn(θ')[own] with
    θ' = theta1 on ``below`` and theta0 elsewhere. ``g0``, when given, is grad_fn(theta0) already computed.

    Returns one ``(l2_diff, cosine, norm_G)`` per block: ||G - G'||_2, cos(G, G') (nan when G or G' is 0), ||G||_2,
    in float64.
    """
    if g0 is None:
        g0 = np.array(grad_fn(theta0), copy=True)
    work = np.array(theta0, copy=True)
    out = []
    for below, own in blocks:
        work[below] = theta1[below]
        g1 = np.asarray(grad_fn(work))[own].astype(np.float64).reshape(-1)  # a copy: read before the next call
        work[below] = theta0[below]
        g = np.asarray(g0)[own].astype(np.float64).reshape(-1)
        norm_g, norm_g1 = _norm(g), _norm(g1)
        cos = float(np.dot(g, g1)) / (norm_g * norm_g1) if norm_g > 0 and norm_g1 > 0 else math.nan
        if math.isfinite(cos):
            cos = min(1.0, max(-1.0, cos))
        np.subtract(g, g1, out=g)
        out.append((_norm(g), cos, norm_g))
    return out


def smoothness(loss_grad_fn: Callable[[np.ndarray], tuple[float, np.ndarray]], theta: np.ndarray, g: np.ndarray,
               etas: Sequence[float], base_loss: float | None = None) -> Smoothness:
    """The loss and gradient change along -g from ``theta`` (Santurkar et al. §3.1): for each η of ``etas``, L(θ - ηg)
    and ||g - ∇L(θ - ηg)||_2, with ``g`` = ∇L(θ). ``loss_grad_fn(theta)`` returns (loss, flat gradient); the
    gradient may be a buffer the next call overwrites, and ``theta`` (a work buffer of this function) is never kept.
    θ - ηg is computed in ``theta``'s dtype as ``theta - eta * g``. ``base_loss`` is L(θ) when known (else one
    more call). Returns ``Smoothness(base_loss, ||g||, [(eta, loss, grad_diff_l2)])``."""
    if base_loss is None:
        base_loss = float(loss_grad_fn(np.array(theta, copy=True))[0])
    g64 = np.asarray(g, dtype=np.float64)
    diff = np.empty(g64.shape, np.float64)
    work = np.empty_like(theta)
    rows = []
    for eta in etas:
        eta = float(eta)  # a Python float: the product is taken in g's dtype
        np.multiply(g, eta, out=work)
        np.subtract(theta, work, out=work)
        loss, grad = loss_grad_fn(work)
        np.subtract(g64, grad, out=diff, dtype=np.float64)
        rows.append((eta, float(loss), _norm(diff)))
    return Smoothness(float(base_loss), _norm(g64), rows)


def smoothness_summary(s: Smoothness) -> tuple[float, float, float]:
    """(loss variation, gradient predictiveness, effective β-smoothness) of a ``Smoothness`` (module docstring):
    max - min of the losses including L(θ); the largest gradient change; the largest gradient change per unit of
    distance moved, |η| ||g||, over the η != 0 (nan when there is none or ||g|| = 0). nan without rows."""
    if not s.rows:
        return math.nan, math.nan, math.nan
    etas, losses, diffs = (np.array(c, np.float64) for c in zip(*(r[-3:] for r in s.rows)))
    losses = np.append(losses, s.base_loss)
    moved = np.abs(etas) * s.grad_norm
    beta = diffs[moved > 0] / moved[moved > 0]
    return float(losses.max() - losses.min()), float(diffs.max()), float(beta.max()) if beta.size else math.nan


def ics_blocks(model) -> list[tuple[str, slice, slice]]:
    """(layer name, below, own) for every layer with a weight matrix ``W`` (Dense; Conv2d in a ConvNet) that has at
    least one parameter below it: ``below`` = every parameter of the layers before it in ``model.layers`` (the flat
    buffer holds the parameters in layer order), ``own`` = its ``W``."""
    base, out = model.flat.params, []
    for name, layer in model.layers:
        if "W" not in layer.params:
            continue
        start = min(offset(base, v) for v in layer.params.values())
        w = offset(base, layer.params["W"])
        if start > 0:
            out.append((name, slice(0, start), slice(w, w + layer.params["W"].size)))
    return out


def probe_step(model, opt, xb, yb, lr, multiples: Sequence[float], ics: bool = True, smooth: bool = True):
    """The step ``training.train_step`` takes, with both measurements taken around it.

    Returns ``(loss, correct, ics_rows, smooth)``:
    * ``loss``, ``correct``: what train_step returns;
    * ``ics_rows``: ``[(layer_name, l2_diff, cosine, norm_G)]``, one per layer of ``ics_blocks`` (Def. 2.1 with
      θ_{t+1} from this very step); ``[]`` when ``ics`` is False or the loss is not finite;
    * ``smooth``: ``Smoothness(base_loss, grad_norm, [(multiple, eta, loss, grad_diff_l2)])`` with
      eta = multiple * lr, base_loss the step's loss and grad_norm ||∇L(θ_t)|| (all parameters);
      ``None`` when ``smooth`` is False or the loss is not finite. ``smoothness_summary`` condenses it.

    Every probe pass is a "train"-mode forward and backward on the same minibatch (batch statistics and the current
    noise draw, exactly the training computation). A non-finite loss leaves the parameters untouched and skips the
    probes, as train_step does. Afterwards the model is where train_step would have left it: the same parameters
    (bit for bit), BN running averages, gradient buffer (what ``opt.step`` left there) and optimizer state (stepped
    once, with the real gradient at θ_t). Only the scratch of the last forward/backward (layer caches, the last
    batch's statistics) comes from the last probe pass; the next forward overwrites it.

    Memory: copies of θ_t, ∇L(θ_t) (and θ_{t+1} and the stepped gradient buffer for ICS), one float64 flat buffer
    and two work vectors.
    """
    loss, dlogits, correct = softmax_cross_entropy(model.forward(xb, "train"), yb)
    if not math.isfinite(loss):
        return loss, correct, [], None
    model.backward(dlogits)
    blocks = ics_blocks(model) if ics else []
    if not (blocks or smooth):
        opt.step(lr)
        return loss, correct, [], None

    params, grads = model.flat.params, model.flat.grads
    buffers = model.get_buffers()  # the running averages after the real forward
    theta0, g0 = params.copy(), grads.copy()

    def loss_grad(theta):
        if theta is not params:
            params[...] = theta
        value, d, _ = softmax_cross_entropy(model.forward(xb, "train"), yb)
        model.backward(d)
        return value, grads

    smooth_out = None
    if smooth:
        etas = [m * lr for m in multiples]
        with np.errstate(**_QUIET):
            s = smoothness(loss_grad, theta0, g0, etas, base_loss=loss)
        smooth_out = Smoothness(s.base_loss, s.grad_norm, [(float(m), *r) for m, r in zip(multiples, s.rows)])
        params[...] = theta0
        grads[...] = g0

    opt.step(lr)  # the real update, from the real gradient at θ_t

    ics_rows = []
    if blocks:
        theta1, stepped = params.copy(), grads.copy()
        with np.errstate(**_QUIET):
            res = gradient_change(lambda th: loss_grad(th)[1], theta0, theta1, [(b, o) for _, b, o in blocks], g0)
        ics_rows = [(name, *r) for (name, _, _), r in zip(blocks, res)]
        params[...] = theta1
        grads[...] = stepped
    model.set_buffers(buffers)
    return loss, correct, ics_rows, smooth_out
