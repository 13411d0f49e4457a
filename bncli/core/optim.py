"""Optimizers and learning-rate schedules, updating parameter arrays in place.

Defaults (PyTorch's):
* sgd:       w -= lr * g
* momentum:  v = mu * v + g;  w -= lr * v                       (mu = 0.9; heavy ball, as torch.optim.SGD)
* rmsprop:   s = rho * s + (1 - rho) * g^2;  w -= lr * g / (sqrt(s) + eps)     (rho = 0.99, eps = 1e-8)
* adam:      m, v with beta1 = 0.9, beta2 = 0.999, eps = 1e-8 and bias correction (Kingma & Ba 2015)
Weight decay (L2, coupled: g += wd * w) applies to weight matrices only, never to biases or BN's gamma/beta.
"""

from __future__ import annotations

import math

import numpy as np

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
SCHEDULES = ("constant", "step", "cosine")


def lr_at(step, total_steps, lr, schedule="constant", step_size=1000, gamma=0.1, min_lr=0.0, warmup=0):
    """Learning rate for 0-based ``step``: optional linear warm-up, then constant, step decay or cosine to min_lr."""
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    if schedule == "step":
        return lr * gamma ** ((step - warmup) // step_size)
    if schedule == "cosine":
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")


class Optimizer:
    """Updates ``params`` from ``grads`` (dicts with the same keys) in place.

    ``flat=(params, grads, decay_mask)`` (``MLP.flat``), when every parameter and gradient is a view into one
    contiguous buffer, makes one update over the whole buffer instead of one per array: the same arithmetic element by
    element (bit-identical results), a handful of NumPy calls per step instead of a handful per parameter. The owner
    of the buffer lays out ``decay_mask`` (1 where weight decay applies, 0 elsewhere) as it lays out the parameters.
    Without ``flat``, weight decay applies to the parameters whose key ends in ".W".

    ``step`` consumes the gradients: sgd and momentum use the gradient arrays as scratch space (the next backward
    overwrites them anyway). Without a separate scratch array the update's working set is params + grads (+ velocity)
    instead of one array more, which fits the cache better: measured 4 % of a batch-60 training step."""

    def __init__(self, params: dict, grads: dict, name="sgd", momentum=0.9, rho=0.99, beta1=0.9, beta2=0.999,
                 eps=1e-8, weight_decay=0.0, flat=None):
        if name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")
        self.name, self.params, self.grads = name, params, grads
        self.momentum, self.rho, self.beta1, self.beta2, self.eps = momentum, rho, beta1, beta2, eps
        self.weight_decay = weight_decay
        self.decayed = {k for k in params if k.endswith(".W")}
        self.t = 0
        if flat is not None:
            fp, fg, mask = flat
            self.groups = [(fp, fg, mask)]
        else:
            self.groups = [(p, grads[k], k in self.decayed) for k, p in params.items()]
        slots = {"sgd": 0, "momentum": 1, "rmsprop": 1, "adam": 2}[name]
        self.state = [[np.zeros_like(p) for _ in range(slots)] for p, _, _ in self.groups]
        # rmsprop and adam still need g after their first use of a scratch array: one per group, so an update makes
        # no temporaries the size of the parameters.
        self.scratch = [np.empty_like(p) if name in ("rmsprop", "adam") else None for p, _, _ in self.groups]

    def step(self, lr):
        self.t += 1
        name = self.name
        if name == "adam":
            # Bias corrections folded into the step size and eps (same update, fewer array passes).
            c1 = 1.0 - self.beta1 ** self.t
            c2 = 1.0 - self.beta2 ** self.t
            step_size = lr * math.sqrt(c2) / c1
            eps_hat = self.eps * math.sqrt(c2)
        for (p, g, decay), state, tmp in zip(self.groups, self.state, self.scratch):
            if isinstance(lr, np.ndarray):  # one learning rate per stacked model (core/stack.py): rounded to the
                lr = lr.astype(p.dtype)  # parameters' dtype as a scalar is, never computed in float64
                if name == "adam":
                    step_size = step_size.astype(p.dtype)
            if self.weight_decay and decay is not False:
                g = g + self.weight_decay * (p if decay is True else p * decay)
            if name == "sgd":
                p -= np.multiply(g, lr, out=g)
            elif name == "momentum":
                (v,) = state
                v *= self.momentum
                v += g
                p -= np.multiply(v, lr, out=g)
            elif name == "rmsprop":
                (s,) = state
                s *= self.rho
                s += np.multiply(np.square(g, out=tmp), 1.0 - self.rho, out=tmp)
                np.sqrt(s, out=tmp)
                tmp += self.eps
                np.divide(g, tmp, out=tmp)
                p -= np.multiply(tmp, lr, out=tmp)
            else:
                m, v = state
                m *= self.beta1
                m += np.multiply(g, 1.0 - self.beta1, out=tmp)
                v *= self.beta2
                v += np.multiply(np.square(g, out=tmp), 1.0 - self.beta2, out=tmp)
                np.sqrt(v, out=tmp)
                tmp += eps_hat
                np.divide(m, tmp, out=tmp)
                p -= np.multiply(tmp, step_size, out=tmp)
