"""The convnet's training step against its own GEMM floor (and PyTorch eager CPU when torch is importable).

    python benchmarks/bench_conv.py [--config experiments/lenet_bn.yaml] [--batch 128] [--blocks 7] [--json PATH]

With one BLAS thread and float32, for each BN arm of the config (default: LeNet, no BN and BN per channel, plus BN
per activation), in round-robin blocks so that a change of clock or load affects all alike (each number is the
median over blocks of the per-call time in a block):

* step   - bncli.training.train_step on the model `bncli train` builds (forward with batch statistics, loss,
           backward, SGD update), cycling through pre-generated batches of real-size random images;
* floor  - the step's matrix products alone at the same shapes, on preallocated arrays: per convolution the im2col
           product (N*H'*W', kh*kw*C_in) @ (kh*kw*C_in, C_out), its dW and (but the first layer) its dX product; per
           dense layer x@W, x.T@dy, dy@W.T. No implementation of this step on this BLAS beats it;
* layers - where the rest goes: the same step with every layer's forward and backward timed (and the loss and the
           update), as shares of the step;
* torch  - the equivalent PyTorch eager step (NCHW, BatchNorm2d/1d, SGD), only if torch is importable, one thread.

Prints ratios (step / floor, step / torch) measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bncli.config import load_config  # noqa: E402
from bncli.core.convnet import ConvSpec, conv_shapes  # noqa: E402
from bncli.core.layers import softmax_cross_entropy  # noqa: E402
from bncli.runs.cost import products  # noqa: E402
from bncli.data.datasets import Dataset  # noqa: E402
from bncli.training import build_model, build_optimizer, seed_streams, train_step  # noqa: E402


def fake_data(name, shape, n=2048):
    rng = np.random.default_rng(0)
    X = rng.random((n, int(np.prod(shape))), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return Dataset(name, X, y, X[:256], y[:256], 10)


def gemm_floor(cfg, data, batch):
    """A function doing the step's matrix products alone, on preallocated float32 arrays."""
    rng = np.random.default_rng(0)
    prods = [(batch * r, k, n) for r, k, n in products(cfg, data)]
    arrays = []
    for i, (m, k, n) in enumerate(prods):
        x, W = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
        arrays.append((i, x, W, np.empty((m, n), np.float32), np.empty((k, n), np.float32),
                       np.empty((m, k), np.float32)))

    def step():
        for _, x, W, y, _, _ in arrays:
            np.matmul(x, W, out=y)
        for i, x, W, y, dW, dx in reversed(arrays):
            np.matmul(x.T, y, out=dW)
            if i:
                np.matmul(y, W.T, out=dx)

    return step, sum(2.0 * m * k * n * (2 if i == 0 else 3) for i, (m, k, n) in enumerate(prods))


class Timed:
    """Wraps a layer: accumulates its forward and backward seconds under its name."""

    def __init__(self, name, layer, acc):
        self.name, self.layer, self.acc = name, layer, acc
        self.params, self.grads, self.buffers = layer.params, layer.grads, layer.buffers

    def forward(self, x, mode="train"):
        t = time.perf_counter()
        y = self.layer.forward(x, mode)
        self.acc[f"{self.kind()} forward"] += time.perf_counter() - t
        return y

    def backward(self, dy):
        t = time.perf_counter()
        d = self.layer.backward(dy)
        self.acc[f"{self.kind()} backward"] += time.perf_counter() - t
        return d

    def kind(self):
        return type(self.layer).__name__


def torch_step(cfg, data, batch, per):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    nn = torch.nn
    act = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}[cfg.model.activation]
    layers, c = [], data.image_shape[0]
    bn = per is not None
    for s in cfg.model.conv:
        layers += [nn.Conv2d(c, s.channels, s.kernel, s.stride, s.padding, bias=not bn)]
        layers += [nn.BatchNorm2d(s.channels)] if bn else []
        layers += [act()]
        if s.pool > 1:
            layers += [nn.AvgPool2d(s.pool) if s.pool_type == "avg" else nn.MaxPool2d(s.pool)]
        c = s.channels
    layers += [nn.Flatten()]
    h, w, ch = conv_shapes(data.image_shape, [ConvSpec(**s.model_dump()) for s in cfg.model.conv])[-1][1]
    sizes = [h * w * ch, *cfg.model.hidden]
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b, bias=not bn)] + ([nn.BatchNorm1d(b)] if bn else []) + [act()]
    layers += [nn.Linear(sizes[-1], 10)]
    net = nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.optimizer.lr)
    X = torch.rand(batch, *data.image_shape)
    y = torch.randint(0, 10, (batch,))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(net(X), y).backward()
        opt.step()
    return step


def _stepper(model, opt, batches):
    """train_step on the next of the pre-generated batches, cycling."""
    counter = iter(range(1 << 62))
    return lambda: train_step(model, opt, *batches[next(counter) % len(batches)], 0.01)


def median_block(fns, blocks, reps):
    times = defaultdict(list)
    for _ in range(blocks):
        for name, fn in fns.items():
            fn()
            t = time.perf_counter()
            for _ in range(reps):
                fn()
            times[name].append((time.perf_counter() - t) / reps)
    return {k: float(np.median(v)) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "experiments" / "lenet_bn.yaml"))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--blocks", type=int, default=7)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "conv.json"))
    a = ap.parse_args()
    cfg, _ = load_config(Path(a.config), [f"train.batch_size={a.batch}", "train.seeds=[0]"])
    data = fake_data(cfg.data.name, {"cifar10": (3, 32, 32)}.get(cfg.data.name, (1, 28, 28)))
    floor, flops = gemm_floor(cfg, data, a.batch)
    fns, models, batches = {"floor": floor}, {}, []
    rng = np.random.default_rng(1)
    for _ in range(4):
        idx = rng.integers(0, len(data.X_train), a.batch)
        batches.append((data.X_train[idx], data.y_train[idx]))
    arms = [("none", "channel"), ("before", "channel"), ("before", "activation")]
    for arm, per in arms:
        rc = cfg.run_config(arm, 0).model_copy(deep=True)
        rc.model.bn_per = per
        model = build_model(rc, data, seed_streams(0)[0])
        opt = build_optimizer(rc, model)
        label = "no BN" if arm == "none" else f"BN per {per}"
        models[label] = (model, opt)
        fns[label] = _stepper(model, opt, batches)
        ts = torch_step(cfg, data, a.batch, None if arm == "none" else per)
        if ts is not None and per == "channel":
            fns[f"torch {label}"] = ts
    res = median_block(fns, a.blocks, a.reps)
    print(f"LeNet-style net of {a.config}, batch {a.batch}, float32, one BLAS thread")
    print(f"floor (the step's {flops / 1e9:.2f} GFLOP of products alone): {res['floor'] * 1e3:.2f} ms "
          f"= {flops / res['floor'] / 1e9:.1f} GFLOP/s")
    out = {"batch": a.batch, "floor_s": res["floor"], "flops": flops, "arms": {}}
    for label, (model, opt) in models.items():
        line = f"{label:18s} step {res[label] * 1e3:7.2f} ms = {res[label] / res['floor']:.2f}x floor"
        if f"torch {label}" in res:
            line += f", {res[label] / res[f'torch {label}']:.2f}x torch eager ({res[f'torch {label}'] * 1e3:.2f} ms)"
        print(line)
        acc = defaultdict(float)
        model.layers = [(n, Timed(n, layer, acc)) for n, layer in model.layers]
        n_steps = a.reps * a.blocks
        t0 = time.perf_counter()
        for i in range(n_steps):
            xb, yb = batches[i % 4]
            logits = model.forward(xb, "train")
            t1 = time.perf_counter()
            loss, dlog, _ = softmax_cross_entropy(logits, yb)
            acc["loss"] += time.perf_counter() - t1
            model.backward(dlog)
            t2 = time.perf_counter()
            opt.step(0.01)
            acc["update"] += time.perf_counter() - t2
        total = time.perf_counter() - t0
        model.layers = [(n, layer.layer) for n, layer in model.layers]
        shares = sorted(((v / total, k) for k, v in acc.items()), reverse=True)
        print("    " + ", ".join(f"{k} {s:.0%}" for s, k in shares[:8]))
        out["arms"][label] = {"step_s": res[label], "ratio_floor": res[label] / res["floor"],
                              "torch_s": res.get(f"torch {label}"), "shares": {k: s for s, k in shares}}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
