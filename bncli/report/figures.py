"""Figures of the report that are not learning curves or range figures (those are in ``bncli.plotting``). Each
returns its Figure, written to ``path`` if one is given; the legends sit below the panels, where they cover nothing."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..plotting import ARM_COLORS, ARM_LABELS, finish, styled, wrap

SERIES_COLORS = ["#444444", "#1f77b4", "#d95f02", "#7570b3", "#1b9e77", "#e7298a"]
MARGIN_COLOR = "#1b9e77"


def _color(name, i):
    return ARM_COLORS.get(name, SERIES_COLORS[i % len(SERIES_COLORS)])


def _legend_below(fig, handles: dict):
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(len(handles), 4))


def bars(title, panels, ylabel, note="", over="seeds", zero=True, path=None):
    """panels: [(panel title, categories, {series: [(mean, ci_low, ci_high), ...per category]})]; error bars are
    the 95% intervals. Series named after BN placements keep their colours. ``zero``: bars from 0, for quantities
    whose ratio is read (times, accuracies far apart); otherwise each mean is a point on an axis fitted to the
    intervals, so that differences of a few thousandths show. A panel with one series has no legend entry (its
    categories name the bars); a missing value is marked n/a at the foot of the panel."""
    width = max(6.0, 4.2 * len(panels) + 0.8)
    fig = Figure(figsize=(width, 4.6), layout="constrained")
    with styled(width):
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        handles = {}
        for ax, (ptitle, cats, series) in zip(axes, panels):
            _bar_panel(ax, cats, series, zero, handles)
            ax.set_title(ptitle)
            ax.set_ylabel(ylabel if ax is axes[0] else "")
        _legend_below(fig, handles)
        shape = "bars" if zero else "points"
        fig.suptitle(wrap(f"{title}\n{shape}: mean over {over}; error bars: 95% t-interval{note}", width))
    return finish(fig, path)


def _bar_panel(ax, cats, series, zero: bool, handles: dict):
    k = len(series)
    step = 0.8 / max(k, 1)
    x = np.arange(len(cats))
    for i, (name, vals) in enumerate(series.items()):
        if len(vals) != len(cats):
            raise IndexError(f"series {name!r}: {len(vals)} values for {len(cats)} categories")
        m, lo, hi = (np.array([v[j] for v in vals], float) for j in range(3))
        err = np.vstack([np.nan_to_num(m - lo), np.nan_to_num(hi - m)])
        xs = x + (i - (k - 1) / 2) * step
        label = ARM_LABELS.get(name, name)
        if zero:
            h = ax.bar(xs, m, step * 0.92, yerr=err, capsize=3, color=_color(name, i), label=label, alpha=0.9)
        else:
            h = ax.errorbar(xs, m, yerr=err, fmt="o", ms=6, capsize=4, lw=1.5, color=_color(name, i), label=label)
        if k > 1:
            handles.setdefault(label, h)
        for xv in xs[~np.isfinite(m)]:
            ax.annotate("n/a", (xv, 0), xycoords=ax.get_xaxis_transform(), xytext=(0, 3), textcoords="offset points",
                        ha="center", va="bottom", color="0.4")
    long = max((len(str(c)) for c in cats), default=0) * len(cats) > 60
    ax.set_xticks(x, [str(c) for c in cats], rotation=20 if long else 0, ha="right" if long else "center")
    if not zero:
        ax.set_xlim(-0.6, len(cats) - 0.4)
        ax.margins(y=0.15)
    ax.grid(alpha=0.3, axis="y")


def lines(title, panels, xlabel, ylabel, logx=False, path=None, logy=False, band="95% t-interval"):
    """panels: [(panel title, {series: (xs, means, lows, highs)})], the mean with a band from low to high (a 95%
    interval unless ``band`` says what else); a series without points is left out."""
    width = max(6.0, 4.6 * len(panels) + 0.8)
    fig = Figure(figsize=(width, 4.6), layout="constrained")
    with styled(width):
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        handles = {}
        for ax, (ptitle, series) in zip(axes, panels):
            for i, (name, (xs, m, lo, hi)) in enumerate(series.items()):
                if not len(xs):
                    continue
                c = _color(name, i)
                label = ARM_LABELS.get(name, name)
                handles.setdefault(label, ax.plot(xs, m, marker="o", ms=3, color=c, label=label)[0])
                ax.fill_between(xs, lo, hi, color=c, alpha=0.2, lw=0)
            if logx:
                ax.set_xscale("log")
            if logy:
                ax.set_yscale("log")
            ax.set(title=ptitle, xlabel=xlabel, ylabel=ylabel if ax is axes[0] else "")
            ax.grid(alpha=0.3)
        _legend_below(fig, handles)
        fig.suptitle(wrap(f"{title}\nmean over seeds, band = {band}", width))
    return finish(fig, path)


def percentiles(title, curves, unit, path=None, layer="last hidden layer", images=1000, seed=0, activation="sigmoid"):
    """Ioffe & Szegedy Fig. 1(b, c): the 15th, 50th and 85th percentiles of one unit's input to the last hidden
    sigmoid (or to the activation ``layer`` names; a convolution's unit is a channel, over images and positions)
    over training; one panel per arm, on one y scale so that the panels compare. ``curves[arm] = (steps, p15, p50,
    p85)``."""
    width = 10.0
    fig = Figure(figsize=(width, 4.6), layout="constrained")
    with styled(width):
        axes = fig.subplots(1, len(curves), squeeze=False, sharey=True)[0]
        for ax, (arm, (steps, p15, p50, p85)) in zip(axes, curves.items()):
            c = ARM_COLORS.get(arm)
            ax.fill_between(steps, p15, p85, color=c, alpha=0.25, lw=0)
            ax.plot(steps, p50, color=c, lw=1.8)
            ax.plot(steps, p15, color=c, lw=0.8)
            ax.plot(steps, p85, color=c, lw=0.8)
            ax.set(title=ARM_LABELS.get(arm, arm), xlabel="training step")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel(f"input to the {activation} ({'channel' if 'conv' in layer else 'unit'} {unit},\n{layer})")
        # neutral keys: the panel titles name the arms, the colours repeat them
        _legend_below(fig, {"median": Line2D([], [], color="0.3", lw=1.8),
                            "15th-85th percentile": Patch(color="0.3", alpha=0.25, lw=0)})
        fig.suptitle(wrap(f"{title}\n15th, 50th and 85th percentiles over {images:,} fixed test images, seed {seed}, one "
                          "y scale for all panels", width))
    return finish(fig, path)


def differences(title, rows, ylabel, margin=None, note="", path=None):
    """A paired-difference plot: per row (a quantity), each seed's difference as a dot, their mean with its 95%
    t-interval beside them, the zero line and, for a claim of no difference, the band -margin..+margin inside which
    the whole interval must lie. rows: [(label, [difference per seed], (mean, ci_low, ci_high))]."""
    width = max(6.0, 2.8 * len(rows) + 2.4)
    fig = Figure(figsize=(width, 4.8), layout="constrained")
    with styled(width):
        ax = fig.subplots()
        handles = {}
        if margin is not None:
            handles[f"equivalence margin ±{margin:g}"] = ax.axhspan(-margin, margin, color=MARGIN_COLOR, alpha=0.15,
                                                                      lw=0)
        ax.axhline(0, color="0.3", lw=0.9)
        for i, (label, diffs, (m, lo, hi)) in enumerate(rows):
            d = np.asarray(diffs, float)
            # seeds spread sideways in the order of their values, so that equal differences do not hide each other
            spread = np.linspace(-0.12, 0.12, len(d)) if len(d) > 1 else np.zeros(len(d))
            order = np.argsort(d, kind="stable")
            dots = ax.plot(i - 0.18 + spread[np.argsort(order)], d, "o", ms=5, color="#1f77b4", alpha=0.6)[0]
            handles.setdefault("one seed", dots)
            mean = ax.errorbar([i + 0.18], [m], yerr=[[m - lo], [hi - m]], fmt="D", ms=7, capsize=5, lw=1.8,
                               color="black")
            handles.setdefault("mean, 95% t-interval", mean)
        ax.set_xticks(range(len(rows)), [r[0] for r in rows])
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.margins(y=0.12)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, axis="y")
        _legend_below(fig, handles)
        fig.suptitle(wrap(f"{title}\npaired by seed: one dot per seed; the mean with its 95% t-interval beside "
                          f"them{note}", width))
    return finish(fig, path)
