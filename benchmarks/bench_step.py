"""Training-step throughput of bncli vs. this machine's own matmul throughput, in one process.

    python benchmarks/bench_step.py [--quick] [--reps N] [--json PATH]

For each (net, BN placement, batch) it times, with one BLAS thread and float32:

* step   - bncli.training.train_step, the function `bncli train` calls for every minibatch (forward with batch
           statistics, softmax cross-entropy, backward, plain SGD update), on a model and optimizer built by
           bncli.training from a validated config, cycling through a few pre-generated batches;
* floor  - the same matrix products alone on preallocated arrays (x@W, x.T@dy and, except for the first layer,
           dy@W.T): a bound no implementation of this step on this BLAS can beat;
* fused  - the same step hand-fused into one function over preallocated arrays (fused_step.py), checked to train
           bit-for-bit like bncli first: about the best any NumPy implementation of this step reaches;
* bn     - for BN models, the step of a second identical model whose BN layers' forward and backward and shared
           running-statistics update are timed inside the step: BN's share of the step;
* torch  - the equivalent PyTorch eager step, only if torch happens to be importable (it is not a dependency).

The timed functions run in round-robin blocks, so a change of clock speed or of load during the run affects all of
them alike and the ratios stay meaningful; each number is the median over blocks of the per-call time in a block.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import sys
import time
import types
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from bncli.config import ExperimentConfig
from bncli.training import build_model, build_optimizer, train_step
from fused_step import FusedStep, check_same_step

F32 = np.float32
N_IN, N_OUT = 784, 10
NETS = {"sigmoid 100x3": ((100, 100, 100), "sigmoid"), "relu 512x2": ((512, 512), "relu")}
LR = 0.01  # small enough that no net drifts into NaN/inf, whose timing would not be representative
N_BATCHES = 4  # distinct pre-generated batches, cycled
BUSY = 0.95  # below this share of a CPU while timing, other processes were competing for the core


def configs(quick):
    nets = list(NETS)[:1] if quick else list(NETS)
    batches = (60, 256) if quick else (60, 256, 1024)
    return [(net, bn, b) for net in nets for b in batches for bn in ("none", "before")]


def bench(fns: dict, reps: int, block: int, warmup: int):
    """Round-robin blocks of `block` calls of each function. Returns per-call ms stats over blocks, CPU share."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    times = {k: [] for k in fns}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(max(1, reps // block)):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(block):
                f()
            times[k].append((time.perf_counter() - t0) / block * 1e3)
    # All timed code is single-threaded, so CPU time / wall time < 1 means other processes took the core from us.
    cpu_share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    stats = {k: dict(zip(("min", "p25", "median", "p75"), np.percentile(v, [0, 25, 50, 75]).tolist()))
             for k, v in times.items()}
    return stats, cpu_share


def make_batches(rng, batch):
    return [(rng.random((batch, N_IN), dtype=F32), rng.integers(0, N_OUT, batch)) for _ in range(N_BATCHES)]


def build(hidden, act, bn, batch):
    """The model and optimizer `bncli train` would build for this net: from a validated config, by bncli.training."""
    cfg = ExperimentConfig.model_validate({
        "name": "bench", "data": {"name": "synthetic", "synthetic": {"n_features": N_IN, "n_classes": N_OUT}},
        "model": {"hidden": list(hidden), "activation": act, "bn": [bn]}, "optimizer": {"name": "sgd", "lr": LR},
        "train": {"batch_size": batch, "steps": 1, "seeds": [0], "dtype": "float32"}})
    shape = types.SimpleNamespace(n_features=N_IN, n_classes=N_OUT)
    model = build_model(cfg, shape, np.random.default_rng(0))
    return model, build_optimizer(cfg, model)


def make_step(hidden, act, bn, batches):
    """The step `bncli train` runs: bncli.training.train_step on pre-generated batches. Returns (step, model)."""
    model, opt = build(hidden, act, bn, len(batches[0][1]))
    it = itertools.cycle(batches)

    def step():
        x, y = next(it)
        return train_step(model, opt, x, y, LR)[0]

    return step, model


def make_fused(hidden, act, bn, batches):
    """The hand-fused NumPy yardstick (fused_step.py), checked to train exactly like bncli before it is timed.
    Returns (step, largest relative parameter difference from bncli after a few steps)."""
    diff = check_same_step(lambda: build(hidden, act, bn, len(batches[0][1])), batches, LR)
    model, _ = build(hidden, act, bn, len(batches[0][1]))
    fused = FusedStep(model, len(batches[0][1]), LR)
    it = itertools.cycle(batches)

    def step():
        x, y = next(it)
        return fused(x, y)[0]

    return step, diff


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


def make_bn_share(hidden, act, bn, batches):
    """BN's share of the step, measured inside it: the model trains as in make_step while perf_counter times its
    BN layers' forward and backward and its one shared running-statistics update (everything BN adds). Returns
    (step, share) where share() is BN time / step time over all calls so far."""
    model, opt = build(hidden, act, bn, len(batches[0][1]))
    spent, total = [0.0], [0.0]
    clock = time.perf_counter

    def timed(f):
        def g(*args):
            t0 = clock()
            out = f(*args)
            spent[0] += clock() - t0
            return out
        return g

    for _, layer in model.bn_layers():
        layer.forward, layer.backward = timed(layer.forward), timed(layer.backward)
    model.update_running_stats = timed(model.update_running_stats)
    it = itertools.cycle(batches)

    def step():
        x, y = next(it)
        t0 = clock()
        train_step(model, opt, x, y, LR)
        total[0] += clock() - t0

    return step, lambda: spent[0] / total[0]


def make_torch_step(hidden, act, bn, batches):
    """The equivalent PyTorch eager step (one intra-op thread). Assumes torch is importable."""
    import torch

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


def torch_version():
    try:
        import torch
        return torch.__version__
    except ImportError:
        return None


def machine_info():
    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), cpu)
    return {"python": sys.version.split()[0], "numpy": np.__version__, "platform": platform.platform(), "cpu": cpu,
            "cpu_count": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "blas": [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")}
                     for d in threadpool_info() if d["user_api"] == "blas"],
            "torch": torch_version(), "loadavg_before": os.getloadavg() if hasattr(os, "getloadavg") else None,
            # glibc malloc settings change the cost of NumPy's large temporaries, so record any that are set.
            "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}}


def run_config(net, bn, batch, reps, block, warmup, with_torch):
    hidden, act = NETS[net]
    rng = np.random.default_rng(1)
    batches = make_batches(rng, batch)
    step, _ = make_step(hidden, act, bn, batches)
    floor, flops = make_floor(hidden, batch, rng)
    fused, fused_diff = make_fused(hidden, act, bn, batches)
    fns = {"step": step, "fused": fused, "floor": floor}
    if bn != "none":
        fns["bn"], bn_share = make_bn_share(hidden, act, bn, batches)
    if with_torch:
        fns["torch"] = make_torch_step(hidden, act, bn, batches)
    t, cpu_share = bench(fns, reps, block, warmup)
    loss = step()
    if not math.isfinite(loss):
        raise RuntimeError(f"{net} bn={bn} batch={batch}: loss became {loss}; the timings are not representative")
    step_ms, floor_ms = t["step"]["median"], t["floor"]["median"]
    row = {"net": net, "arch": "-".join(map(str, (N_IN, *hidden, N_OUT))), "activation": act, "bn": bn,
           "batch": batch, "ms": t, "step_ms": step_ms, "samples_per_s": batch / step_ms * 1e3,
           "floor_ms": floor_ms, "floor_gflops": flops / floor_ms / 1e6, "step_over_floor": step_ms / floor_ms,
           "floor_fraction": floor_ms / step_ms, "non_matmul_ms": step_ms - floor_ms,
           "step_over_floor_min": t["step"]["min"] / t["floor"]["min"], "cpu_share": cpu_share,
           "fused_ms": t["fused"]["median"], "fused_over_floor": t["fused"]["median"] / floor_ms,
           "step_over_fused": step_ms / t["fused"]["median"], "fused_param_diff": fused_diff}
    if "bn" in t:
        share = bn_share()
        row.update(bn_share=share, bn_ms=share * step_ms)
    if "torch" in t:
        row.update(torch_ms=t["torch"]["median"], torch_samples_per_s=batch / t["torch"]["median"] * 1e3,
                   over_torch=step_ms / t["torch"]["median"])
    return row


def print_table(rows, info, with_torch):
    blas = ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']}, {b['num_threads']} thread)"
                     for b in info["blas"])
    print(f"numpy {info['numpy']} | BLAS {blas} | {info['cpu']}, {info['cpu_count']} CPUs "
          f"({info['usable_cpus']} usable) | python {info['python']} | float32, one BLAS thread"
          + (f" | torch {info['torch']}" if with_torch else ""))
    cols = ["net", "bn", "batch", "ms/step", "min ms", "samples/s", "floor ms", "GFLOP/s", "step/floor",
            "floor/step", "fused/floor", "step/fused", "BN ms", "BN %", "CPU"] + (["torch ms", "bncli/torch"] if with_torch else [])
    data = []
    for r in rows:
        cells = [r["net"], r["bn"], str(r["batch"]), f"{r['step_ms']:.3f}", f"{r['ms']['step']['min']:.3f}",
                 f"{r['samples_per_s']:,.0f}", f"{r['floor_ms']:.3f}", f"{r['floor_gflops']:.0f}",
                 f"{r['step_over_floor']:.2f}x", f"{r['floor_fraction']:.0%}", f"{r['fused_over_floor']:.2f}x",
                 f"{r['step_over_fused']:.2f}",
                 f"{r['bn_ms']:.3f}" if "bn_ms" in r else "-", f"{r['bn_share']:.1%}" if "bn_share" in r else "-",
                 f"{r['cpu_share']:.0%}"]
        if with_torch:
            cells += [f"{r['torch_ms']:.3f}", f"{r['over_torch']:.2f}"]
        data.append(cells)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is a bncli dependency, but the plain table needs nothing
        widths = [max(len(c), *(len(d[i]) for d in data)) for i, c in enumerate(cols)]
        for line in [cols, *data]:
            print("  ".join(x.rjust(w) for x, w in zip(line, widths)))
    else:
        table = Table(title="bncli training step (forward + cross-entropy + backward + SGD)")
        for c in cols:
            table.add_column(c, justify="left" if c in ("net", "bn") else "right", no_wrap=True)
        for cells in data:
            table.add_row(*cells)
        Console(width=200).print(table)
    print("floor = the step's matrix products alone (preallocated, same BLAS); floor/step = fraction of this "
          "machine's matmul throughput reached; fused = the same step hand-fused into one function over preallocated "
          "arrays (fused_step.py: the fewest NumPy calls found; checked to train bit-for-bit like bncli), i.e. about "
          "the best any NumPy implementation reaches; BN % = time inside the BN layers' forward+backward and running "
          "update / step time, timed within the step; "
          "CPU = share of a core the process got while timing"
          + ("; bncli/torch = bncli step time / PyTorch eager step time." if with_torch else "."))
    busy = [r for r in rows if r["cpu_share"] < BUSY]
    if busy:
        print(f"WARNING: {len(busy)} of {len(rows)} configs got < {BUSY:.0%} of a core (load average "
              f"{info['loadavg_before'][0]:.1f} before, {info['loadavg_after'][0]:.1f} after): other processes "
              "were running, so their medians are inflated; 'min ms' is closer to the unloaded time.")


# The targets, checked on the 3x100 sigmoid net with BN before the activation (ratios from one run).
TARGETS = [("BN step / matmul floor", 60, "step_over_floor", 1.7), ("BN step / matmul floor", 256, "step_over_floor", 1.4),
           ("bncli / PyTorch eager time", 60, "over_torch", 0.6), ("bncli / PyTorch eager time", 256, "over_torch", 0.8),
           ("BN forward+backward share of the step", 60, "bn_share", 0.25)]


def check_targets(rows):
    out = []
    for label, batch, key, limit in TARGETS:
        row = next((r for r in rows if r["net"] == "sigmoid 100x3" and r["bn"] == "before" and r["batch"] == batch),
                   None)
        value = None if row is None else row.get(key)
        entry = {"measure": label, "batch": batch, "value": value, "target": limit,
                 "met": None if value is None else value <= limit}
        if key == "step_over_floor" and row is not None:
            # What the hand-fused NumPy step reaches in the same run: whether the target is within NumPy's reach.
            entry["fused_value"] = row["fused_over_floor"]
            entry["fused_met"] = row["fused_over_floor"] <= limit
        out.append(entry)
    return out


def print_targets(targets):
    print("Targets (784-100-100-100-10 sigmoid, BN before the activation):")
    for t in targets:
        if t["value"] is None:
            status = "not measured" + (" (torch not importable)" if "PyTorch" in t["measure"] else "")
            print(f"  {t['measure']:<40} batch {t['batch']:<4}  {status}")
            continue
        pct = "share" in t["measure"]
        val = f"{t['value']:.1%}" if pct else f"{t['value']:.2f}x"
        lim = f"{t['target']:.0%}" if pct else f"{t['target']:.1f}x"
        fused = ""
        if "fused_value" in t:
            fused = (f"  (hand-fused NumPy step: {t['fused_value']:.2f}x, "
                     f"{'met' if t['fused_met'] else 'NOT met'})")
        print(f"  {t['measure']:<40} batch {t['batch']:<4}  {val:>7}  target <= {lim:<5} "
              f"{'met' if t['met'] else 'NOT met'}{fused}")


def positive_int(text):
    value = int(text)  # argparse turns the ValueError into "invalid positive_int value"
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value}")
    return value


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="sigmoid net, batches 60 and 256 only (~5 s)")
    p.add_argument("--reps", type=positive_int, default=None,
                   help="timed calls per function and config (default 200; 500 with --quick, whose steps are short)")
    p.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "step.json")
    args = p.parse_args(argv)
    reps = args.reps or (500 if args.quick else 200)
    block = 10 if reps >= 100 else max(1, reps // 10)
    warmup = max(5, reps // 10)
    with threadpool_limits(1, user_api="blas"), \
            np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):  # as training.py does
        info = machine_info()  # inside the limit, so the recorded num_threads is the one in force
        with_torch = info["torch"] is not None
        # OpenBLAS's idle worker threads busy-wait for ~0.2 s after the library loads (seen as > 100% CPU and
        # slower first configs on a 2-core machine); let them park before timing anything.
        time.sleep(0.5)
        t0 = time.perf_counter()
        rows = []
        for net, bn, batch in configs(args.quick):
            rows.append(run_config(net, bn, batch, reps, block, warmup, with_torch))
            print(f"  {net:<14} bn={bn:<6} batch={batch:<5} {rows[-1]['step_ms']:8.3f} ms/step", file=sys.stderr)
        elapsed = time.perf_counter() - t0
        info["loadavg_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print_table(rows, info, with_torch)
    if not with_torch:
        print("PyTorch comparison skipped: torch is not importable (optional; not a bncli dependency).")
    targets = check_targets(rows)
    print_targets(targets)
    print(f"{len(rows)} configs, {reps} timed calls each (blocks of {block}, {warmup} warm-up), {elapsed:.1f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    out = {"machine": info,
           "settings": {"quick": args.quick, "reps": reps, "block": block, "warmup": warmup, "dtype": "float32",
                        "optimizer": "sgd", "lr": LR, "blas_threads": 1,
                        "timing": "per-call perf_counter time of each block, ms; median, min, quartiles over blocks",
                        "cpu_share": "process CPU time / wall time while timing a config"},
           "torch_skipped": not with_torch, "elapsed_s": elapsed, "targets": targets, "results": rows}
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
