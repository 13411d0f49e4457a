"""What pinning the OpenBLAS kernel costs, and whether it changes the numbers.

Trains the same fixed run (experiments/bn_paper_mnist.yaml, arm "before", seed 0, --steps steps) in fresh
subprocesses with one BLAS thread: once in the default environment (OpenBLAS picks the kernel for this CPU) and once
per OPENBLAS_CORETYPE this CPU can run (read from the /proc/cpuinfo flags), plus -- if numpy dispatches its own loops
to AVX-512 here -- once with numpy's AVX-512 loops disabled (NPY_DISABLE_CPU_FEATURES), alone and with the
Haswell kernel; the latter approximates an AVX2-only CPU such as AMD Zen 2/3 (OpenBLAS reports its Zen target as
Haswell). The variables must be set before numpy is imported, hence the subprocesses. Settings are interleaved over
--repeats rounds so that load changes hit all of them alike.

Prints per setting: the kernel threadpoolctl reports in the child, numpy's SIMD extensions in use, the training
time per step (evaluations excluded; the minimum over the rounds, and the median), its ratio to the default
setting's (same invocation), the final test accuracy and loss, and a SHA-256 of the final parameters, running
statistics and metrics; equal hashes mean bit-identical results.

    python benchmarks/bench_kernel.py [--steps 1000] [--repeats 3] [--coretypes Haswell,SkylakeX]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "experiments" / "bn_paper_mnist.yaml"

# OPENBLAS_CORETYPE value -> the /proc/cpuinfo flag the kernel needs (x86-64 only).
CORETYPES = {"SkylakeX": "avx512f", "Haswell": "avx2", "Sandybridge": "avx", "Nehalem": "sse4_2", "Prescott": "pni"}
DEFAULT_CORETYPES = ("SkylakeX", "Haswell", "Sandybridge", "Prescott")
# Variables that pin a kernel or a code path: removed from the children's environment except where a setting sets them.
PINNING_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_VERBOSE", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS",
                "NPY_DISABLE_CPU_FEATURES", "NPY_ENABLE_CPU_FEATURES")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

CHILD = r"""
import hashlib, json, sys
import numpy as np
from threadpoolctl import threadpool_info
from bncli.config import load_config
from bncli.runs import dataset_for, metrics_csv
from bncli.training import train_run

cfg, _ = load_config(sys.argv[1], [f"train.steps={int(sys.argv[2])}"])
run = cfg.run_config("before", 0)
res = train_run(run, dataset_for(run), keep_model=True)
h = hashlib.sha256()
h.update(np.ascontiguousarray(res.model.flat.params).tobytes())
for name, value in sorted(res.model.get_buffers().items()):
    h.update(name.encode() + np.ascontiguousarray(value).tobytes())
h.update(metrics_csv(res.columns, res.rows).encode())
blas = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
s = res.summary
print(json.dumps({
    "kernel": ",".join(str(lib.get("architecture")) for lib in blas) or None,
    "blas": ",".join(f"{lib.get('internal_api')} {lib.get('version')}" for lib in blas) or None,
    "blas_threads": [lib.get("num_threads") for lib in blas],
    "simd": np.show_config(mode="dicts")["SIMD Extensions"]["found"],
    "steps": s["steps_done"], "train_s": s["time_s"] - s["eval_time_s"],
    "final_test_acc": s["final_test_acc"], "final_test_loss": res.rows[-1][res.columns.index("test_loss")],
    "sha256": h.hexdigest(),
}))
"""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def coretype_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CORETYPES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(CORETYPES)}; "
                                         f"got {text!r}")
    return names


def cpu_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return set(value.split())
    except OSError:
        pass
    return None


def cpu_model() -> str:
    from bncli.runs import platform_info

    return platform_info().get("cpu_model") or platform.processor() or "unknown CPU"


def numpy_avx512_features() -> list[str]:
    """numpy's dispatch targets found on this CPU that need AVX-512 (names differ between numpy versions)."""
    import numpy as np

    try:
        found = np.show_config(mode="dicts")["SIMD Extensions"]["found"]
    except Exception:  # noqa: BLE001 - older numpy: no such information, no such setting
        return []
    return [f for f in found if f == "X86_V4" or f.startswith("AVX512")]


def settings(coretypes: list[str], flags: set[str] | None) -> tuple[list[tuple[str, dict]], list[str]]:
    out, skipped = [("default", {})], []
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    for name in coretypes:
        if not x86 or flags is None or CORETYPES[name] not in flags:
            skipped.append(f"{name} (needs {CORETYPES[name]}, which this CPU does not report)")
        else:
            out.append((f"OPENBLAS_CORETYPE={name}", {"OPENBLAS_CORETYPE": name}))
    avx512 = numpy_avx512_features()
    if avx512:
        out.append(("numpy without AVX-512", {"NPY_DISABLE_CPU_FEATURES": " ".join(avx512)}))
        if x86 and flags is not None and "avx2" in flags:
            out.append(("Haswell + numpy without AVX-512",
                        {"OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": " ".join(avx512)}))
    return out, skipped


def child_env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PINNING_VARS}
    env.update({k: "1" for k in THREAD_VARS})
    env.update(extra)
    return env


def run_child(steps: int, extra: dict) -> dict:
    p = subprocess.run([sys.executable, "-c", CHILD, str(CONFIG), str(steps)], cwd=ROOT, env=child_env(extra),
                       capture_output=True, text=True)
    if p.returncode != 0:
        return {"error": f"exit code {p.returncode}: {(p.stderr.strip().splitlines() or [''])[-1]}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--steps", type=positive_int, default=1000, help="training steps per run (default: 1000)")
    ap.add_argument("--repeats", type=positive_int, default=3,
                    help="interleaved rounds; the time per step is the minimum over them, the least disturbed by "
                         "other load (default: 3)")
    ap.add_argument("--coretypes", type=coretype_list, default=list(DEFAULT_CORETYPES),
                    help=f"comma-separated OPENBLAS_CORETYPE values to try, among {', '.join(CORETYPES)} "
                         f"(default: {','.join(DEFAULT_CORETYPES)}); those this CPU cannot run are skipped")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "kernel.json"),
                    help="where to write the numbers (default: benchmarks/results/kernel.json)")
    args = ap.parse_args()

    pinned = {k: os.environ[k] for k in PINNING_VARS if k in os.environ}
    todo, skipped = settings(args.coretypes, cpu_flags())
    print(f"{cpu_model()}, {os.cpu_count()} logical CPUs, python {platform.python_version()}; "
          f"{CONFIG.relative_to(ROOT)}, arm before, seed 0, {args.steps} steps, one BLAS thread, "
          f"{args.repeats} interleaved round(s)")
    if pinned:
        print(f"(removed from the children's environment: {', '.join(f'{k}={v}' for k, v in pinned.items())})")
    for s in skipped:
        print(f"skipped: {s}")

    results: dict[str, list[dict]] = {name: [] for name, _ in todo}
    t0 = time.perf_counter()
    for _ in range(args.repeats):
        for name, extra in todo:
            results[name].append(run_child(args.steps, extra))
    wall = time.perf_counter() - t0

    rows = []
    for name, extra in todo:
        runs = results[name]
        errors = [r["error"] for r in runs if "error" in r]
        ok = [r for r in runs if "error" not in r]
        row = {"setting": name, "env": extra, "errors": errors}
        if ok:
            hashes = sorted({r["sha256"] for r in ok})
            row.update(kernel=ok[0]["kernel"], blas=ok[0]["blas"], simd=ok[0]["simd"],
                       blas_threads=ok[0]["blas_threads"], final_test_acc=ok[0]["final_test_acc"],
                       final_test_loss=ok[0]["final_test_loss"],
                       ms_per_step=min(1e3 * r["train_s"] / r["steps"] for r in ok),
                       ms_per_step_median=statistics.median(1e3 * r["train_s"] / r["steps"] for r in ok),
                       ms_per_step_all=[1e3 * r["train_s"] / r["steps"] for r in ok],
                       sha256=hashes[0] if len(hashes) == 1 else None, sha256_all=hashes)
        rows.append(row)
    base = rows[0]
    for row in rows:
        if "ms_per_step" in row and "ms_per_step" in base:
            row["ratio_to_default"] = row["ms_per_step"] / base["ms_per_step"]
            row["ratio_to_default_median"] = row["ms_per_step_median"] / base["ms_per_step_median"]
            row["same_bits_as_default"] = row["sha256"] is not None and row["sha256"] == base.get("sha256")

    print()
    print(f"{'setting':<34} {'kernel':<12} {'numpy SIMD found':<36} {'ms/step':>8} {'ratio':>6} {'(median)':>14}  "
          f"{'final acc':>9} {'test loss':>11}  sha256 (first 16)  same bits as default")
    for row in rows:
        if "ms_per_step" not in row:
            print(f"{row['setting']:<34} failed: {'; '.join(row['errors'])}")
            continue
        digest = row["sha256"][:16] if row["sha256"] else "DIFFERS/REPEAT"
        median = f"({row['ms_per_step_median']:.3f}, {row['ratio_to_default_median']:.2f})"
        print(f"{row['setting']:<34} {str(row['kernel']):<12} {','.join(row['simd'] or []):<36} "
              f"{row['ms_per_step']:8.3f} {row['ratio_to_default']:6.2f} {median:>14}  "
              f"{row['final_test_acc']:9.4f} {row['final_test_loss']:11.9f}  "
              f"{digest:<17}  {'yes' if row['same_bits_as_default'] else 'no'}")
        if row["errors"]:
            print(f"{'':<34} ({len(row['errors'])} of {args.repeats} runs failed: {row['errors'][0]})")
        if row["sha256"] is None:
            print(f"{'':<34} (repeats of this setting gave different hashes: {len(row['sha256_all'])})")
    groups: dict[str, list[str]] = {}
    for row in rows:
        if row.get("sha256"):
            groups.setdefault(row["sha256"], []).append(row["setting"])
    print()
    print("bit-identical groups: " + " | ".join(" = ".join(g) for g in groups.values()))
    print(f"(wall time {wall:.0f} s; ms/step = training time / steps, evaluations excluded, the minimum over the "
          f"rounds; ratio = ms/step / the default's ms/step, all measured in this invocation; in parentheses the "
          f"median ms/step and its ratio)")

    out = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu_model": cpu_model(),
           "cpu_count": os.cpu_count(), "python": platform.python_version(), "steps": args.steps,
           "repeats": args.repeats, "skipped": skipped, "removed_from_env": pinned, "settings": rows}
    try:
        import numpy as np

        out["numpy"] = np.__version__
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
