"""Figures, drawn headless (matplotlib's Agg canvas, no pyplot state) and written atomically.

Every drawing function builds and returns a `matplotlib.figure.Figure` (a notebook shows it as it is); given a path
it also writes it there (`save`). No-BN and each BN placement keep the same colour in every figure. The report shows
figures at most about 900 px wide: text grows with a figure's width (`styled`) so that it stays readable there.
"""

from __future__ import annotations

import io
import math
import textwrap
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from . import atomic
from .stats import t975

ARM_COLORS = {"none": "#444444", "before": "#1f77b4", "after": "#d95f02"}
LOG_MAX = 1e200  # the largest value a log axis shows: its tick locator steps up to two strides past the
# limits in powers of ten computed in floats, which must stay below 1e308
ARM_LABELS = {"none": "no BN", "before": "BN before activation", "after": "BN after activation"}
DPI = 130  # of the saved raster figures
SHOWN_PX = 900  # the width the report's page shrinks a wide figure to


# No date and no random ids in the files: the same numbers give the same bytes in every format.
_NO_DATE = {"png": None, "svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None}}


def save(fig: Figure, path, fmt=None):
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fmt = fmt or str(path).rsplit(".", 1)[-1]
    with matplotlib.rc_context({"svg.hashsalt": "bncli"}):
        fig.savefig(buf, format=fmt, dpi=DPI, bbox_inches="tight", metadata=_NO_DATE.get(fmt))
    atomic.write_bytes(path, buf.getvalue())


# -- style shared by every figure -------------------------------------------------------------------------------------
def text_size(width_in: float) -> float:
    """Font size (points) of a figure ``width_in`` inches wide: about 9 px or more once shrunk to SHOWN_PX."""
    return max(8.5, 0.75 * width_in)


@contextmanager
def styled(width_in: float):
    """Text sizes for the artists made inside (titles, labels, legends read them when they are made)."""
    s = text_size(width_in)
    with matplotlib.rc_context({"font.size": s, "axes.titlesize": s + 1, "axes.labelsize": s, "legend.fontsize": s,
                                "figure.titlesize": s + 1, "xtick.labelsize": s, "ytick.labelsize": s}):
        yield


def finish(fig: Figure, path=None) -> Figure:
    """The figure, written to ``path`` if one is given. Tick labels are sized here: matplotlib makes ticks lazily,
    when the figure is drawn, after `styled` has ended."""
    s = text_size(fig.get_figwidth())
    for ax in fig.axes:
        ax.tick_params(which="both", labelsize=s)
    if path is not None:
        save(fig, path)
    return fig


def wrap(text: str, width_in: float) -> str:
    """Each line of ``text`` broken to fit a figure ``width_in`` wide (titles must not widen the figure)."""
    chars = max(40, int(width_in * 72 / (0.53 * (text_size(width_in) + 1))))
    return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


def clamp_log_axis(ax, which="y"):
    """Keep a log axis (after autoscaling) within 1/LOG_MAX..LOG_MAX (see LOG_MAX)."""
    lo, hi = ax.get_ylim() if which == "y" else ax.get_xlim()
    if 1 / LOG_MAX <= lo and hi <= LOG_MAX:
        return  # the usual case: autoscaling stays in charge
    hi = min(hi, LOG_MAX)
    lo = min(max(lo, 1 / LOG_MAX), hi / 10)
    (ax.set_ylim if which == "y" else ax.set_xlim)(lo, hi)


def log_ticks(ax, which="y"):
    """Readable labels on a log axis whose limits are set: plain numbers (0.2, 0.5, 1, 2) over up to two decades,
    powers of ten beyond; minor ticks unlabelled (matplotlib labels them on short axes and they run together)."""
    axis = ax.yaxis if which == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if which == "y" else ax.get_xlim()
    decades = math.log10(hi / lo) if 0 < lo < hi else math.inf
    subs = next((subs for most, subs in _LOG_SUBS if decades < most), None)
    if subs:
        axis.set_major_locator(ticker.LogLocator(subs=subs))
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


# (fewer decades than, labelled multiples of each power of ten): about four to seven labels on any short log axis
_LOG_SUBS = [(0.7, (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)), (1.3, (1.0, 2.0, 3.0, 5.0)), (2.3, (1.0, 2.0, 5.0)),
             (3.5, (1.0, 3.0))]


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


# -- sweeps: the usable range ------------------------------------------------------------------------------------------
def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def short_key(key: str) -> str:
    """optimizer.name -> optimizer, model.depth -> depth."""
    section, _, last = key.rpartition(".")
    return section if last == "name" and section else last


KEY_NAMES = {"optimizer.lr": "learning rate", "model.init_std": "initial weight std", "model.depth": "depth",
             "train.batch_size": "batch size", "model.bn_decay": "BN running-average decay"}
KEY_UNITS = {"model.depth": " (hidden layers)", "train.batch_size": " (examples)"}


def key_name(key: str) -> str:
    return KEY_NAMES.get(key, key)


def range_figure(range_rows: list[dict], usable: list[dict], keys: list[str], range_key: str, path=None, title=""):
    """Final test accuracy (mean, 95% CI bars, over the runs that did not diverge) and final training loss against
    the swept value, one column per combination of the other swept keys; diverged runs marked with x and counted;
    above each column the usable range per arm (``usable``: per-seed ranges above the floor, summarized by
    ``sweep.usable_ranges``), one lane per arm, or 'never learns'."""
    others = [k for k in keys if k != range_key]
    groups = list(dict.fromkeys(tuple(str(r[k]) for k in others) for r in range_rows)) or [()]  # sweep order
    arms = list(dict.fromkeys(r["arm"] for r in range_rows))
    xs_all = [_num(r[range_key]) for r in range_rows]
    log_x = all(x > 0 for x in xs_all) and max(xs_all) / min(xs_all) >= 20
    floor = next((_num(u["floor"]) for u in usable if "floor" in u), None)
    lanes = any(_num(r["diverged"]) > 0 for r in range_rows)
    width = max(8.0, 3.4 * len(groups) + 1.2)
    fig = Figure(figsize=(width, 7.4 + 0.6 * max(0, len(arms) - 2)), layout="constrained")
    with styled(width):
        axes = fig.subplots(3, len(groups), squeeze=False, sharex="col",
                            gridspec_kw={"height_ratios": [0.3 + 0.28 * len(arms), 3, 2]})
        for j, group in enumerate(groups):
            in_group = [r for r in range_rows if tuple(str(r[k]) for k in others) == group]
            _range_column(axes[:, j], arms, in_group, [u for u in usable if tuple(str(u[k]) for k in others) == group],
                          range_key, log_x, floor, first=j == 0, lanes=lanes)
            name = ", ".join(f"{short_key(k)}={v}" for k, v in zip(others, group))
            axes[0, j].set_title(name or "")
        _range_legend(fig, axes, [ARM_LABELS.get(a, a) for a in arms], floor)
        what = key_name(range_key)
        usable_text = (f"\nUsable range (top lanes): median over seeds of the contiguous {what} values around the "
                       f"seed's best whose run did not diverge and reaches tail accuracy >= {floor:g} (dotted line)"
                       if floor is not None else "")
        fig.suptitle(wrap(f"{title}\nFinal test accuracy and training loss vs {what}, per arm: mean over the runs that "
                          f"did not diverge, bars = 95% t-interval; x below 0: diverged runs (count){usable_text}",
                          width))
    return finish(fig, path)


DIV_LANE = 0.11  # share of the accuracy panel per arm below 0 in the range figure, where its diverged runs are counted


def _lane_height(n_arms: int) -> float:
    """Accuracy units per diverged-runs lane, for lanes taking DIV_LANE of the panel each (the panel ends at 1.02)."""
    return 1.02 * DIV_LANE / (1 - DIV_LANE * n_arms)


def _range_column(axes, arms, rows, usable, range_key, log_x, floor, first: bool, lanes: bool):
    """One column of the range figure: usable-range lanes, accuracy and loss against the swept value; ``lanes``:
    room below 0 for the counts of diverged runs (in every column alike)."""
    ax_strip, ax_acc, ax_loss = axes
    notes = []  # (lane, x0, x1, text, colour) of the notes beside the usable ranges, placed once the x limits are known
    for a, arm in enumerate(arms):
        mine = sorted((r for r in rows if r["arm"] == arm), key=lambda r: _num(r[range_key]))
        _range_arm(ax_acc, ax_loss, arm, mine, range_key, -_lane_height(len(arms)) * (a + 0.3))
        u = next((u for u in usable if u["arm"] == arm), None)
        notes.append(_usable_lane(ax_strip, len(arms) - 1 - a, u, ARM_COLORS.get(arm), log_x))
    if floor is not None:
        ax_acc.axhline(floor, color="0.5", ls=":", lw=1)
    if lanes:
        ax_acc.axhline(0, color="0.6", lw=0.8)
    ax_acc.set_ylim(-_lane_height(len(arms)) * len(arms) if lanes else 0, 1.02)
    ax_acc.set_yticks(np.linspace(0, 1, 6))
    if log_x:
        ax_acc.set_xscale("log")
        clamp_log_axis(ax_acc, "x")
    ax_loss.set_yscale("log")
    _loss_range(ax_loss)
    _range_xticks(ax_loss, rows, range_key, log_x)
    _lane_notes(ax_strip, notes)
    ax_strip.set_ylim(-0.6, len(arms) - 0.4)
    ax_strip.set_yticks([])
    ax_strip.set_ylabel("usable\nrange" if first else "", rotation=0, ha="right", va="center")
    ax_acc.set_ylabel("final test accuracy\n(mean, 95% CI)" if first else "")
    ax_loss.set_ylabel("final training loss,\nnats (mean)" if first else "")
    ax_loss.set_xlabel(key_name(range_key) + KEY_UNITS.get(range_key, "") + (", log scale" if log_x else ""))
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
    ax_strip.grid(alpha=0.3, axis="x")


def _range_arm(ax_acc, ax_loss, arm, rows, range_key, lane_y):
    """One arm's accuracy (with its interval, drawn within 0..1: few seeds give t-intervals past both ends) and
    loss against the swept value; its diverged runs as x at ``lane_y`` (below 0, where no accuracy lies), each with
    its count under it."""
    color, name = ARM_COLORS.get(arm), ARM_LABELS.get(arm, arm)
    x = np.array([_num(r[range_key]) for r in rows])
    m, lo, hi, loss = (np.array([_num(r[c]) for r in rows]) for c in ("acc_mean", "acc_ci_low", "acc_ci_high",
                                                                      "train_loss_mean"))
    err = np.vstack([np.nan_to_num(m - np.clip(lo, 0, 1)), np.nan_to_num(np.clip(hi, 0, 1) - m)]).clip(0)
    ax_acc.errorbar(x, m, yerr=err, color=color, marker="o", ms=3.5, lw=1.5, capsize=2, label=name)
    ax_loss.plot(x, np.where(np.isfinite(loss) & (loss > 0), loss, np.nan), color=color, marker="o", ms=3.5, lw=1.5,
                 label=name)
    div = np.array([int(_num(r["diverged"]) or 0) for r in rows])
    if div.any():
        ax_acc.plot(x[div > 0], np.full((div > 0).sum(), lane_y), ls="none", marker="x", ms=7, color=color,
                    label=f"{name}: diverged runs (count below the x)")
        for xv, d in zip(x[div > 0], div[div > 0]):
            ax_acc.annotate(str(d), (xv, lane_y), textcoords="offset points", xytext=(0, -4), ha="center", va="top",
                            color=color, fontsize="small")


def _usable_lane(ax, lane, u, color, log_x):
    """Draw one arm's usable range in its lane; returns (lane, x0, x1, note, colour) for a note beside it, or None."""
    if u and int(_num(u.get("n_learn")) or 0) > 0 and u.get("lo") not in (None, ""):
        x0, x1 = _num(u["lo"]), _num(u["hi"])
        pad = 10 ** (1 / 12) if log_x else 1.0
        lo_x, hi_x = (x0 / pad, x1 * pad) if log_x else (x0 - 0.5, x1 + 0.5)
        ax.broken_barh([(lo_x, hi_x - lo_x)], (lane - 0.35, 0.7), color=color, alpha=0.6, lw=0)
        n_learn, n_seeds = int(_num(u["n_learn"])), int(_num(u["n_seeds"]))
        return (lane, lo_x, hi_x, f"learns in {n_learn}/{n_seeds}", color) if n_learn < n_seeds else None
    if u:
        ax.text(0.5, lane, "never learns (no usable range)", transform=ax.get_yaxis_transform(), ha="center",
                va="center", color=color, fontsize="small")
    return None


def _lane_notes(ax, notes):
    """Each 'learns in k/n' beside its range, on the side with more room (the x limits are final here)."""
    ax.get_xlim()  # brings the autoscaled limits up to date before transData is used
    to_axes = ax.transAxes.inverted()
    for lane, x0, x1, text, color in filter(None, notes):
        f0 = to_axes.transform(ax.transData.transform((x0, lane)))[0]
        f1 = to_axes.transform(ax.transData.transform((x1, lane)))[0]
        right = 1 - f1 >= f0
        ax.text(f1 + 0.01 if right else f0 - 0.01, lane, text, transform=ax.get_yaxis_transform(),
                ha="left" if right else "right", va="center", color=color, fontsize="small")


def _loss_range(ax):
    """A log loss axis over the finite losses drawn, at most 30 x their median (one huge mean must not stretch it
    over ten decades); a point above it is drawn as a triangle on the top edge."""
    ys = np.concatenate([line.get_ydata() for line in ax.get_lines()] or [np.array([])]).astype(float)
    ys = ys[np.isfinite(ys) & (ys > 0)]
    if not ys.size:
        clamp_log_axis(ax)
        return
    top = min(ys.max() * 1.25, np.median(ys) * 30)
    ax.set_ylim(max(ys.min() / 1.25, 1 / LOG_MAX), min(top, LOG_MAX))
    for line in list(ax.get_lines()):
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        up = np.isfinite(y) & (y > top)
        if up.any():
            ax.plot(x[up], np.full(up.sum(), 1.0), ls="none", marker="^", ms=7, color=line.get_color(),
                    transform=ax.get_xaxis_transform(), clip_on=False, label="mean loss above the axis")
    log_ticks(ax)


def _range_xticks(ax, rows, range_key, log_x):
    """An x axis with few swept values (batch sizes 2 ... 256, depths 2 ... 20) is labelled at those values."""
    values = sorted({_num(r[range_key]) for r in rows})
    if len(values) <= 8:
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
    elif log_x:
        log_ticks(ax, "x")


def _range_legend(fig, axes, names: list[str], floor):
    """One legend below the columns with every entry any column draws (an arm may diverge in one column only), in
    the arms' order: their lines, then their diverged runs."""
    entries = {}
    for ax in axes[1:].flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, h)
    rank = {label: (0 if label == name else 1, i) for label in entries for i, name in enumerate(names)
            if label.startswith(name)}
    order = sorted(entries, key=lambda label: rank.get(label, (2, 0)))
    handles = [entries[k] for k in order]
    if floor is not None:
        handles.append(Line2D([], [], color="0.5", ls=":", lw=1))
        order.append(f"floor: tail accuracy {floor:g}")
    handles.append(Patch(color="0.5", alpha=0.6, lw=0))
    order.append("usable range (lane per arm, in its colour)")
    fig.legend(handles, order, loc="outside lower center", ncol=min(len(order), 3))


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
