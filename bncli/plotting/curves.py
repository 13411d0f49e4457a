"""Learning curves (loss, accuracy, the fraction of seeds at the target) and the generalization gap, over seeds."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..stats import t975
from .style import ARM_COLORS, ARM_LABELS, LOG_MAX, finish, log_ticks, styled, wrap


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


TARGET_SPLITS = {"test_acc": "test", "val_acc": "validation", "train_eval_acc": "training"}


def run_diverged(columns, rows) -> bool:
    """Fallback when no run status is known: a run diverged if its last row's training loss is non-finite (the
    training loop records one last row when the loss stops being finite). A run with only its step-0 row has no
    training loss yet and did not diverge."""
    if len(rows) < 2 or "train_loss" not in columns:
        return False
    return not math.isfinite(rows[-1][columns.index("train_loss")])


def _finite_series(columns, rows, column, positive=False):
    """Steps and values of the rows where ``column`` is finite (and > 0 with ``positive``); empty if absent."""
    if column not in columns:
        return np.array([]), np.array([])
    j = columns.index(column)
    pts = [(r[0], r[j]) for r in rows if math.isfinite(r[j]) and (not positive or r[j] > 0)]
    return np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)


def reached_step(columns, rows, column, target):
    """Step of the first evaluation row whose ``column`` is >= ``target`` (None: never, or no such column)."""
    if column not in columns:
        return None
    j = columns.index(column)
    return next((r[0] for r in rows if math.isfinite(r[j]) and r[j] >= target - 1e-12), None)


# -- learning curves --------------------------------------------------------------------------------------------------
@dataclass
class _Arm:
    """One arm's runs for the learning curves: all of them, split by whether they diverged, and the step at which
    each reached the target (None: never, or no target)."""

    key: str
    color: str | None
    name: str
    label: str
    runs: list
    ok: list
    div: list
    reached: list


def _split_arms(curves_by_arm: dict, diverged, target, column) -> list[_Arm]:
    arms = []
    for arm, curves in curves_by_arm.items():
        if not curves:
            continue
        flags = (diverged or {}).get(arm)
        if flags is None:
            flags = [run_diverged(cols, rows) for cols, rows in curves]
        if len(flags) != len(curves):
            raise ValueError(f"diverged[{arm!r}] has {len(flags)} entries for {len(curves)} runs")
        div = [c for c, f in zip(curves, flags) if f]
        reached = [None if target is None else reached_step(cols, rows, column, target) for cols, rows in curves]
        name = ARM_LABELS.get(arm, arm)
        parts = [f"n={len(curves)}"] + ([f"{len(div)} diverged, not in the mean"] if div else []) + (
            [f"{sum(s is not None for s in reached)}/{len(curves)} reached {target:g}"] if target is not None else [])
        arms.append(_Arm(arm, ARM_COLORS.get(arm), name, f"{name} ({'; '.join(parts)})", curves,
                         [c for c, f in zip(curves, flags) if not f], div, reached))
    return arms


def _x_at(ax, arm: _Arm, k, x, y, *, edge=None):
    """The x ending diverged run ``k``: at (x, y), or at the axis' edge (``edge``: axes fraction) when y is off it."""
    where = {"transform": ax.get_xaxis_transform(), "clip_on": False} if edge is not None else {}
    ax.plot([x], [y if edge is None else edge], color=arm.color, ls="none", marker="x", ms=7, mew=1.6, alpha=0.85,
            gid=f"diverged-end:{arm.key}:{k}", **where)


def _loss_limits(means, runs, bands_hi):
    """(bottom, top) of the log loss axis, from the lines (means, diverged runs), not the bands: a wide band (few
    seeds, one odd run) is cut at the edges. The bottom sits a little below the lowest line. A diverged run's loss
    may grow by many decades before it stops being finite: with means to show, the axis ends two decades above them
    and such a run leaves through the top (its x drawn at the edge). None without any loss."""
    lines = np.concatenate([*means, *runs]) if means or runs else np.array([])
    if not lines.size:
        return None
    lo_y, hi_y = lines.min(), lines.max()
    if means:
        hi_y = min(hi_y, max(m.max() for m in means) * 100)
    band = np.concatenate([lines[lines <= hi_y], *bands_hi])
    top = min(max(band.max(), hi_y), hi_y * 4) * 1.2
    # A loss near the float range (an exploding float64 run) would overflow the log axis' ticks: the axis stays
    # within 1e-200..1e200 and what lies beyond leaves through its edge.
    top = min(top, LOG_MAX)
    return min(max(lo_y / 1.5, 1 / LOG_MAX), top / 10), top


def _loss_panel(ax, arms: list[_Arm]):
    """Training loss (log): each arm's mean over the runs that did not diverge with its band, each diverged run a
    thin line ending in x at its last finite loss (at the top edge if that is off the scale, or never finite)."""
    means = {}
    for a in arms:
        if a.ok:
            x, m, lo, hi = mean_band(a.ok, "train_loss")
            keep = (x > 0) & (m > 0)  # step 0 has no training loss
            means[a.key] = (x[keep], m[keep], lo[keep], hi[keep])
    runs = {a.key: [_finite_series(cols, rows, "train_loss", positive=True) for cols, rows in a.div] for a in arms}
    runs = {arm: [(x[x > 0], y[x > 0]) for x, y in rs] for arm, rs in runs.items()}
    limits = _loss_limits([m for _, m, _, _ in means.values()], [y for rs in runs.values() for _, y in rs],
                          [hi for *_, hi in means.values()])
    ax.set(xlabel="training step", ylabel="training loss, nats (running minibatch mean)", title="Training loss")
    ax.grid(alpha=0.3)
    if limits is None:  # runs that all diverged early have no loss
        return
    bottom, top = limits
    ax.set_yscale("log")
    ax.set_ylim(bottom, top)
    off_scale = {}  # arm -> [(k, step, last finite loss or nan)] of the x drawn at the top edge
    for a in arms:
        if a.key in means:
            x, m, lo, hi = means[a.key]
            ax.plot(x, m, color=a.color, label=a.label, lw=1.8, gid=f"mean:{a.key}")
            # a band below the axis (its t-interval reaches 0 or less) runs along the bottom edge
            ax.fill_between(x, np.maximum(lo, bottom), hi, color=a.color, alpha=0.2, lw=0)
        for k, ((x, y), (cols, rows)) in enumerate(zip(runs[a.key], a.div)):
            if len(x):
                ax.plot(x, y, color=a.color, lw=0.8, alpha=0.45, gid=f"diverged:{a.key}:{k}")
            if len(x) and y[-1] <= top:
                _x_at(ax, a, k, x[-1], y[-1])
            elif len(x) or rows:
                off_scale.setdefault(a.key, []).append((k, x[-1], y[-1]) if len(x) else (k, rows[-1][0], math.nan))
    _off_scale_notes(ax, [a for a in arms if a.key in off_scale], off_scale)
    log_ticks(ax)


def _off_scale_notes(ax, arms: list[_Arm], off_scale: dict):
    """The x of the diverged runs whose loss is above the axis or never finite, at its top edge, with a note."""
    for i, a in enumerate(arms):
        y = 0.97 - 0.08 * i
        ends = off_scale[a.key]
        for k, step, _ in ends:
            _x_at(ax, a, k, step, None, edge=y)
        above = [loss for _, _, loss in ends if math.isfinite(loss)]
        parts = [f"{len(above)} above the axis (up to {max(above):.2g})"] if above else []
        if len(above) < len(ends):
            parts.append(f"{len(ends) - len(above)} never finite")
        ax.annotate("diverged loss: " + ", ".join(parts), (max(s for _, s, _ in ends), y),
                    xycoords=ax.get_xaxis_transform(), xytext=(6, 0), textcoords="offset points", color=a.color,
                    va="center", fontsize="small")


ZOOM_FROM = 0.5  # the accuracy axis zooms in when every mean curve stays above this after the first tenth


def _accuracy_limits(means: list, target) -> tuple[float, float] | None:
    """Accuracy axis limits zoomed on the informative range when the curves saturate (e.g. 0.95-0.99 on full MNIST):
    from just below the lowest mean after the first tenth of the steps (and the target) to just above the highest.
    None (the whole 0..1) while some mean is still below ZOOM_FROM then."""
    late = [m[x >= 0.1 * x.max()] for x, m in means if len(x)]
    late = [v for v in late if len(v)]
    if not late:
        return None
    lo = min(min(v.min() for v in late), target if target is not None else 1.0)
    hi = max(max(m.max() for _, m in means if len(m)), target if target is not None else 0.0)
    if not lo >= ZOOM_FROM:
        return None
    pad = 0.15 * max(hi - lo, 0.01)
    return lo - pad, min(1.0 + pad / 3, hi + pad)


def _accuracy_panel(ax, arms: list[_Arm], target, target_label):
    """Test accuracy: means with their bands (clipped to 0..1), diverged runs thin and ending in x; zoomed when the
    curves saturate (what lies below then, the first steps and diverged runs, leaves through the bottom edge)."""
    means = {a.key: mean_band(a.ok, "test_acc") for a in arms if a.ok}
    zoom = _accuracy_limits([(x, m) for x, m, _, _ in means.values()], target)
    for a in arms:
        if a.key in means:
            x, m, lo, hi = means[a.key]
            ax.plot(x, m, color=a.color, label=a.label, lw=1.8, gid=f"mean:{a.key}")
            ax.fill_between(x, np.clip(lo, 0, 1), np.clip(hi, 0, 1), color=a.color, alpha=0.2, lw=0)
        for k, (cols, rows) in enumerate(a.div):
            x, y = _finite_series(cols, rows, "test_acc")
            if not len(x):
                continue
            ax.plot(x, y, color=a.color, lw=0.8, alpha=0.45, gid=f"diverged:{a.key}:{k}")
            off = zoom is not None and not zoom[0] <= y[-1] <= zoom[1]
            _x_at(ax, a, k, x[-1], y[-1], edge=(0.03 if y[-1] < zoom[0] else 0.97) if off else None)
    handle = None
    if target is not None:
        handle = ax.axhline(target, color="0.6", ls=":", lw=1, label=f"target {target:g}{target_label}")
    if zoom is not None:
        ax.set_ylim(*zoom)
    ax.set(xlabel="training step", title="Test accuracy",
           ylabel="test accuracy (eval mode)" + ("\naxis zoomed: the first steps lie below" if zoom else ""))
    ax.grid(alpha=0.3)
    return handle


def _reached_panel(ax, arms: list[_Arm], target, split):
    """The fraction of all runs (diverged ones included) that have reached ``target`` by each step; the counts are
    in the figure's legend (inside this panel any corner may hide a step of some arm)."""
    last = max((r[0] for a in arms for _, rows in a.runs for r in rows), default=0.0)
    # arms drawn widest first so that identical step functions stay visible on top of each other
    for i, a in enumerate(arms):
        hit = sorted(s for s in a.reached if s is not None)
        xs = [0.0] + [s for s in dict.fromkeys(hit) if 0 < s < last] + [last]
        ys = [sum(s <= x for s in hit) / len(a.runs) for x in xs]
        ax.step(xs, ys, where="post", color=a.color, lw=1.5 + 0.9 * (len(arms) - 1 - i), alpha=0.85,
                gid=f"reached:{a.key}")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlim(left=0)
    ax.set(xlabel="training step", ylabel=f"fraction of seeds at target accuracy ({split} split)",
           title=f"Reached the target ({split} accuracy >= {target:g})\nruns that never reach it are censored at the "
                 "budget")
    ax.grid(alpha=0.3)


def learning_curves(curves_by_arm: dict, path=None, title="", target=None, diverged=None, target_column="test_acc"):
    """Training loss (running minibatch mean, log scale) and test accuracy against steps, per arm: mean over the
    runs that did not diverge with a 95% t-band; each diverged run a thin line ending in an x at its last finite
    value (excluded from the mean, counted in the legend). With ``target``, a third panel: the fraction of all runs
    (diverged ones included) whose ``target_column`` has reached ``target`` by each step.

    ``diverged`` = {arm: [bool per run in curves_by_arm[arm]]}; None (or a missing arm) falls back to
    `run_diverged`. Returns the Figure (also written to ``path`` if given)."""
    arms = _split_arms(curves_by_arm, diverged, target, target_column)
    width = 13.0 if target is not None else 10.0
    fig = Figure(figsize=(width, 4.8), layout="constrained")
    split = TARGET_SPLITS.get(target_column, target_column)
    with styled(width):
        axes = fig.subplots(1, 3 if target is not None else 2)
        _loss_panel(axes[0], arms)
        where = "" if target_column == "test_acc" else f" ({split} split)"
        target_line = _accuracy_panel(axes[1], arms, target, where)
        if target is not None:
            _reached_panel(axes[2], arms, target, split)
        # one legend for every panel, below them, so that it never covers a curve, a step or a diverged run's x
        handles = [_arm_handle(axes[1], a) for a in arms] + ([target_line] if target_line else [])
        if handles:
            fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4 if target is None else 2))
        fig.suptitle(wrap(f"{title}\nlearning curves: mean over seeds, band = 95% t-interval; diverged runs: thin "
                          "lines ending in x, excluded from the mean", width))
    return finish(fig, path)


def _arm_handle(ax, a: _Arm):
    """The arm's mean line, or (every run diverged: no mean) a proxy that still names it in the legend."""
    return next((line for line in ax.get_lines() if line.get_gid() == f"mean:{a.key}"), None) or Line2D(
        [], [], color=a.color, lw=0.8, alpha=0.6, marker="x", ms=6, label=a.label)


# -- learning-rate range test -----------------------------------------------------------------------------------------
# -- generalization gap -----------------------------------------------------------------------------------------------
def gap_curves(curves_by_arm: dict, path=None, title="", diverged=None):
    """Generalization gap against steps (both in eval mode): train accuracy - test accuracy, test loss - train
    loss; mean with a 95% band over the runs that did not diverge (``diverged`` as for `learning_curves`; the
    legend counts the others)."""
    width = 10.0
    fig = Figure(figsize=(width, 4.6), layout="constrained")
    with styled(width):
        ax_acc, ax_loss = fig.subplots(1, 2)
        for a in _split_arms(curves_by_arm, diverged, None, None):
            derived = [_gaps(cols, rows) for cols, rows in a.ok]
            for ax, column in ((ax_acc, "acc_gap"), (ax_loss, "loss_gap")):
                x, m, lo, hi = mean_band(derived, column)
                ax.plot(x, m, color=a.color, lw=1.8, label=a.label)
                ax.fill_between(x, lo, hi, color=a.color, alpha=0.2, lw=0)
        ax_acc.set(xlabel="training step", ylabel="train accuracy - test accuracy", title="Accuracy gap")
        ax_loss.set(xlabel="training step", ylabel="test loss - train loss (nats)", title="Loss gap")
        for ax in (ax_acc, ax_loss):
            ax.axhline(0, color="0.6", lw=0.8)
            ax.grid(alpha=0.3)
        handles, labels = ax_acc.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 3))
        fig.suptitle(wrap(f"{title}\ngeneralization gap, eval mode on both splits (> 0: training split better): mean "
                          "over the runs that did not diverge, 95% t-band", width))
    return finish(fig, path)


def _gaps(columns, rows):
    """A run's gaps as (columns, rows): train - test accuracy, test - train loss, per evaluation."""
    c = {name: i for i, name in enumerate(columns)}
    return ["step", "acc_gap", "loss_gap"], [[r[0], r[c["train_eval_acc"]] - r[c["test_acc"]],
                                              r[c["test_loss"]] - r[c["train_eval_loss"]]] for r in rows]
