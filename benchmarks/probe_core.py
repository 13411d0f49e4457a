"""Local, bit-for-bit equivalent variants of a few bncli core functions, and what they would save per step.

    python benchmarks/probe_core.py [--reps N]

Nothing in bncli is modified: the variants are patched onto the layer *instances* of a model built here. Each
variant is first checked to give exactly the same arrays as the core function, then the full training step (as in
bench_step.py) is timed with and without the variants, interleaved in blocks, one BLAS thread.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from bench_step import NETS, bench, make_batches, make_step  # noqa: E402

from bncli.core import Activation, BatchNorm  # noqa: E402
from bncli.core.batchnorm import bn_train_forward, update_running  # noqa: E402

F32 = np.float32


def bn_train_forward_fast(x, gamma, beta, eps):
    """bncli.core.batchnorm.bn_train_forward without np.mean's Python wrapper and the 1/sqrt temporaries."""
    n = x.shape[0]
    mean = x.sum(axis=0)
    mean /= n  # the same float32 sum and division as x.mean(axis=0)
    xc = x - mean
    var = np.einsum("ij,ij->j", xc, xc)
    var /= n
    inv_std = var + eps
    np.sqrt(inv_std, out=inv_std)
    np.divide(1.0, inv_std, out=inv_std)
    xc *= inv_std
    y = xc * gamma
    y += beta
    return y, (xc, inv_std, gamma), mean, var


def bn_forward_fast(self, x, mode="train"):
    if mode != "train":
        return BatchNorm.forward(self, x, mode)
    p, b = self.params, self.buffers
    y, self.cache, mean, var = bn_train_forward_fast(x, p["gamma"], p["beta"], self.eps)
    update_running(b["running_mean"], b["running_var"], mean, var, x.shape[0], self.decay)
    self.last_stats = (mean, var)
    return y


def act_forward_fast(self, x, mode="train"):
    """Sigmoid in place in one output array (the core allocates x * 0.5 and tanh's result separately)."""
    if self.name != "sigmoid":
        return Activation.forward(self, x, mode)
    y = np.multiply(x, 0.5)
    np.tanh(y, out=y)
    y += 1
    y *= 0.5
    self.cache = y
    return y


def act_backward_fast(self, dy):
    """Sigmoid backward with one temporary instead of three; (dy * y) * (1 - y) as in the core."""
    if self.name != "sigmoid":
        return Activation.backward(self, dy)
    y = self.cache
    d = dy * y
    d *= 1 - y
    return d


def check_equal(rng):
    for n, d in ((60, 100), (1024, 512)):
        x, dy = rng.standard_normal((2, n, d), dtype=F32)
        g, b = rng.random(d, dtype=F32) + 0.5, rng.standard_normal(d, dtype=F32)
        ref, new = bn_train_forward(x.copy(), g, b, 1e-5), bn_train_forward_fast(x.copy(), g, b, 1e-5)
        assert all(np.array_equal(u, v) for u, v in zip([ref[0], *ref[1], ref[2], ref[3]],
                                                         [new[0], *new[1], new[2], new[3]])), "bn forward differs"
        a, fast = Activation("sigmoid"), Activation("sigmoid")
        assert np.array_equal(a.forward(x), act_forward_fast(fast, x)), "sigmoid forward differs"
        assert np.array_equal(a.backward(dy), act_backward_fast(fast, dy)), "sigmoid backward differs"


def patch(model):
    for _, layer in model.layers:
        if isinstance(layer, BatchNorm):
            layer.forward = types.MethodType(bn_forward_fast, layer)
        elif isinstance(layer, Activation):
            layer.forward = types.MethodType(act_forward_fast, layer)
            layer.backward = types.MethodType(act_backward_fast, layer)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=300, help="timed steps per variant and config")
    args = p.parse_args(argv)
    with threadpool_limits(1, user_api="blas"), np.errstate(all="ignore"):
        check_equal(np.random.default_rng(0))
        print("variants give bit-identical arrays; full step, ms (median / min over blocks of 10):")
        cfgs = [("sigmoid 100x3", bn, b) for b in (60, 256, 1024) for bn in ("none", "before")]
        for net, bn, batch in cfgs + [("relu 512x2", "before", 256)]:  # relu: only the BN variant applies
            hidden, act = NETS[net]
            batches = make_batches(np.random.default_rng(1), batch)
            (core, _), (fast, fast_model) = make_step(hidden, act, bn, batches), make_step(hidden, act, bn, batches)
            patch(fast_model)
            t, _ = bench({"core": core, "fast": fast}, args.reps, 10, 30)
            med = {k: v["median"] for k, v in t.items()}
            mn = {k: v["min"] for k, v in t.items()}
            print(f"  {net} bn={bn:<6} batch={batch:<5} core {med['core']:.3f} / {mn['core']:.3f}   "
                  f"variants {med['fast']:.3f} / {mn['fast']:.3f}   saved {1 - med['fast'] / med['core']:+.1%} "
                  f"(min: {1 - mn['fast'] / mn['core']:+.1%})")


if __name__ == "__main__":
    main()
