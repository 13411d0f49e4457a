"""The sweep figure: accuracy and loss against the swept value, diverged runs counted, usable ranges per arm."""

from __future__ import annotations

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .style import (ARM_COLORS, ARM_LABELS, KEY_UNITS, LOG_MAX, as_float, clamp_log_axis, finish, key_name,
                    log_ticks, short_key, styled, wrap)

# What a range figure draws in bounded time (`bncli plot` and the report's figure specs refuse more). Published: at
# most 128 rows, 4 columns; a column of panels takes ~0.4 s to draw, a point with diverged runs ~3 ms; at these caps
# a figure draws in ~10 s.
MAX_ARMS = 8  # arms of one figure (bncli has 4 BN placements; the range figure has room for 8 lanes)
MAX_RANGE_ROWS = 2_000  # rows of range.csv, and of ranges.csv
MAX_RANGE_COLUMNS = 16  # combinations of the swept keys other than the range key


def range_size_error(range_rows: list[dict], usable: list[dict], keys: list[str], range_key: str) -> str | None:
    """What makes the range figure of these rows too large to draw in bounded time (more rows, arms or columns of
    panels than the caps), or None. The columns are counted as `plotting.range_figure` groups the rows."""
    for name, rows in (("rows", range_rows), ("usable ranges", usable)):
        if len(rows) > MAX_RANGE_ROWS:
            return f"{len(rows):,} {name}, more than {MAX_RANGE_ROWS:,}"
    arms = {str(r.get("arm")) for r in range_rows}
    if len(arms) > MAX_ARMS:
        return f"{len(arms):,} arms, more than {MAX_ARMS}"
    columns = range_columns(range_rows, keys, range_key)
    if columns > MAX_RANGE_COLUMNS:
        others = ", ".join(k for k in keys if k != range_key)
        return f"{columns:,} combinations of {others}, more than the {MAX_RANGE_COLUMNS} columns a range figure draws"
    return None


def range_columns(range_rows: list[dict], keys: list[str], range_key: str) -> int:
    """The columns of panels of the range figure: as `plotting.range_figure` groups the rows, by the values of the
    swept keys other than the range key."""
    others = [k for k in keys if k != range_key]
    return max(1, len({tuple(str(r.get(k)) for k in others) for r in range_rows}))




def range_figure(range_rows: list[dict], usable: list[dict], keys: list[str], range_key: str, path=None, title=""):
    """Final test accuracy (mean, 95% CI bars, over the runs that did not diverge) and final training loss against
    the swept value, one column per combination of the other swept keys; diverged runs marked with x and counted;
    above each column the usable range per arm (``usable``: per-seed ranges above the floor, summarized by
    ``sweep.usable_ranges``), one lane per arm, or 'never learns'."""
    others = [k for k in keys if k != range_key]
    groups = list(dict.fromkeys(tuple(str(r[k]) for k in others) for r in range_rows)) or [()]  # sweep order
    arms = list(dict.fromkeys(r["arm"] for r in range_rows))
    xs_all = [as_float(r[range_key]) for r in range_rows]
    log_x = all(x > 0 for x in xs_all) and max(xs_all) / min(xs_all) >= 20
    floor = next((as_float(u["floor"]) for u in usable if "floor" in u), None)
    lanes = any(as_float(r["diverged"]) > 0 for r in range_rows)
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
        mine = sorted((r for r in rows if r["arm"] == arm), key=lambda r: as_float(r[range_key]))
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
    x = np.array([as_float(r[range_key]) for r in rows])
    m, lo, hi, loss = (np.array([as_float(r[c]) for r in rows]) for c in ("acc_mean", "acc_ci_low", "acc_ci_high",
                                                                      "train_loss_mean"))
    err = np.vstack([np.nan_to_num(m - np.clip(lo, 0, 1)), np.nan_to_num(np.clip(hi, 0, 1) - m)]).clip(0)
    ax_acc.errorbar(x, m, yerr=err, color=color, marker="o", ms=3.5, lw=1.5, capsize=2, label=name)
    ax_loss.plot(x, np.where(np.isfinite(loss) & (loss > 0), loss, np.nan), color=color, marker="o", ms=3.5, lw=1.5,
                 label=name)
    div = np.array([int(as_float(r["diverged"]) or 0) for r in rows])
    if div.any():
        ax_acc.plot(x[div > 0], np.full((div > 0).sum(), lane_y), ls="none", marker="x", ms=7, color=color,
                    label=f"{name}: diverged runs (count below the x)")
        for xv, d in zip(x[div > 0], div[div > 0]):
            ax_acc.annotate(str(d), (xv, lane_y), textcoords="offset points", xytext=(0, -4), ha="center", va="top",
                            color=color, fontsize="small")


def _usable_lane(ax, lane, u, color, log_x):
    """Draw one arm's usable range in its lane; returns (lane, x0, x1, note, colour) for a note beside it, or None."""
    if u and int(as_float(u.get("n_learn")) or 0) > 0 and u.get("lo") not in (None, ""):
        x0, x1 = as_float(u["lo"]), as_float(u["hi"])
        pad = 10 ** (1 / 12) if log_x else 1.0
        lo_x, hi_x = (x0 / pad, x1 * pad) if log_x else (x0 - 0.5, x1 + 0.5)
        ax.broken_barh([(lo_x, hi_x - lo_x)], (lane - 0.35, 0.7), color=color, alpha=0.6, lw=0)
        n_learn, n_seeds = int(as_float(u["n_learn"])), int(as_float(u["n_seeds"]))
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
    values = sorted({as_float(r[range_key]) for r in rows})
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


