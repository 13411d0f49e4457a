"""Many models at once: throughput of M stacked models (bncli/stacking.py) against M single runs in the same
process, on the Ioffe & Szegedy network (3 x 100 sigmoid) with and without BN, one BLAS thread, on the bundled
MNIST subset; and the stacked step per model against its share of the matrix-product floor.

    python benchmarks/bench_stack.py [--models 5] [--steps 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_e2e import step_floor  # noqa: E402

from bncli.config import load_config  # noqa: E402
from bncli.runs import dataset_for  # noqa: E402
from bncli.stacking import train_stack  # noqa: E402
from bncli.training import train_run  # noqa: E402


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    M = args.models
    print(f"{M} models, {args.steps} steps each, one BLAS thread; best of {args.rounds} interleaved rounds; "
          "evaluation only at the start and the end")
    for batch in (60, 256):
        for arm in ("none", "before"):
            cfg, _ = load_config(ROOT / "experiments" / "bn_paper_mnist.yaml",
                                 [f"train.steps={args.steps}", f"train.batch_size={batch}",
                                  f"train.eval_every={args.steps}", f"model.bn=[{arm}]"])
            cfgs = [cfg.run_config(arm, s) for s in range(M)]
            data = dataset_for(cfgs[0])
            single = stacked = float("inf")
            for _ in range(args.rounds):
                single = min(single, timed(lambda: [train_run(c, data) for c in cfgs]))
                stacked = min(stacked, timed(lambda: train_stack(cfgs, data)))
            floor = step_floor([784, 100, 100, 100, 10], batch, cfg.train.dtype)
            per_model_step = stacked / (M * args.steps)
            print(f"batch {batch:>3}, {'BN before' if arm == 'before' else 'no BN':<9}: {M} single runs "
                  f"{single:.2f} s, stacked {stacked:.2f} s -> {single / stacked:.2f}x "
                  f"(goal >= 1.3x at batch 60); stacked step per model {per_model_step * 1e3:.3f} ms = "
                  f"{per_model_step / floor:.2f}x its matrix-product floor {floor * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
