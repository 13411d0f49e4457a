"""Sweep throughput: the same fixed sweep run sequentially in one process with two BLAS threads, and through the
process pool with two workers (one BLAS thread each). Prints the speedup; the target is close to the core count.

    python benchmarks/bench_sweep.py [--runs 24] [--steps 300] [--json benchmarks/results/sweep.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from threadpoolctl import threadpool_info, threadpool_limits

from bncli.config import ExperimentConfig
from bncli.executor import execute
from bncli.runs import run_task


def tasks(n_runs: int, steps: int, root: Path) -> list[dict]:
    """n_runs small MNIST-subset runs: learning rates x arms x seeds of a 3 x 100 ReLU MLP, batch 60."""
    out = []
    lrs = [0.01, 0.03, 0.1]
    for i in range(n_runs):
        cfg = ExperimentConfig.model_validate({
            "name": "bench", "model": {"hidden": [100, 100, 100], "bn": ["none", "before"]},
            "optimizer": {"lr": lrs[i % len(lrs)]}, "train": {"steps": steps, "batch_size": 60, "eval_every": steps}})
        rc = cfg.run_config(["none", "before"][(i // len(lrs)) % 2], i // (2 * len(lrs)))
        out.append({"config": rc.to_dict(), "run_dir": str(root / f"run-{i}")})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=24)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "sweep.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run_task(tasks(1, 20, tmp / "warmup")[0])  # data loading and imports, outside the timings
        seq = tasks(args.runs, args.steps, tmp / "seq")
        t0 = time.perf_counter()
        with threadpool_limits(limits=args.workers, user_api="blas"):
            seq_results = [run_task(t) for t in seq]
        t_seq = time.perf_counter() - t0

        par = tasks(args.runs, args.steps, tmp / "par")
        t0 = time.perf_counter()
        par_results = execute(par, run_task, workers=args.workers)
        t_par = time.perf_counter() - t0

    same = all(a["final_test_acc"] == b["final_test_acc"] for a, b in zip(seq_results, par_results))
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    result = {
        "runs": args.runs, "steps_per_run": args.steps, "workers": args.workers, "cpu_count": os.cpu_count(),
        "sequential_s": t_seq, "pool_s": t_par, "speedup": t_seq / t_par,
        "pool_blas_threads": sorted({r["blas_threads"] for r in par_results if isinstance(r, dict)}),
        "identical_results": same, "blas": [(b.get("internal_api"), b.get("version")) for b in blas],
        "python": platform.python_version(),
    }
    print(f"{args.runs} runs x {args.steps} steps (784-100-100-100-10 ReLU, batch 60, bundled MNIST subset)")
    print(f"  sequential, one process, {args.workers} BLAS threads: {t_seq:7.2f} s")
    print(f"  process pool, {args.workers} workers x 1 BLAS thread: {t_par:7.2f} s   "
          f"(worker BLAS threads seen: {result['pool_blas_threads']})")
    print(f"  speedup {result['speedup']:.2f}x on {os.cpu_count()} cores")
    print(f"  final accuracies identical between the two: {same} (a 2-thread BLAS may sum in another order; "
          "this is why bncli runs every run, even in-process, with one BLAS thread)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
