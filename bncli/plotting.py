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


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _short(key: str) -> str:
    """optimizer.name -> optimizer, model.depth -> depth."""
    section, _, last = key.rpartition(".")
    return section if last == "name" and section else last


def range_figure(range_rows: list[dict], usable: list[dict], keys: list[str], range_key: str, path, title=""):
    """Final test accuracy (mean, 95% CI bars) and final training loss against the swept value, one column per
    combination of the other swept keys; diverged runs marked with x and counted; the usable range (within the
    first tolerance of each arm's best) shaded per arm as a strip along the top."""
    others = [k for k in keys if k != range_key]
    groups = list(dict.fromkeys(tuple(str(r[k]) for k in others) for r in range_rows)) or [()]  # sweep order
    arms = list(dict.fromkeys(r["arm"] for r in range_rows))
    xs_all = [_num(r[range_key]) for r in range_rows]
    log_x = all(x > 0 for x in xs_all) and max(xs_all) / min(xs_all) >= 20
    fig = Figure(figsize=(3.6 * len(groups) + 1.2, 6.2), layout="constrained")
    axes = fig.subplots(2, len(groups), squeeze=False, sharex="col")
    tol_key = next((k for k in (usable[0] if usable else {}) if k.startswith("lo_")), None)
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
            if u and tol_key:
                x0, x1 = _num(u[tol_key]), _num(u["hi_" + tol_key[3:]])
                pad = (10 ** (1 / 12) if log_x else 1.0)
                lo_x, hi_x = (x0 / pad, x1 * pad) if log_x else (x0 - 0.5, x1 + 0.5)
                ax_acc.axvspan(lo_x, hi_x, ymin=0.93 - 0.05 * a, ymax=0.97 - 0.05 * a, color=color, alpha=0.5, lw=0)
        if log_x:
            ax_acc.set_xscale("log")
        ax_loss.set_yscale("log")
        name = ", ".join(f"{_short(k)}={v}" for k, v in zip(others, group))
        ax_acc.set_title(name or "final test accuracy", fontsize=10)
        ax_acc.set_ylim(0, 1.05)
        ax_acc.set_ylabel("final test accuracy (mean, 95% CI)" if j == 0 else "")
        ax_loss.set_ylabel("final training loss (mean, log)" if j == 0 else "")
        ax_loss.set_xlabel(range_key)
        for ax in (ax_acc, ax_loss):
            ax.grid(alpha=0.3, which="both")
    tol = f"{tol_key[3:-2]} points" if tol_key else ""
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8)
    fig.suptitle(f"{title}\nstrips at the top: usable range (mean accuracy within {tol} of the arm's best); "
                 "x: runs that diverged", fontsize=9)
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
