"""Training-step throughput of bncli vs. this machine's own matmul throughput, in one process.

    python benchmarks/bench_step.py [--quick] [--reps N] [--json PATH]

For each (net, BN placement, batch) it times, with one BLAS thread and float32:

* step   - the step train.py runs: model.forward(x, "train"), softmax_cross_entropy, model.backward, Optimizer.step
           (plain SGD), cycling through a few pre-generated batches;
* floor  - the same matrix products alone on preallocated arrays (x@W, x.T@dy and, except for the first layer,
           dy@W.T), i.e. the best a NumPy implementation of this step could do with this BLAS;
* bn     - for BN models, the BN layers' train-mode forward + backward alone, on the shapes they see in the model;
* torch  - the equivalent PyTorch eager step, only if torch happens to be importable (it is not a dependency).

The timed functions run in round-robin blocks, so a change of clock speed during the run affects all of them alike
and the ratios stay meaningful; each number is the median over blocks of the per-call time within a block.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from bncli.core import MLP, BatchNorm, Optimizer, softmax_cross_entropy

F32 = np.float32
N_IN, N_OUT = 784, 10
NETS = {"sigmoid 784-100x3-10": ((100, 100, 100), "sigmoid"), "relu 784-512x2-10": ((512, 512), "relu")}
LR = 0.01  # small enough that no net drifts into NaN/inf (whose timing would not be representative)
N_BATCHES = 4  # distinct pre-generated batches, cycled


def configs(quick):
    nets = list(NETS)[:1] if quick else list(NETS)
    batches = (60, 256) if quick else (60, 256, 1024)
    return [(net, bn, b) for net in nets for b in batches for bn in ("none", "before")]


def bench(fns: dict, reps: int, block: int, warmup: int):
    """Round-robin blocks of `block` calls of each function; per-call median / quartiles over blocks, in ms."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    times = {k: [] for k in fns}
    for _ in range(max(1, reps // block)):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(block):
                f()
            times[k].append((time.perf_counter() - t0) / block * 1e3)
    return {k: dict(zip(("p25", "median", "p75"), np.percentile(v, [25, 50, 75]).tolist())) for k, v in times.items()}


def make_batches(rng, batch):
    return [(rng.random((batch, N_IN), dtype=F32), rng.integers(0, N_OUT, batch)) for _ in range(N_BATCHES)]


def make_step(hidden, act, bn, batches):
    """The same calls, in the same order, as the inner loop of bncli.train.train_run."""
    model = MLP(N_IN, hidden, N_OUT, rng=np.random.default_rng(0), activation=act, bn=bn, dtype=F32)
    opt = Optimizer(model.params, model.grads, "sgd")
    it = itertools.cycle(batches)
    last = [0.0]

    def step():
        x, y = next(it)
        last[0], dlogits, _ = softmax_cross_entropy(model.forward(x, "train"), y)
        model.backward(dlogits)
        opt.step(LR)

    return step, last


def make_floor(hidden, batch, rng):
    """Matrix products of one step on preallocated arrays; no dX for the first layer (Dense(need_dx=False))."""
    sizes = [N_IN, *hidden, N_OUT]
    ops, flops = [], 0
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        x, W, dy = (rng.random(s, dtype=F32) for s in ((batch, a), (a, b), (batch, b)))
        dx = np.empty((batch, a), F32) if i > 0 else None
        ops.append((x, W, np.empty((batch, b), F32), dy, np.empty((a, b), F32), dx))
        flops += 2 * batch * a * b * (3 if i > 0 else 2)

    def floor():
        for x, W, y, dy, dW, dx in ops:
            np.matmul(x, W, out=y)
            np.matmul(x.T, dy, out=dW)
            if dx is not None:
                np.matmul(dy, W.T, out=dx)

    return floor, flops


def make_bn(hidden, batch, rng):
    """bncli's BatchNorm layers, train-mode forward + backward, on (batch, width) arrays like in the BN model."""
    layers = [(BatchNorm(h, dtype=F32), rng.standard_normal((batch, h), dtype=F32),
               rng.standard_normal((batch, h), dtype=F32)) for h in hidden]

    def bn_only():
        for layer, x, dy in layers:
            layer.forward(x, "train")
            layer.backward(dy)

    return bn_only


def make_torch_step(hidden, act, bn, batches):
    """Equivalent PyTorch eager step, or None if torch is not importable."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    torch.manual_seed(0)
    layers, a = [], N_IN
    for h in hidden:
        layers.append(torch.nn.Linear(a, h, bias=bn != "before"))
        if bn == "before":
            layers.append(torch.nn.BatchNorm1d(h, eps=1e-5, momentum=0.1))  # momentum 0.1 == bncli decay 0.9
        layers.append(torch.nn.Sigmoid() if act == "sigmoid" else torch.nn.ReLU())
        a = h
    net = torch.nn.Sequential(*layers, torch.nn.Linear(a, N_OUT)).train()
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    it = itertools.cycle([(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))) for x, y in batches])

    def step():
        x, y = next(it)
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    return step


def machine_info():
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), None) \
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    return {"python": sys.version.split()[0], "numpy": np.__version__, "platform": platform.platform(), "cpu": cpu,
            "cpu_count": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "blas": [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")}
                     for d in threadpool_info() if d["user_api"] == "blas"],
            "torch": torch_version}


def run_config(net, bn, batch, reps, block, warmup):
    hidden, act = NETS[net]
    rng = np.random.default_rng(1)
    batches = make_batches(rng, batch)
    step, last_loss = make_step(hidden, act, bn, batches)
    floor, flops = make_floor(hidden, batch, rng)
    fns = {"step": step, "floor": floor}
    if bn != "none":
        fns["bn"] = make_bn(hidden, batch, rng)
    torch_step = make_torch_step(hidden, act, bn, batches)
    if torch_step is not None:
        fns["torch"] = torch_step
    t = bench(fns, reps, block, warmup)
    if not np.isfinite(last_loss[0]):
        raise RuntimeError(f"{net} bn={bn} batch={batch}: loss became {last_loss[0]}; timings would be skewed")
    step_ms, floor_ms = t["step"]["median"], t["floor"]["median"]
    row = {"net": net, "bn": bn, "batch": batch, "ms": t, "step_ms": step_ms, "samples_per_s": batch / step_ms * 1e3,
           "floor_ms": floor_ms, "floor_gflops": flops / floor_ms / 1e6, "step_over_floor": step_ms / floor_ms,
           "floor_fraction": floor_ms / step_ms, "non_matmul_ms": step_ms - floor_ms}
    if "bn" in t:
        row.update(bn_ms=t["bn"]["median"], bn_share=t["bn"]["median"] / step_ms)
    if "torch" in t:
        row.update(torch_ms=t["torch"]["median"], torch_samples_per_s=batch / t["torch"]["median"] * 1e3)
    return row


def print_table(rows, info, torch_ok):
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is a bncli dependency, but keep the script usable without it
        Console = None
    blas = ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']}, {b['num_threads']} thread)"
                     for b in info["blas"])
    header = (f"numpy {info['numpy']} | BLAS {blas} | CPU {info['cpu']} x{info['cpu_count']} "
              f"(usable {info['usable_cpus']}) | python {info['python']} | float32, 1 BLAS thread")
    cols = ["net", "bn", "batch", "ms/step", "IQR ms", "samples/s", "floor ms", "GFLOP/s", "step/floor",
            "floor/step", "BN ms", "BN share"] + (["torch ms", "torch/bncli"] if torch_ok else [])
    data = []
    for r in rows:
        s = r["ms"]["step"]
        cells = [r["net"], r["bn"], str(r["batch"]), f"{r['step_ms']:.3f}", f"{s['p25']:.3f}-{s['p75']:.3f}",
                 f"{r['samples_per_s']:,.0f}", f"{r['floor_ms']:.3f}", f"{r['floor_gflops']:.1f}",
                 f"{r['step_over_floor']:.2f}x", f"{r['floor_fraction']:.0%}",
                 f"{r['bn_ms']:.3f}" if "bn_ms" in r else "-", f"{r['bn_share']:.1%}" if "bn_share" in r else "-"]
        if torch_ok:
            cells += [f"{r['torch_ms']:.3f}", f"{r['torch_ms'] / r['step_ms']:.2f}"]
        data.append(cells)
    if Console is not None:
        table = Table(title="bncli training step (forward + CE + backward + SGD)", caption=header)
        for c in cols:
            table.add_column(c, justify="left" if c in ("net", "bn") else "right")
        for cells in data:
            table.add_row(*cells)
        Console(width=max(160, len(header) + 4)).print(table)
    else:
        widths = [max(len(c), *(len(d[i]) for d in data)) for i, c in enumerate(cols)]
        print(header)
        for line in [cols, *data]:
            print("  ".join(x.rjust(w) for x, w in zip(line, widths)))
    if not torch_ok:
        print("PyTorch comparison skipped: torch is not importable (optional, not a bncli dependency).")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="sigmoid net, batches 60 and 256 only (~10 s)")
    p.add_argument("--reps", type=int, default=None, help="timed calls per function and config (default 300; "
                                                              "200 with --quick)")
    p.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "step.json")
    args = p.parse_args(argv)
    reps = args.reps or (200 if args.quick else 300)
    block = 10 if reps >= 100 else max(1, reps // 10)
    warmup = max(5, reps // 10)
    with threadpool_limits(1, user_api="blas"), \
            np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):  # as train.py does
        info = machine_info()  # inside the limit, so the recorded num_threads is the one used
        t0 = time.perf_counter()
        rows = []
        for net, bn, batch in configs(args.quick):
            rows.append(run_config(net, bn, batch, reps, block, warmup))
            print(f"  {net:<22} bn={bn:<6} batch={batch:<5} {rows[-1]['step_ms']:8.3f} ms/step", file=sys.stderr)
        elapsed = time.perf_counter() - t0
    torch_ok = info["torch"] is not None
    print_table(rows, info, torch_ok)
    print(f"{len(rows)} configs, {reps} timed calls each (blocks of {block}, {warmup} warm-up), {elapsed:.1f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    out = {"machine": info, "settings": {"quick": args.quick, "reps": reps, "block": block, "warmup": warmup,
                                         "dtype": "float32", "optimizer": "sgd", "lr": LR, "blas_threads": 1,
                                         "timing": "median over blocks of per-call perf_counter time, ms"},
           "torch_skipped": not torch_ok, "elapsed_s": elapsed, "results": rows}
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
