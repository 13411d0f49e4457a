"""Figures, drawn headless (matplotlib's Agg canvas, no pyplot state) and written atomically.

No-BN and each BN placement keep the same colour in every figure.
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import atomic
from .stats import t975

ARM_COLORS = {"none": "#444444", "before": "#1f77b4", "after": "#d95f02"}
ARM_LABELS = {"none": "no BN", "before": "BN before activation", "after": "BN after activation"}


def save(fig: Figure, path, fmt=None):
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt or str(path).rsplit(".", 1)[-1], dpi=130, bbox_inches="tight")
    atomic.write_bytes(path, buf.getvalue())


def mean_band(curves, column):
    """Per evaluation step: mean and 95% t-band over the runs that reached that step (runs may stop early)."""
    steps = sorted({r[0] for cols, rows in curves for r in rows})
    by_step = {s: [] for s in steps}
    for cols, rows in curves:
        j = cols.index(column)
        for r in rows:
            if math.isfinite(r[j]):
                by_step[r[0]].append(r[j])
    xs, mean, lo, hi = [], [], [], []
    for s in steps:
        v = np.asarray(by_step[s])
        if len(v) == 0:
            continue
        m = v.mean()
        h = t975(len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else 0.0
        xs.append(s), mean.append(m), lo.append(m - h), hi.append(m + h)
    return np.array(xs), np.array(mean), np.array(lo), np.array(hi)


def learning_curves(curves_by_arm: dict, path, title="", target=None):
    """Training loss (running minibatch mean, log scale) and test accuracy against steps, per arm."""
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for arm, curves in curves_by_arm.items():
        color = ARM_COLORS.get(arm, None)
        label = f"{ARM_LABELS.get(arm, arm)} (n={len(curves)})"
        for ax, column in ((ax_loss, "train_loss"), (ax_acc, "test_acc")):
            x, m, lo, hi = mean_band(curves, column)
            if column == "train_loss":
                keep = x > 0
                x, m, lo, hi = x[keep], m[keep], np.maximum(lo[keep], 1e-6), hi[keep]
            ax.plot(x, m, color=color, label=label, lw=1.8)
            ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
    if any(line.get_xydata().size for line in ax_loss.get_lines()):  # runs that all diverged early have no loss
        ax_loss.set_yscale("log")
    ax_loss.set(xlabel="training step", ylabel="training loss (running minibatch mean, log)",
                title="Training loss")
    ax_acc.set(xlabel="training step", ylabel="test accuracy (eval mode)", title="Test accuracy")
    if target:
        ax_acc.axhline(target, color="0.6", ls=":", lw=1, label=f"target {target:g}")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}\nmean over seeds, band = 95% t-interval", fontsize=10)
    save(fig, path)


def lrfind_plot(curves: dict, suggestions: dict, path, title=""):
    """Smoothed loss against the learning rate (log x), one curve per arm, suggestions marked."""
    fig = Figure(figsize=(10, 4.6), layout="constrained")
    ax = fig.subplots()
    for arm, curve in curves.items():
        color = ARM_COLORS.get(arm)
        lr = np.array([c[1] for c in curve])
        sm = np.array([c[3] for c in curve])
        ax.plot(lr, sm, color=color, lw=1.8, label=ARM_LABELS.get(arm, arm))
        s = suggestions[arm]
        for x, marker, name in ((s["steep_lr"], "o", "steepest"), (s["min_lr"] / 10, "v", "minimum/10")):
            if not lr[0] <= x <= lr[-1]:
                continue
            yv = np.interp(np.log10(x), np.log10(lr[np.isfinite(sm)]), sm[np.isfinite(sm)])
            ax.plot([x], [yv], marker=marker, color=color, ms=8, ls="none",
                    label=f"{ARM_LABELS.get(arm, arm)}: {name} {x:.2g}")
    ax.set_xscale("log")
    finite = [c[3] for cs in curves.values() for c in cs if math.isfinite(c[3])]
    if finite:
        lo, first = min(finite), max(cs[0][3] for cs in curves.values())
        ax.set_ylim(lo - 0.1 * (first - lo + 1e-3), first + 0.6 * (first - lo + 1e-3))
    ax.set(xlabel="learning rate (log scale)", ylabel="smoothed training loss (debiased EMA)", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    save(fig, path)
