"""The learning-rate range test's figure: smoothed loss against the learning rate, one curve per arm."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from .style import ARM_COLORS, ARM_LABELS, clamp_log_axis, finish, log_ticks, styled, wrap


def lrfind_plot(curves: dict, suggestions: dict, path=None, title="", flat=()):
    """Smoothed loss against the learning rate (log x), one curve per arm, its suggestions marked — except for the
    arms in ``flat``, whose loss never clearly fell (`lrfind.clear_descent`): a suggestion from a flat curve means
    nothing, so such a curve is dashed and unmarked."""
    width = 10.0
    fig = Figure(figsize=(width, 4.8), layout="constrained")
    with styled(width):
        ax = fig.subplots()
        for arm, curve in curves.items():
            _lrfind_curve(ax, arm, curve, None if arm in flat else suggestions[arm])
        ax.set_xscale("log")
        clamp_log_axis(ax, "x")
        finite = [c[3] for cs in curves.values() for c in cs if math.isfinite(c[3])]
        if finite:
            lo, first = min(finite), max(cs[0][3] for cs in curves.values())
            ax.set_ylim(lo - 0.1 * (first - lo + 1e-3), first + 0.6 * (first - lo + 1e-3))
        log_ticks(ax, "x")
        ax.set(xlabel="learning rate (log scale)", ylabel="smoothed training loss (debiased EMA)")
        ax.grid(alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.suptitle(wrap(f"{title}\nsmoothed loss as the learning rate grows geometrically, one short run per arm; "
                          "o: steepest descent, v: minimum/10", width))
    return finish(fig, path)


def _lrfind_curve(ax, arm, curve, s):
    """One arm's curve with the suggestions ``s`` (None: a flat curve, no suggestion)."""
    color, name = ARM_COLORS.get(arm), ARM_LABELS.get(arm, arm)
    lr = np.array([c[1] for c in curve])
    sm = np.array([c[3] for c in curve])
    ax.plot(lr, sm, color=color, lw=1.8, label=name if s else f"{name}: no clear descent, no suggestion",
            ls="-" if s else "--")
    for x, marker, what in ((s["steep_lr"], "o", "steepest"), (s["min_lr"] / 10, "v", "minimum/10")) if s else ():
        if not lr[0] <= x <= lr[-1]:
            continue
        yv = np.interp(np.log10(x), np.log10(lr[np.isfinite(sm)]), sm[np.isfinite(sm)])
        ax.plot([x], [yv], marker=marker, color=color, ms=8, ls="none", label=f"{name}: {what} {x:.2g}")


