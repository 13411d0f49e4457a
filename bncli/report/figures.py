"""Figures of the report that are not learning curves or range figures (those are in ``bncli.plotting``)."""

from __future__ import annotations


import numpy as np
from matplotlib.figure import Figure

from ..plotting import ARM_COLORS, ARM_LABELS, save

SERIES_COLORS = ["#444444", "#1f77b4", "#d95f02", "#7570b3", "#1b9e77", "#e7298a"]


def _color(name, i):
    return ARM_COLORS.get(name, SERIES_COLORS[i % len(SERIES_COLORS)])


def bars(path, title, panels, ylabel, note="", over="seeds"):
    """panels: [(panel title, categories, {series: [(mean, ci_low, ci_high), ...per category]})]; error bars are
    the 95% intervals. Series named after BN placements keep their colours."""
    fig = Figure(figsize=(4.2 * len(panels) + 0.8, 4.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (ptitle, cats, series) in zip(axes, panels):
        k = len(series)
        width = 0.8 / max(k, 1)
        x = np.arange(len(cats))
        for i, (name, vals) in enumerate(series.items()):
            m = np.array([v[0] for v in vals], float)
            lo = np.array([v[1] for v in vals], float)
            hi = np.array([v[2] for v in vals], float)
            err = np.vstack([np.nan_to_num(m - lo), np.nan_to_num(hi - m)])
            xs = x + (i - (k - 1) / 2) * width
            ax.bar(xs, m, width * 0.92, yerr=err, capsize=3, color=_color(name, i),
                   label=ARM_LABELS.get(name, name), alpha=0.9)
            for xv in xs[~np.isfinite(m)]:
                ax.text(xv, 0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
        long = max((len(str(c)) for c in cats), default=0) * len(cats) > 60
        ax.set_xticks(x, [str(c) for c in cats], fontsize=8, rotation=20 if long else 0, ha="right" if long else "center")
        ax.set_title(ptitle, fontsize=10)
        ax.set_ylabel(ylabel if ax is axes[0] else "")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)
    fig.suptitle(f"{title}\nbars: mean over {over}; error bars: 95% t-interval{note}", fontsize=9)
    save(fig, path)


def lines(path, title, panels, xlabel, ylabel, logx=False):
    """panels: [(panel title, {series: (xs, means, lows, highs)})], mean with a 95% band."""
    fig = Figure(figsize=(4.6 * len(panels) + 0.8, 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (ptitle, series) in zip(axes, panels):
        for i, (name, (xs, m, lo, hi)) in enumerate(series.items()):
            c = _color(name, i)
            ax.plot(xs, m, marker="o", ms=4, color=c, label=ARM_LABELS.get(name, name))
            ax.fill_between(xs, lo, hi, color=c, alpha=0.2, lw=0)
        if logx:
            ax.set_xscale("log")
        ax.set(title=ptitle, xlabel=xlabel, ylabel=ylabel if ax is axes[0] else "")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title}\nmean over seeds, band = 95% t-interval", fontsize=9)
    save(fig, path)


def percentiles(path, title, curves, unit):
    """Ioffe & Szegedy Fig. 1(b, c): the 15th, 50th and 85th percentiles of one unit's input to the last hidden
    sigmoid over training; one panel per arm. ``curves[arm] = (steps, p15, p50, p85)``."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, len(curves), squeeze=False, sharey=False)[0]
    for ax, (arm, (steps, p15, p50, p85)) in zip(axes, curves.items()):
        c = ARM_COLORS.get(arm)
        ax.fill_between(steps, p15, p85, color=c, alpha=0.25, lw=0, label="15th-85th percentile")
        ax.plot(steps, p50, color=c, lw=1.8, label="median")
        ax.plot(steps, p15, color=c, lw=0.8)
        ax.plot(steps, p85, color=c, lw=0.8)
        ax.set(title=ARM_LABELS.get(arm, arm), xlabel="training step",
               ylabel=f"input to the sigmoid (unit {unit}, last hidden layer)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}\npercentiles over 1,000 fixed test images, seed 0", fontsize=9)
    save(fig, path)
