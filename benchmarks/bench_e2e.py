"""The report end to end against its own matrix-multiply floor, measured on this machine in this run.

The floor of a report: every run it plans (`bncli.report.plan_report`), its matrix products counted by
`bncli.runs.cost` (the one count the progress ETA uses), each timed here at its own shapes with one BLAS thread —
a training step's forward, dW and dX products on preallocated float32 arrays, an evaluation's forward products in
the 4,096-example chunks the model uses — divided by the workers. Wall time over that floor is what bncli adds:
activations, BN, the optimizer, Python per step, run start-up, data loading.

    python benchmarks/bench_e2e.py                        # quick: the floor; the wall time of results/report-quick
    python benchmarks/bench_e2e.py --run                  # ... and time `bncli report --quick` now (about 10 min)
    BNCLI_DATA=../shared/data python benchmarks/bench_e2e.py --mode full   # the full report's floor and projection
    BNCLI_DATA=../shared/data python benchmarks/bench_e2e.py --mode full --runs RUNS   # ... and a resumed report's
                                                                     # last invocation against the floor of its runs
    python benchmarks/bench_e2e.py --memory               # peak memory of one run against its float32 dataset

Prints ratios (wall / floor) and writes benchmarks/results/e2e-<mode>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the floor is per worker: one BLAS thread, as bncli's workers
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bncli.config import load_config  # noqa: E402
from bncli.report import plan_report  # noqa: E402
from bncli.runs import dataset_for  # noqa: E402
from bncli.runs.cost import plan_work, products  # noqa: E402

EVAL_CHUNK = 4096  # MLP.logits


def best_time(fn, repeats: int, rounds=5) -> float:
    """Seconds per call: the fastest of ``rounds`` rounds of ``repeats`` calls (the floor is what the machine can do)."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - t0) / repeats)
    return best


def step_floor(prods, batch: int, dtype) -> float:
    """One training step's products alone: forward, dW and (but the first layer) dX, into preallocated outputs.
    ``prods`` per layer (rows per example, k, n) as `bncli.runs.cost.products` gives them: a dense layer is
    (1, d_in, d_out), a convolution its im2col product (H'*W', kh*kw*C_in, C_out)."""
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((k, n)).astype(dtype) for _, k, n in prods]
    xs = [rng.standard_normal((batch * r, k)).astype(dtype) for r, k, _ in prods]
    ys = [np.empty((batch * r, n), dtype) for r, _, n in prods]
    dWs = [np.empty_like(W) for W in Ws]
    dxs = [np.empty_like(x) for x in xs]

    def step():
        for x, W, y in zip(xs, Ws, ys):
            np.matmul(x, W, out=y)
        for i in range(len(Ws) - 1, -1, -1):
            np.matmul(xs[i].T, ys[i], out=dWs[i])
            if i:
                np.matmul(ys[i], Ws[i].T, out=dxs[i])

    return best_time(step, max(5, int(2e8 / max(1, sum(r * k * n for r, k, n in prods) * batch))))


def eval_floor_per_example(prods, dtype) -> float:
    """The forward products per example, in chunks as large as the models use (a convnet's are smaller)."""
    chunk = max(1, min(EVAL_CHUNK, (1 << 24) // max(r * k for r, k, _ in prods)))
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((k, n)).astype(dtype) for _, k, n in prods]
    xs = [rng.standard_normal((chunk * r, k)).astype(dtype) for r, k, _ in prods]
    ys = [np.empty((chunk * r, n), dtype) for r, _, n in prods]

    def forward():
        for x, W, y in zip(xs, Ws, ys):
            np.matmul(x, W, out=y)

    return best_time(forward, 3) / chunk


def sgemm_rate() -> float:
    """The machine's single-thread float32 GEMM rate on a large square product (GFLOP/s), for reference."""
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    out = np.empty_like(a)
    return 2 * 1024 ** 3 / best_time(lambda: np.matmul(a, a, out=out), 3) / 1e9


def floor_of(mode: str, out_dir: str) -> dict:
    """The planned runs of the report, their work and their floor (seconds of one BLAS thread)."""
    _, studies = plan_report(mode, out_dir=out_dir)
    return floor_of_specs(list({r.hash: r for s in studies.values() for r in s.runs}.values()))


def floor_of_specs(specs) -> dict:
    """The work and floor of runs given as objects with ``hash`` and ``config``."""
    work = plan_work(specs)
    steps, evals = defaultdict(int), defaultdict(int)
    for s in specs:
        data = dataset_for(s.config)
        prods = tuple(products(s.config, data))
        dtype = s.config.train.dtype
        steps[(prods, s.config.train.batch_size, dtype)] += work[s.hash].steps
        per_example = 2 * sum(r * k * n for r, k, n in prods)
        evals[(prods, dtype)] += round(work[s.hash].eval_flops / per_example)
    train_s = sum(n * step_floor(list(p), b, np.dtype(dt)) for (p, b, dt), n in steps.items())
    eval_s = sum(n * eval_floor_per_example(list(p), np.dtype(dt)) for (p, dt), n in evals.items())
    return {"runs": len(specs), "steps": sum(w.steps for w in work.values()),
            "train_tflop": sum(w.train_flops for w in work.values()) / 1e12,
            "eval_tflop": sum(w.eval_flops for w in work.values()) / 1e12,
            "shapes": len(steps), "train_floor_s": train_s, "eval_floor_s": eval_s}


def measured_wall(mode: str, run: bool, workers: int, tmp: str) -> tuple[float | None, str]:
    if run:
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "bncli", "-q", "report", f"--{mode}", "--out", f"{tmp}/report",
                            "-j", str(workers)], cwd=ROOT, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"bncli report --{mode} failed:\n{p.stderr[-2000:]}")
        return time.perf_counter() - t0, "timed now"
    published = ROOT / "results" / f"report-{mode}" / "report.json"
    if not published.is_file():
        return None, "no published report"
    info = json.loads(published.read_text())
    return info["elapsed_s"], info["n_trained"]


def last_invocation(runs_dir: Path, elapsed: float) -> list:
    """The run folders that a report's last invocation trained: those started after the last run ended minus the
    invocation's elapsed time (an earlier, stopped invocation left its runs before that)."""
    metas = [(d, json.loads((d / "meta.json").read_text())) for d in sorted(runs_dir.iterdir())
             if (d / "meta.json").is_file() and (d / "config.yaml").is_file()]
    ok = [(d, m) for d, m in metas if m.get("status") in ("ok", "diverged")]  # a diverged run trained too
    end = max(datetime.fromisoformat(m["ended"]) for _, m in ok)
    start = end - timedelta(seconds=elapsed)
    return [SimpleNamespace(hash=d.name, config=load_config(d / "config.yaml")[0])
            for d, m in ok if datetime.fromisoformat(m["started"]) >= start]


# The peak from /proc (VmHWM, this process's own address space): ru_maxrss would start at the parent's peak, which
# a child inherits across fork and exec on Linux.
PEAK = """
import sys
from bncli.config import load_config
from bncli.runs import dataset_for, run_task
def hwm():
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
cfg, _ = load_config(sys.argv[1], sys.argv[3:])
one = cfg.run_config(cfg.model.bn[-1], cfg.train.seeds[0])
base = hwm()
data = dataset_for(one)
nbytes = sum(a.nbytes for a in (data.X_train, data.X_test) if a is not None)
run_task({"config": one.to_dict(), "run_dir": sys.argv[2]})
print(base, hwm(), nbytes)
"""


SHARE = """
import sys, time
from bncli.config import load_config
from bncli.runs import dataset_for
cfg, _ = load_config(sys.argv[1], sys.argv[2:])
data = dataset_for(cfg.run_config(cfg.model.bn[-1], cfg.train.seeds[0]))
float(data.X_train.sum()) + float(data.X_test.sum())  # every page touched, as training and evaluation do
time.sleep(3)  # both processes alive and mapped while they are measured
kb = {l.split(":")[0]: int(l.split()[1]) for l in open("/proc/self/smaps_rollup") if l.split()[-1] == "kB"}
print(kb["Rss"] * 1024, kb["Pss"] * 1024)
"""


def shared_pages(overrides) -> list[tuple[int, int]]:
    """(Rss, Pss) of two processes holding the same dataset at once: Pss counts a shared page once in total."""
    exp = str(ROOT / "experiments" / "bn_paper_mnist.yaml")
    procs = [subprocess.Popen([sys.executable, "-c", SHARE, exp, *overrides], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    return [tuple(map(int, p.communicate()[0].split())) for p in procs]


def memory(tmp: str):
    full = os.environ.get("BNCLI_DATA")
    overrides = ["data.name=mnist", "train.steps=2000"] if full else ["train.steps=2000"]
    p = subprocess.run([sys.executable, "-c", PEAK, str(ROOT / "experiments" / "bn_paper_mnist.yaml"),
                        f"{tmp}/peak", *overrides], cwd=ROOT, capture_output=True, text=True, check=True)
    base, top, nbytes = map(int, p.stdout.split())
    print(f"peak memory of one run ({'full MNIST' if full else 'bundled subset'}): {(top - base) / 2**20:.0f} MiB "
          f"above the interpreter and libraries; its float32 dataset {nbytes / 2**20:.1f} MiB -> "
          f"{(top - base) / nbytes:.2f}x (goal <= 2x)")
    pair = shared_pages(overrides)
    print("two processes on the same data at once: " + "; ".join(
        f"resident {r / 2**20:.0f} MiB, proportional share {s / 2**20:.0f} MiB" for r, s in pair)
        + " (pages shared through the decoded-dataset cache are counted once between them)")
    return {"peak_above_base_bytes": top - base, "dataset_bytes": nbytes, "two_workers_rss_pss_bytes": pair}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("quick", "full"), default="quick")
    ap.add_argument("--run", action="store_true", help="time `bncli report` now instead of reading its report.json")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--memory", action="store_true", help="also measure one run's peak memory")
    ap.add_argument("--runs", default=None, help="the run folders of the published report: when it was resumed, its "
                    "time is compared with the floor of the runs its last invocation trained")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = {"mode": args.mode, "workers": args.workers, "sgemm_gflops_1thread": sgemm_rate()}
        out.update(floor_of(args.mode, f"{tmp}/plan"))
        w = args.workers
        print(f"machine: single-thread sgemm {out['sgemm_gflops_1thread']:.0f} GFLOP/s (1024^3); {w} workers")
        print(f"report --{args.mode}: {out['runs']:,} runs, {out['steps']:,} training steps in {out['shapes']} shapes; "
              f"matrix products {out['train_tflop']:.1f} TFLOP training + {out['eval_tflop']:.1f} TFLOP evaluation")
        floor, floor_all = out["train_floor_s"] / w, (out["train_floor_s"] + out["eval_floor_s"]) / w
        print(f"floor on {w} workers, each product timed at its own shape: training {floor / 60:.1f} min; with the "
              f"evaluations {floor_all / 60:.1f} min")
        wall, how = measured_wall(args.mode, args.run, w, tmp)
        if isinstance(how, int) and how < out["runs"] and args.runs:
            # A resumed report's own time covers only what its last invocation trained: compare it with the floor
            # of those runs, never with the whole report's.
            part = floor_of_specs(last_invocation(Path(args.runs), wall))
            floor, floor_all = part["train_floor_s"] / w, (part["train_floor_s"] + part["eval_floor_s"]) / w
            out["last_invocation"] = part
            how = (f"the published report's last invocation: {part['runs']:,} of {out['runs']:,} runs, "
                   f"{part['train_tflop']:.1f} TFLOP; its floor {floor / 60:.1f} min training, "
                   f"{floor_all / 60:.1f} min with evaluations")
        elif isinstance(how, int) and how < out["runs"]:
            print(f"wall time: the published report was resumed; its time covers {how:,} of {out['runs']:,} runs, "
                  f"so it is not compared with this floor (give --runs RUNS_DIR of that report, or --run)")
            wall = None
        elif isinstance(how, int):
            how = f"the published report's own time ({how:,} runs trained)"
        if wall is not None:
            out.update(wall_s=wall, wall_over_floor=wall / floor, wall_over_floor_with_eval=wall / floor_all)
            print(f"wall time {wall / 60:.1f} min ({how}) = {wall / floor:.2f}x the training floor, "
                  f"{wall / floor_all:.2f}x the floor with evaluations (goal <= 1.4x)")
        elif how == "no published report":
            print(f"wall time: {how}; run with --run (the full report takes hours today)")
        if args.memory:
            out.update(memory(tmp))
    path = Path(args.json or ROOT / "benchmarks" / "results" / f"e2e-{args.mode}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
