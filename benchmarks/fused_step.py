"""A yardstick for bench_step.py: the bncli training step hand-fused into one function over preallocated arrays.

It does the same arithmetic as ``bncli.training.train_step`` (dense -> [BN before] -> sigmoid/relu, softmax
cross-entropy, exact BN backward, running statistics, plain SGD over one flat parameter buffer) with the fewest
NumPy calls we found and no Python structure: no layer objects, no dicts, no allocations, every result written into
a buffer made once. It is *not* bncli code and has no features (one net, one optimizer, fixed batch size); it exists
to answer "how close to the matmul floor can any NumPy implementation of this step get?". Whatever remains between
it and the floor is NumPy's per-call cost and the passes over memory that only a compiled, fused kernel removes.

``check_same_step`` verifies, before anything is timed, that it trains like bncli: same parameters, buffers and
losses after a few steps from the same start.
"""

from __future__ import annotations

import numpy as np

from bncli.core import Activation, Dense


class FusedStep:
    def __init__(self, model, batch, lr):
        dense = [layer for _, layer in model.layers if isinstance(layer, Dense)]
        bns = [layer for _, layer in model.bn_layers()]
        if model.bn not in ("none", "before"):
            raise ValueError("the fused step covers BN placements 'none' and 'before'")
        acts = {layer.name for _, layer in model.layers if isinstance(layer, Activation)}
        if not acts <= {"sigmoid", "relu"}:
            raise ValueError(f"the fused step covers sigmoid and relu, not {sorted(acts)}")
        f = model.dtype
        self.act, self.bn, self.n, self.lr = acts.pop(), bool(bns), batch, lr
        self.eps = bns[0].eps if bns else 0.0
        self.decay = bns[0].decay if bns else 0.0
        # Own copies of the parameters in one flat buffer, laid out like the model's (so one SGD update covers all).
        self.flat_p, self.flat_g = model.flat.params.copy(), np.zeros_like(model.flat.grads)
        base = model.flat.params.__array_interface__["data"][0]

        def mine(arr, flat):
            start = (arr.__array_interface__["data"][0] - base) // arr.itemsize
            return flat[start:start + arr.size].reshape(arr.shape)

        self.W = [mine(d.params["W"], self.flat_p) for d in dense]
        self.dW = [mine(d.params["W"], self.flat_g) for d in dense]
        self.b = [mine(d.params["b"], self.flat_p) if "b" in d.params else None for d in dense]
        self.db = [mine(d.params["b"], self.flat_g) if "b" in d.params else None for d in dense]
        self.gamma = [mine(m.params["gamma"], self.flat_p) for m in bns]
        self.beta = [mine(m.params["beta"], self.flat_p) for m in bns]
        self.dgamma = [mine(m.params["gamma"], self.flat_g) for m in bns]
        self.dbeta = [mine(m.params["beta"], self.flat_g) for m in bns]
        widths = [W.shape[1] for W in self.W]
        total = sum(widths[:-1]) if bns else 0
        self.running = np.stack([np.zeros(total, f), np.ones(total, f)])
        self.stats = np.zeros((2, total), f)
        off = np.cumsum([0, *widths[:-1]])
        self.mean = [self.stats[0, a:b] for a, b in zip(off[:-1], off[1:])]
        self.var = [self.stats[1, a:b] for a, b in zip(off[:-1], off[1:])]
        self.run_w = np.array([[1.0 - self.decay], [(1.0 - self.decay) * batch / max(batch - 1, 1)]], f)
        new = lambda *shape: np.empty(shape, f)  # noqa: E731
        self.X = [new(batch, w) for w in widths]  # dense outputs (centered in place under BN)
        self.A = [new(batch, w) for w in widths[:-1]]  # activation outputs
        self.D = [new(batch, w) for w in widths[:-1]]  # upstream gradients of the hidden layers
        self.S = [new(batch, w) for w in widths[:-1]]  # scratch: squares, products
        self.T = [new(batch, w) for w in widths[:-1]]  # scratch: 1 - sigmoid
        self.inv = [new(w) for w in widths[:-1]]
        self.scale = [new(w) for w in widths[:-1]]
        self.k = [new(w) for w in widths[:-1]]
        self.shift = [new(w) for w in widths[:-1]]
        self.mean_w = np.full(batch, 1.0 / batch, f)
        self.ones_n = np.ones(batch, f)
        self.ones_c = np.ones(widths[-1], f)
        self.sums = new(batch)
        self.starts = np.arange(0, batch * widths[-1], widths[-1])

    def __call__(self, x, y):
        mm, mul, sub, add = np.matmul, np.multiply, np.subtract, np.add
        n, L = self.n, len(self.W) - 1
        a = x
        for i in range(L):
            h = mm(a, self.W[i], self.X[i])
            if self.bn:
                m = mm(self.mean_w, h, self.mean[i])
                sub(h, m, h)
                v = mm(self.mean_w, np.square(h, self.S[i]), self.var[i])
                inv = np.power(add(v, self.eps, self.inv[i]), -0.5, self.inv[i])
                out = mul(h, mul(self.gamma[i], inv, self.scale[i]), self.A[i])
                add(out, self.beta[i], out)
            else:
                out = add(h, self.b[i], self.A[i])
            if self.act == "sigmoid":
                mul(out, 0.5, out)
                np.tanh(out, out)
                mul(out, 0.5, out)
                add(out, 0.5, out)
            else:
                np.maximum(out, 0, out)
            a = out
        p = mm(a, self.W[L], self.X[L])
        add(p, self.b[L], p)
        flat, starts = p.reshape(-1), self.starts
        pred = p.argmax(axis=1)
        correct = int(np.count_nonzero(pred == y))
        sub(p, flat.take(starts + pred)[:, None], p)
        label_at = starts + y
        picked = flat.take(label_at)
        np.exp(p, p)
        sums = mm(p, self.ones_c, self.sums)
        lse = np.log(sums)
        loss = float(sub(lse, picked, lse).sum()) / n
        mul(sums, n, sums)
        np.divide(p, sums[:, None], p)
        flat[label_at] -= 1.0 / n
        if self.bn:
            self.running *= self.decay
            self.running += self.stats * self.run_w
        # backward
        d = p
        mm(self.ones_n, d, self.db[L])
        for i in range(L, -1, -1):
            if i < L:
                out = self.A[i]
                if self.act == "sigmoid":
                    mul(d, out, d)
                    mul(d, sub(1, out, self.T[i]), d)
                else:
                    mul(d, out > 0, d)
                if self.bn:
                    db = mm(self.ones_n, d, self.dbeta[i])
                    prod = mm(self.ones_n, mul(d, self.X[i], self.S[i]), self.dgamma[i])
                    dg = mul(prod, self.inv[i], prod)
                    k = mul(self.scale[i], 1.0 / n, self.k[i])
                    mul(db, k, self.shift[i])
                    mul(k, self.inv[i], k)
                    mul(k, dg, k)
                    mul(d, self.scale[i], d)
                    sub(d, mul(self.X[i], k, self.S[i]), d)
                    sub(d, self.shift[i], d)
                else:
                    mm(self.ones_n, d, self.db[i])
            mm((self.A[i - 1] if i else x).T, d, self.dW[i])
            if i:
                d = mm(d, self.W[i].T, self.D[i - 1])
        self.flat_p -= mul(self.flat_g, self.lr, self.flat_g)
        return loss, correct


def check_same_step(make_model, batches, lr, steps=3, rtol=1e-5):
    """Train a bncli model and a FusedStep from the same start on the same batches; raise if they part ways.
    Returns the largest relative parameter difference (0.0 when the two are bit-identical)."""
    from bncli.training import train_step

    model, opt = make_model()
    fused = FusedStep(model, len(batches[0][1]), lr)
    for s in range(steps):
        x, y = batches[s % len(batches)]
        loss_b, _ = train_step(model, opt, x, y, lr)
        loss_f, _ = fused(x, y)
        if not np.isclose(loss_b, loss_f, rtol=rtol):
            raise AssertionError(f"fused step diverges from bncli at step {s}: loss {loss_f} vs {loss_b}")
    scale = np.abs(model.flat.params).max()
    diff = float(np.abs(fused.flat_p - model.flat.params).max() / scale)
    if diff > rtol:
        raise AssertionError(f"fused step's parameters differ from bncli's by {diff:.2e} (relative)")
    if fused.bn:
        buffers = [layer.buffers for _, layer in model.bn_layers()]
        running = np.stack([np.concatenate([b[k] for b in buffers]) for k in ("running_mean", "running_var")])
        np.testing.assert_allclose(fused.running, running, rtol=rtol, atol=1e-7,
                                   err_msg="fused step's running statistics differ from bncli's")
    return diff
