"""`bncli plot` as a library function: recognise what a results directory holds and draw its figures."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from . import plotting
from .errors import UsageError
from .experiment import draw_learning_curves
from .runs import read_metrics

FORMATS = ("png", "svg", "pdf")


def kind_of(results_dir: Path) -> str:
    for name, kind in (("report.json", "report"), ("sweep.json", "sweep"), ("experiment.json", "train"),
                       ("lr_find.json", "lrfind")):
        if (results_dir / name).exists():
            return kind
    raise UsageError(f"{results_dir}: no bncli results here (expected experiment.json from `bncli train`, "
                     "sweep.json from `bncli sweep`, lr_find.json from `bncli lrfind` or report.json)")


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_train(d: Path, out: Path, fmt: str) -> list[Path]:
    """The runs experiment.json lists — this invocation's, never older runs kept in runs/ as a cache."""
    exp = json.loads((d / "experiment.json").read_text())
    if "runs" not in exp:
        raise UsageError(f"{d}: written by an older bncli (no list of runs in experiment.json); run `bncli train` "
                         "again into this folder (finished runs are reused where the code is unchanged)")
    paths = [out / f"learning_curves.{fmt}"]
    if not draw_learning_curves(exp, d, paths[0]):
        raise UsageError(f"{d}: the experiment has no finished runs to plot")
    curves = {}
    for r in exp["runs"]:
        metrics = d / "runs" / r["hash"] / "metrics.csv"
        if r["status"] in ("ok", "diverged") and metrics.exists():
            curves.setdefault(r["arm"], []).append(read_metrics(metrics))
    if curves and all("train_eval_acc" in cols for cs in curves.values() for cols, _ in cs):
        paths.append(out / f"generalization_gap.{fmt}")
        plotting.gap_curves(curves, paths[-1], title=exp["name"])
    return paths


def plot_sweep(d: Path, out: Path, fmt: str) -> list[Path]:
    info = json.loads((d / "sweep.json").read_text())
    if not info.get("range_key"):
        raise UsageError(f"{d}: the sweep has no numeric key to draw a range figure for")
    path = out / f"range.{fmt}"
    plotting.range_figure(_rows(d / "range.csv"), _rows(d / "ranges.csv"), info["keys"], info["range_key"], path,
                          title=info["name"])
    return [path]


def plot_lrfind(d: Path, out: Path, fmt: str) -> list[Path]:
    info = json.loads((d / "lr_find.json").read_text())
    curves: dict[str, list] = {}
    for r in _rows(d / "lr_find.csv"):
        f = lambda v: float(v) if v != "" else math.nan  # noqa: E731
        curves.setdefault(r["arm"], []).append((int(r["iteration"]), f(r["lr"]), f(r["loss"]), f(r["smoothed_loss"])))
    path = out / f"lr_find.{fmt}"
    plotting.lrfind_plot(curves, info["suggestions"], path, title=f"{info['name']}: learning-rate range test")
    return [path]


def plot_dir(results_dir, fmt="png", out=None) -> list[Path]:
    d = Path(results_dir)
    if not d.is_dir():
        raise UsageError(f"{d}: not a directory")
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    out = Path(out) if out else d
    kind = kind_of(d)
    if kind == "report":
        from .report import plot_report

        return plot_report(d, out, fmt)
    return {"train": plot_train, "sweep": plot_sweep, "lrfind": plot_lrfind}[kind](d, out, fmt)
