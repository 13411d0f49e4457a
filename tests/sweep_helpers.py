"""Shared bits of the sweep / lrfind / Dask tests: tiny configs, result readers, a subprocess runner."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from tiny import tiny_config

REPO = Path(__file__).resolve().parents[1]

# Small and fast: one run is a few milliseconds of training.
TINY = tiny_config("tinysweep", steps=30)

RUN_FILES = ("config.yaml", "metrics.csv", "summary.json", "meta.json")
NUMERIC = ("final_test_acc", "best_test_acc", "final_train_loss", "steps_to_target")


def write_config(directory: Path, sweep: str = "", base: str = TINY, name: str = "sweep.yaml") -> Path:
    """``base`` plus an optional ``sweep:`` block (YAML text, already indented under ``sweep:``)."""
    p = Path(directory) / name
    p.write_text(base + (f"sweep:\n{sweep}" if sweep else ""))
    return p


def line_of(text: str, fragment: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if fragment in ln)


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_dirs(out: Path) -> list[Path]:
    runs = Path(out) / "runs"
    return sorted(p for p in runs.iterdir() if not p.name.startswith(".")) if runs.is_dir() else []


def hidden_leftovers(out: Path) -> list[str]:
    runs = Path(out) / "runs"
    return sorted(p.name for p in runs.iterdir() if p.name.startswith(".")) if runs.is_dir() else []


def check_complete(run_dir: Path) -> dict:
    """Every file of a run directory is present and parses; returns the parsed summary.json."""
    run_dir = Path(run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(RUN_FILES), run_dir
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert isinstance(cfg, dict) and len(cfg["model"]["bn"]) == 1 and len(cfg["train"]["seeds"]) == 1
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:2] == ["step", "epoch"] and len(rows) >= 2
    assert all(len(r) == len(rows[0]) for r in rows)
    summary = json.loads((run_dir / "summary.json").read_text())
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["run_key"] == run_dir.name
    assert summary["status"] in ("ok", "diverged")
    return summary


def numbers(rows: list[dict], drop=("time_s",)) -> list[dict]:
    """summary.csv rows without the timing columns, for comparisons across executors and worker counts."""
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def as_float(v):
    return math.nan if v in ("", None) else float(v)


def proc_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    env["MPLBACKEND"] = "Agg"
    return env


def bncli_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "bncli", *map(str, args)]


def run_proc(args, cwd, timeout=180):
    return subprocess.run(bncli_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=proc_env())


# -- interrupting real processes ----------------------------------------------------------------------------
def wait_for_first_run(proc, out: Path, timeout=120):
    """Until a first run directory exists under out/runs (the process must still be running)."""
    t0 = time.monotonic()
    while not run_dirs(out):
        assert proc.poll() is None, f"sweep ended before any run finished: {proc.returncode}"
        assert time.monotonic() - t0 < timeout, "no run directory appeared"
        time.sleep(0.01)


def group_gone(pgid, timeout=30) -> bool:
    """Until every process of the group has been reaped (killed workers are zombies for a moment)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def snapshot_runs(out: Path) -> dict:
    return {d.name: ((d / "meta.json").read_text(), d.stat().st_ino) for d in run_dirs(out)}


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (of any of its threads), from Linux's /proc."""
    kids = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(k) for k in f.read().split()]
        except OSError:
            continue
    return kids


def workers_of(pid: int) -> list[int]:
    """The spawned workers among the children of ``pid`` (the resource tracker is a child too)."""
    out = []
    for k in children(pid):
        try:
            with open(f"/proc/{k}/cmdline", "rb") as f:
                if b"spawn_main" in f.read():
                    out.append(k)
        except OSError:
            continue
    return out
