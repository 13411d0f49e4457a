"""End-to-end timings, as a user runs bncli: the Ioffe & Szegedy experiment on the bundled data (both arms, 5 seeds,
all cores), an estimate of the full-MNIST setting (50,000 steps x 2 arms x 5 seeds) from the measured step rates,
optionally `bncli report --quick`, and the peak memory of one run against the size of its dataset in float32.

    python benchmarks/bench_e2e.py [--report] [--json benchmarks/results/e2e.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEAK = """
import resource, sys, time
from bncli.config import load_config
from bncli.runs import run_task
cfg, _ = load_config(sys.argv[1], sys.argv[3:])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from bncli.runs import dataset_for
data = dataset_for(cfg.run_config(cfg.model.bn[-1], 0))
nbytes = sum(a.nbytes for a in (data.X_train, data.X_test) if a is not None)
after_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
run_task({"config": cfg.run_config(cfg.model.bn[-1], 0).to_dict(), "run_dir": sys.argv[2]})
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(base * 1024, after_data * 1024, peak * 1024, nbytes)
"""


def bncli(*args, cwd):
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "bncli", *args], cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"bncli {' '.join(args)} failed:\n{p.stderr[-2000:]}")
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", action="store_true", help="also time `bncli report --quick` (about 10 minutes)")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "e2e.json"))
    args = ap.parse_args()
    out = {"cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        exp = ROOT / "experiments" / "bn_paper_mnist.yaml"
        out["bn_paper_mnist_s"] = bncli("train", str(exp), "--out", f"{tmp}/paper", cwd=ROOT)
        rates = {}
        for arm in ("none", "before"):
            s = json.loads((Path(tmp) / "paper" / arm / "seed-0" / "summary.json").read_text())
            rates[arm] = s["steps_done"] / s["time_s"]  # whole run: steps, evaluations and all
        out["steps_per_s_per_core"] = rates
        # 50,000 steps x 5 seeds per arm on full MNIST; per-step cost does not depend on the training-set size,
        # evaluation on 10,000 test images every 1,000 steps adds ~1%.
        work = sum(50_000 * 5 / r for r in rates.values())
        out["full_mnist_estimate_s"] = work / min(2, os.cpu_count() or 1)
        peak = subprocess.run([sys.executable, "-c", PEAK, str(exp), f"{tmp}/peak", "train.seeds=1"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.split()
        base, after_data, top, nbytes = map(int, peak)
        out["peak_rss_bytes"], out["baseline_rss_bytes"], out["dataset_bytes_float32"] = top, base, nbytes
        out["peak_over_dataset"] = (top - base) / nbytes
        if args.report:
            out["report_quick_s"] = bncli("report", "--quick", "--out", f"{tmp}/report", cwd=ROOT)
    print(f"bn_paper_mnist.yaml (2 arms x 5 seeds x 5,000 steps, all cores): {out['bn_paper_mnist_s']:.1f} s")
    print("steps/s per core (whole run): " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()))
    print(f"estimate, full-MNIST Ioffe & Szegedy setting (50,000 steps x 2 arms x 5 seeds) on two cores: "
          f"{out['full_mnist_estimate_s'] / 60:.1f} min (target <= 5 min)")
    print(f"peak memory of one run: {top / 2**20:.0f} MiB, of which {(top - base) / 2**20:.0f} MiB above the "
          f"interpreter + libraries ({base / 2**20:.0f} MiB); dataset in float32 {nbytes / 2**20:.1f} MiB -> "
          f"{out['peak_over_dataset']:.1f}x (target <= 4x)")
    if "report_quick_s" in out:
        print(f"bncli report --quick: {out['report_quick_s'] / 60:.1f} min (target <= 15 min)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
