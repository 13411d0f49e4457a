"""Figures, drawn headless (matplotlib's Agg canvas, no pyplot state) and written atomically.

No-BN and each BN placement keep the same colour in every figure.
"""

from __future__ import annotations

import io
import math

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from . import atomic
from .stats import t975

ARM_COLORS = {"none": "#444444", "before": "#1f77b4", "after": "#d95f02"}
LOG_MAX = 1e200  # the largest value a log axis shows: its tick locator steps up to two strides past the
# limits in powers of ten computed in floats, which must stay below 1e308
ARM_LABELS = {"none": "no BN", "before": "BN before activation", "after": "BN after activation"}


# No date and no random ids in the files: the same numbers give the same bytes in every format.
_NO_DATE = {"png": None, "svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None}}


def save(fig: Figure, path, fmt=None):
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fmt = fmt or str(path).rsplit(".", 1)[-1]
    with matplotlib.rc_context({"svg.hashsalt": "bncli"}):
        fig.savefig(buf, format=fmt, dpi=130, bbox_inches="tight", metadata=_NO_DATE.get(fmt))
    atomic.write_bytes(path, buf.getvalue())


def clamp_log_axis(ax, which="y"):
    """Keep a log axis (after autoscaling) within 1/LOG_MAX..LOG_MAX (see LOG_MAX)."""
    lo, hi = ax.get_ylim() if which == "y" else ax.get_xlim()
    if 1 / LOG_MAX <= lo and hi <= LOG_MAX:
        return  # the usual case: autoscaling stays in charge
    hi = min(hi, LOG_MAX)
    lo = min(max(lo, 1 / LOG_MAX), hi / 10)
    (ax.set_ylim if which == "y" else ax.set_xlim)(lo, hi)


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


def learning_curves(curves_by_arm: dict, path, title="", target=None, diverged=None, target_column="test_acc"):
    """Training loss (running minibatch mean, log scale) and test accuracy against steps, per arm: mean over the
    runs that did not diverge with a 95% t-band; each diverged run a thin line ending in an x at its last finite
    value (excluded from the mean, counted in the legend). With ``target``, a third panel: the fraction of all runs
    (diverged ones included) whose ``target_column`` has reached ``target`` by each step.

    ``diverged`` = {arm: [bool per run in curves_by_arm[arm]]}; None (or a missing arm) falls back to
    `run_diverged`. Returns the Figure (also written to ``path``)."""
    panels = 3 if target is not None else 2
    fig = Figure(figsize=(15, 4.4) if panels == 3 else (11, 4.4), layout="constrained")
    axes = fig.subplots(1, panels)
    ax_loss, ax_acc = axes[0], axes[1]
    ax_reach = axes[2] if panels == 3 else None
    split = TARGET_SPLITS.get(target_column, target_column)
    handles = []  # legend entries of the loss and accuracy panels: one per arm, then the target line
    mean_loss, band_loss, div_loss = [], [], []  # y values of the loss panel, for its limits
    loss_ends = []  # (arm, k, step, loss) of each diverged run's last finite loss (nan: none), drawn once scaled
    last_step = max((r[0] for curves in curves_by_arm.values() for _, rows in curves for r in rows), default=0.0)
    reach_lines = []
    for arm, curves in curves_by_arm.items():
        if not curves:
            continue
        color = ARM_COLORS.get(arm, None)
        flags = (diverged or {}).get(arm)
        if flags is None:
            flags = [run_diverged(cols, rows) for cols, rows in curves]
        if len(flags) != len(curves):
            raise ValueError(f"diverged[{arm!r}] has {len(flags)} entries for {len(curves)} runs")
        ok_runs = [c for c, f in zip(curves, flags) if not f]
        div_runs = [c for c, f in zip(curves, flags) if f]
        name = ARM_LABELS.get(arm, arm)
        label = (f"{name} (n={len(curves)}; {len(div_runs)} diverged, not in the mean)" if div_runs
                 else f"{name} (n={len(curves)})")
        for ax, column in ((ax_loss, "train_loss"), (ax_acc, "test_acc")):
            handle = None
            if ok_runs:
                x, m, lo, hi = mean_band(ok_runs, column)
                if column == "train_loss":
                    keep = (x > 0) & (m > 0)
                    x, m, lo, hi = x[keep], m[keep], np.maximum(lo[keep], 1e-6), hi[keep]
                    mean_loss.append(m), band_loss.extend((lo, hi))
                handle, = ax.plot(x, m, color=color, label=label, lw=1.8, gid=f"mean:{arm}")
                ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
            for k, (cols, rows) in enumerate(div_runs):
                x, y = _finite_series(cols, rows, column, positive=column == "train_loss")
                if column == "train_loss":
                    x, y = x[x > 0], y[x > 0]  # step 0 has no training loss
                    div_loss.append(y)
                    if len(x) or rows:
                        loss_ends.append((arm, k, x[-1], y[-1]) if len(x) else (arm, k, rows[-1][0], math.nan))
                if not len(x):
                    continue
                ax.plot(x, y, color=color, lw=0.8, alpha=0.45, gid=f"diverged:{arm}:{k}")
                if column != "train_loss":
                    ax.plot(x[-1:], y[-1:], color=color, ls="none", marker="x", ms=7, mew=1.6, alpha=0.85,
                            gid=f"diverged-end:{arm}:{k}")
            if handle is None:  # every run diverged: no mean line, the legend still names the arm
                handle = Line2D([], [], color=color, lw=0.8, alpha=0.6, marker="x", ms=6, label=label)
            if ax is ax_loss:
                handles.append(handle)
        if ax_reach is not None:
            steps = [reached_step(cols, rows, target_column, target) for cols, rows in curves]
            hit = sorted(s for s in steps if s is not None)
            xs = [0.0] + [s for s in dict.fromkeys(hit) if 0 < s < last_step] + [last_step]
            ys = [sum(s <= x for s in hit) / len(curves) for x in xs]
            reach_lines.append((arm, xs, ys, f"{name}: reached {len(hit)}/{len(curves)}", color))

    top = math.inf
    means = np.concatenate(mean_loss) if mean_loss else np.array([])
    lines = np.concatenate([means, *div_loss])
    if lines.size:  # runs that all diverged early have no loss
        ax_loss.set_yscale("log")
        # Limits from the lines, not the bands: a wide band (few seeds, one odd run) is cut at the edges. A diverged
        # run's loss may grow by many decades before it stops being finite: with means to show, the axis ends two
        # decades above them and such a run leaves through the top (its x drawn at the edge).
        lo_y, hi_y = lines.min(), lines.max()
        if means.size:
            hi_y = min(hi_y, means.max() * 100)
        band = np.concatenate([lines[lines <= hi_y], *band_loss])
        bottom = max(min(band.min(), lo_y), lo_y / 4) / 1.2
        top = min(max(band.max(), hi_y), hi_y * 4) * 1.2
        # A loss near the float range (an exploding float64 run) would overflow the log axis' ticks: the axis stays
        # within 1e-200..1e200 and what lies beyond leaves through its edge.
        top = min(top, LOG_MAX)
        bottom = min(max(bottom, 1 / LOG_MAX), top / 10)
        ax_loss.set_ylim(bottom, top)
    off_scale = {}  # arm -> [(step, loss)] of the diverged runs whose x goes at the top edge
    for arm, k, step, loss in loss_ends:
        if math.isfinite(loss) and loss <= top:
            ax_loss.plot([step], [loss], color=ARM_COLORS.get(arm), ls="none", marker="x", ms=7, mew=1.6,
                         alpha=0.85, gid=f"diverged-end:{arm}:{k}")
        else:
            off_scale.setdefault(arm, []).append((k, step, loss))
    for i, (arm, ends) in enumerate(off_scale.items()):
        y = 0.97 - 0.08 * i
        for k, step, _ in ends:
            ax_loss.plot([step], [y], color=ARM_COLORS.get(arm), ls="none", marker="x", ms=7, mew=1.6, alpha=0.85,
                         transform=ax_loss.get_xaxis_transform(), clip_on=False, gid=f"diverged-end:{arm}:{k}")
        above = [loss for _, _, loss in ends if math.isfinite(loss)]
        parts = [f"{len(above)} above the axis (up to {max(above):.2g})"] if above else []
        if len(above) < len(ends):
            parts.append(f"{len(ends) - len(above)} never finite")
        ax_loss.annotate("diverged loss: " + ", ".join(parts), (max(s for _, s, _ in ends), y),
                         xycoords=ax_loss.get_xaxis_transform(), xytext=(6, 0), textcoords="offset points",
                         fontsize=7, color=ARM_COLORS.get(arm), va="center")
    ax_loss.set(xlabel="training step", ylabel="training loss (running minibatch mean, log)",
                title="Training loss")
    ax_acc.set(xlabel="training step", ylabel="test accuracy (eval mode)", title="Test accuracy")
    if target is not None:
        where = "" if target_column == "test_acc" else f" ({split} split)"
        handles.append(ax_acc.axhline(target, color="0.6", ls=":", lw=1, label=f"target {target:g}{where}"))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    # one legend for both curve panels, below them, so that it never covers a curve or a diverged run's x
    if handles:
        fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncol=min(len(handles), 4))
    if ax_reach is not None:
        # arms drawn widest first so that identical step functions stay visible on top of each other
        for i, (arm, xs, ys, lab, color) in enumerate(reach_lines):
            ax_reach.step(xs, ys, where="post", color=color, lw=1.5 + 0.9 * (len(reach_lines) - 1 - i), alpha=0.85,
                          label=lab, gid=f"reached:{arm}")
        ax_reach.set_ylim(-0.03, 1.03)
        ax_reach.set_xlim(left=0)
        ax_reach.set(xlabel="training step", ylabel=f"fraction of seeds at target accuracy ({split} split)",
                     title=f"Reached the target ({split} accuracy >= {target:g})\n"
                           "runs that never reach it are censored at the budget")
        ax_reach.title.set_fontsize(10)
        ax_reach.grid(alpha=0.3)
        ax_reach.legend(fontsize=8, loc="best")
    fig.suptitle(f"{title}\nmean over seeds, band = 95% t-interval; "
                 "diverged runs: thin lines ending in x, excluded from the mean", fontsize=10)
    save(fig, path)
    return fig


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
    clamp_log_axis(ax, "x")
    finite = [c[3] for cs in curves.values() for c in cs if math.isfinite(c[3])]
    if finite:
        lo, first = min(finite), max(cs[0][3] for cs in curves.values())
        ax.set_ylim(lo - 0.1 * (first - lo + 1e-3), first + 0.6 * (first - lo + 1e-3))
    ax.set(xlabel="learning rate (log scale)", ylabel="smoothed training loss (debiased EMA)", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    save(fig, path)


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def short_key(key: str) -> str:
    """optimizer.name -> optimizer, model.depth -> depth."""
    section, _, last = key.rpartition(".")
    return section if last == "name" and section else last


def range_figure(range_rows: list[dict], usable: list[dict], keys: list[str], range_key: str, path, title=""):
    """Final test accuracy (mean, 95% CI bars, over the runs that did not diverge) and final training loss against
    the swept value, one column per combination of the other swept keys; diverged runs marked with x and counted;
    the usable range (``usable``: per-seed ranges above the floor, summarized by ``sweep.usable_ranges``) shaded per
    arm as a strip along the top, or 'never learns'."""
    others = [k for k in keys if k != range_key]
    groups = list(dict.fromkeys(tuple(str(r[k]) for k in others) for r in range_rows)) or [()]  # sweep order
    arms = list(dict.fromkeys(r["arm"] for r in range_rows))
    xs_all = [_num(r[range_key]) for r in range_rows]
    log_x = all(x > 0 for x in xs_all) and max(xs_all) / min(xs_all) >= 20
    fig = Figure(figsize=(3.6 * len(groups) + 1.2, 6.2), layout="constrained")
    axes = fig.subplots(2, len(groups), squeeze=False, sharex="col")
    floor = next((_num(u["floor"]) for u in usable if "floor" in u), None)
    for j, group in enumerate(groups):
        ax_acc, ax_loss = axes[0, j], axes[1, j]
        for a, arm in enumerate(arms):
            color = ARM_COLORS.get(arm)
            rows = sorted((r for r in range_rows if r["arm"] == arm and tuple(str(r[k]) for k in others) == group),
                          key=lambda r: _num(r[range_key]))
            x = np.array([_num(r[range_key]) for r in rows])
            m = np.array([_num(r["acc_mean"]) for r in rows])
            lo = np.array([_num(r["acc_ci_low"]) for r in rows])
            hi = np.array([_num(r["acc_ci_high"]) for r in rows])
            err = np.vstack([np.nan_to_num(m - lo), np.nan_to_num(hi - m)])
            ax_acc.errorbar(x, m, yerr=err, color=color, marker="o", ms=3.5, lw=1.5, capsize=2,
                            label=ARM_LABELS.get(arm, arm))
            loss = np.array([_num(r["train_loss_mean"]) for r in rows])
            ax_loss.plot(x, np.where(np.isfinite(loss) & (loss > 0), loss, np.nan), color=color, marker="o", ms=3.5,
                         lw=1.5, label=ARM_LABELS.get(arm, arm))
            div = np.array([int(_num(r["diverged"]) or 0) for r in rows])
            if div.any():
                ax_acc.plot(x[div > 0], np.full((div > 0).sum(), 0.02 + 0.04 * a), ls="none", marker="x", ms=7,
                            color=color, label=f"{ARM_LABELS.get(arm, arm)}: diverged runs (count)")
                for xv, d in zip(x[div > 0], div[div > 0]):
                    ax_acc.annotate(str(d), (xv, 0.02 + 0.04 * a), textcoords="offset points", xytext=(4, 2),
                                    fontsize=7, color=color)
            u = next((u for u in usable if u["arm"] == arm and tuple(str(u[k]) for k in others) == group), None)
            strip = dict(ymin=0.93 - 0.05 * a, ymax=0.97 - 0.05 * a)
            if u and int(_num(u.get("n_learn")) or 0) > 0 and u.get("lo") not in (None, ""):
                x0, x1 = _num(u["lo"]), _num(u["hi"])
                pad = (10 ** (1 / 12) if log_x else 1.0)
                lo_x, hi_x = (x0 / pad, x1 * pad) if log_x else (x0 - 0.5, x1 + 0.5)
                ax_acc.axvspan(lo_x, hi_x, color=color, alpha=0.5, lw=0, **strip)
                n_learn, n_seeds = int(_num(u["n_learn"])), int(_num(u["n_seeds"]))
                if n_learn < n_seeds:
                    ax_acc.text(hi_x, (strip["ymin"] + strip["ymax"]) / 2 * 1.05, f" learns in {n_learn}/{n_seeds}",
                                fontsize=7, color=color, va="center")
            elif u:
                ax_acc.text(0.02, (strip["ymin"] + strip["ymax"]) / 2 * 1.05, f"{ARM_LABELS.get(arm, arm)}: never "
                            f"learns (no usable range)", transform=ax_acc.get_yaxis_transform(), fontsize=7,
                            color=color, va="center")
        if floor is not None:
            ax_acc.axhline(floor, color="0.5", ls=":", lw=1)
        if log_x:
            ax_acc.set_xscale("log")
        ax_loss.set_yscale("log")
        clamp_log_axis(ax_loss)
        if log_x:
            clamp_log_axis(ax_acc, "x")
            clamp_log_axis(ax_loss, "x")
        name = ", ".join(f"{short_key(k)}={v}" for k, v in zip(others, group))
        ax_acc.set_title(name or "final test accuracy", fontsize=10)
        ax_acc.set_ylim(0, 1.05)
        ax_acc.set_ylabel("final test accuracy (mean, 95% CI)" if j == 0 else "")
        ax_loss.set_ylabel("final training loss (mean, log)" if j == 0 else "")
        ax_loss.set_xlabel(range_key)
        for ax in (ax_acc, ax_loss):
            ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8)
    usable_text = (f"\nstrips at the top: usable range per arm, median over seeds of the contiguous values whose run "
                   f"did not diverge and reaches tail accuracy >= {floor:g} (dotted line)" if floor is not None else "")
    fig.suptitle(f"{title}\nmeans over the runs that did not diverge; x: runs that diverged (count){usable_text}",
                 fontsize=9)
    save(fig, path)


def gap_curves(curves_by_arm: dict, path, title=""):
    """Generalization gap against steps (both in eval mode): train accuracy - test accuracy, test loss - train
    loss; mean over seeds with a 95% band."""
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    ax_acc, ax_loss = fig.subplots(1, 2)
    for arm, curves in curves_by_arm.items():
        derived = []
        for cols, rows in curves:
            c = {name: i for i, name in enumerate(cols)}
            derived.append((["step", "acc_gap", "loss_gap"],
                            [[r[0], r[c["train_eval_acc"]] - r[c["test_acc"]], r[c["test_loss"]] - r[c["train_eval_loss"]]]
                             for r in rows]))
        for ax, column in ((ax_acc, "acc_gap"), (ax_loss, "loss_gap")):
            x, m, lo, hi = mean_band(derived, column)
            ax.plot(x, m, color=ARM_COLORS.get(arm), lw=1.8, label=f"{ARM_LABELS.get(arm, arm)} (n={len(curves)})")
            ax.fill_between(x, lo, hi, color=ARM_COLORS.get(arm), alpha=0.2, lw=0)
    ax_acc.set(xlabel="training step", ylabel="train accuracy - test accuracy", title="Accuracy gap")
    ax_loss.set(xlabel="training step", ylabel="test loss - train loss", title="Loss gap")
    for ax in (ax_acc, ax_loss):
        ax.axhline(0, color="0.6", lw=0.8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}: generalization gap (eval mode on both splits)\nmean over seeds, band = 95% t-interval",
                 fontsize=10)
    save(fig, path)
