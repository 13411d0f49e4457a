"""bncli.plotting: every drawing function builds and returns a matplotlib Figure (pyplot's state untouched) and writes
it only when given a path, the same bytes every time; and what the figures show a student at a glance: log axes over
the informative range with readable labels, accuracy within 0..1 (zoomed once the curves saturate), divergence
marked, no suggestion on a flat range-test curve, usable ranges in their own lanes. Checked on the artists of the
returned Figure, never on pixels."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib import ticker
from matplotlib.figure import Figure

from bncli import plotting
from bncli.experiment import draw_learning_curves
from bncli.lrfind import MIN_DESCENT, clear_descent, flat_arms
from bncli.plotting import style

NAN, INF = math.nan, math.inf
COLS = ["step", "train_loss", "test_acc", "train_eval_acc", "train_eval_loss", "test_loss"]


def run(losses, accs, every=10.0):
    """Evaluations every ``every`` steps from step 0 (whose training loss is nan, as in metrics.csv)."""
    return COLS, [[every * i, loss, acc, acc + 0.01, loss, loss + 0.1] for i, (loss, acc) in
                  enumerate(zip([NAN, *losses], accs))]


def saturating(shift):
    """A full-MNIST-like run: 0.1 at step 0, then 0.95 ... 0.99 (100 steps per evaluation)."""
    accs = [0.1] + list(np.linspace(0.95, 0.985, 19) + shift)
    return run(list(np.geomspace(0.5, 0.02, 19) * (1 + shift)), accs, every=100.0)


CURVES = {"none": [run([2.3, 2.0, 1.0, 0.5], [0.1, 0.3, 0.5, 0.7, 0.8]),
                   run([2.3, 2.2, 2.1, 2.0], [0.1, 0.1, 0.2, 0.3, 0.9])],
          "before": [run([1.0, 0.5, 0.2, 0.1], [0.1, 0.8, 0.9, 0.95, 0.99]),
                     run([1.2, 0.6, 0.3, 0.05], [0.1, 0.85, 0.95, 0.97, 1.0]),
                     run([1.0, 3.0, INF], [0.1, 0.6, 0.5, 0.1])]}
DIVERGED = {"none": [False, False], "before": [False, False, True]}
LR_CURVES = {"none": [(i, 10 ** (-4 + i / 10), 2.3, 2.3 + 0.001 * math.sin(i)) for i in range(40)],
             "before": [(i, 10 ** (-4 + i / 10), 2.3, 2.3 - 1.5 * (i / 40) ** 2) for i in range(40)]}
LR_SUGGEST = {"none": {"steep_lr": 0.01, "min_lr": 0.1, "descent": 0.001},
              "before": {"steep_lr": 0.5, "min_lr": 1.0, "descent": 0.6}}


DIVERGED_POINTS = (("after", "adam", 10.0), ("none", "sgd", 10.0))  # each arm diverges in one column only


def range_rows(huge_loss=False):
    rows = []
    for opt in ("sgd", "adam"):
        for arm in ("none", "before", "after"):
            for lr in (1e-3, 1e-2, 1e-1, 1.0, 10.0):
                acc = 0.9 if lr < 1 else 0.1
                loss = 1e10 if huge_loss and (arm, opt, lr) == ("before", "adam", 1.0) else 0.5 + lr
                rows.append({"arm": arm, "optimizer.name": opt, "optimizer.lr": lr, "acc_mean": acc,
                             "acc_ci_low": acc - 0.2, "acc_ci_high": min(acc + 0.2, 1.2), "train_loss_mean": loss,
                             "diverged": 2 if (arm, opt, lr) in DIVERGED_POINTS else 0})
    return rows


USABLE = [{"arm": arm, "optimizer.name": opt, "lo": 1e-3, "hi": 0.1, "n_learn": 3, "n_seeds": 3, "floor": 0.5}
          for opt in ("sgd", "adam") for arm in ("none", "before", "after")]


def drawers():
    """Every drawing function of plotting with arguments it can draw (path left out)."""
    gap = {arm: runs for arm, runs in CURVES.items()}
    return {"learning_curves": lambda path: plotting.learning_curves(CURVES, path, title="t", target=0.9,
                                                                     diverged=DIVERGED),
            "learning_curves_2": lambda path: plotting.learning_curves(CURVES, path, title="t", diverged=DIVERGED),
            "lrfind_plot": lambda path: plotting.lrfind_plot(LR_CURVES, LR_SUGGEST, path, title="t", flat=["none"]),
            "range_figure": lambda path: plotting.range_figure(range_rows(), USABLE, ["optimizer.name", "optimizer.lr"],
                                                               "optimizer.lr", path, title="t"),
            "gap_curves": lambda path: plotting.gap_curves(gap, path, title="t")}


@pytest.mark.parametrize("name", sorted(drawers()))
def test_each_drawer_returns_a_figure_and_writes_only_with_a_path(tmp_path, name):
    before = plt.get_fignums()
    draw = drawers()[name]
    fig = draw(None)
    assert isinstance(fig, Figure) and fig.axes
    assert list(tmp_path.iterdir()) == []  # no path: nothing written
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert isinstance(draw(a), Figure)
    draw(b)
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and a.read_bytes() == b.read_bytes()
    assert plt.get_fignums() == before  # built on matplotlib.figure.Figure, not pyplot


def test_draw_learning_curves_returns_the_figure(tmp_path):
    info = {"name": "x", "title": "x: mnist-5k, 100 sigmoid", "target": {"accuracy": 0.9, "split": "test"}}
    fig = draw_learning_curves(info, CURVES, DIVERGED)
    assert isinstance(fig, Figure) and "x: mnist-5k, 100 sigmoid" in fig._suptitle.get_text()
    assert list(tmp_path.iterdir()) == []
    assert isinstance(draw_learning_curves(info, CURVES, DIVERGED, tmp_path / "lc.png"), Figure)
    assert (tmp_path / "lc.png").is_file()


def test_text_is_sized_for_the_width_the_report_shows():
    """A wide figure is shrunk to about 900 px: its text is larger, so that it reads at about 9 px or more."""
    for width in (6.0, 10.0, 13.0, 15.0):
        px = style.text_size(width) * style.DPI / 72 * min(1.0, style.SHOWN_PX / (width * style.DPI))
        assert px >= 9.0, width
    fig = drawers()["learning_curves"](None)
    sizes = {t.get_size() for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels()}
    assert sizes == {style.text_size(fig.get_figwidth())}


# -- learning curves ---------------------------------------------------------------------------------------------------
def band_ys(ax):
    return np.concatenate([p.get_paths()[0].vertices[:, 1] for p in ax.collections])


def test_loss_axis_ends_just_below_the_lowest_mean_and_the_accuracy_band_within_0_1():
    """The seeds of 'none' disagree widely: its loss band's lower edge is <= 0 and its accuracy band passes 0 and 1.
    The loss axis ends just below the lowest line (not at a clip value decades below); the band runs along it."""
    fig = plotting.learning_curves(CURVES, None, diverged=DIVERGED)
    ax_loss, ax_acc = fig.axes
    lowest = min(min(line.get_ydata()) for line in ax_loss.get_lines() if line.get_gid().startswith("mean:"))
    bottom = ax_loss.get_ylim()[0]
    assert lowest / 2 <= bottom < lowest
    assert band_ys(ax_loss).min() >= bottom
    ys = band_ys(ax_acc)
    assert ys.min() >= 0 and ys.max() <= 1
    assert ax_acc.get_ylim()[0] <= 0.1  # not saturated: the whole 0..1


def test_loss_axis_labels_are_plain_numbers_and_minor_ticks_unlabelled():
    ax_loss = plotting.learning_curves(CURVES, None, diverged=DIVERGED).axes[0]
    assert isinstance(ax_loss.yaxis.get_minor_formatter(), ticker.NullFormatter)
    fig_canvas = ax_loss.figure.canvas  # a Figure made without pyplot draws on its own canvas
    fig_canvas.draw()
    labels = [t.get_text() for t in ax_loss.get_yticklabels() if t.get_text()]
    assert labels and all("10^" not in s and "\\mathdefault" not in s for s in labels), labels


def test_saturated_accuracy_zooms_on_the_informative_range():
    curves = {"none": [saturating(0.0), saturating(-0.01)], "before": [saturating(0.005), saturating(0.0)],
              "after": [run([1.0, INF], [0.1, 0.5, 0.1], every=100.0)]}
    fig = plotting.learning_curves(curves, None, target=0.9, diverged={"none": [False] * 2, "before": [False] * 2,
                                                                      "after": [True]})
    ax_acc = fig.axes[1]
    lo, hi = ax_acc.get_ylim()
    assert 0.85 <= lo < 0.9 and 0.98 < hi <= 1.01  # the target 0.9 stays in view, step 0's 0.1 leaves through the foot
    assert "zoomed" in ax_acc.get_ylabel()
    (x,) = [line for line in ax_acc.get_lines() if line.get_gid() == "diverged-end:after:0"]
    assert x.get_transform() != ax_acc.transData and x.get_ydata()[0] == 0.03  # at the bottom edge, still marked


def test_the_reached_counts_are_in_the_figure_legend_not_over_the_steps():
    fig = plotting.learning_curves(CURVES, None, target=0.9, diverged=DIVERGED)
    assert fig.axes[2].get_legend() is None
    texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "no BN (n=2; 1/2 reached 0.9)" in texts
    assert "BN before activation (n=3; 1 diverged, not in the mean; 2/3 reached 0.9)" in texts


def test_the_gap_leaves_the_diverged_runs_out_of_the_mean_and_counts_them():
    fig = plotting.gap_curves(CURVES, None, title="t", diverged=DIVERGED)
    texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert texts == ["no BN (n=2)", "BN before activation (n=3; 1 diverged, not in the mean)"]
    (before,) = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("BN before")]
    assert np.allclose(before.get_ydata(), [0.01] * 5)  # train_eval_acc - test_acc of the two runs that finished


# -- lrfind ------------------------------------------------------------------------------------------------------------
def test_a_flat_range_test_curve_gets_no_suggestion_marks():
    fig = plotting.lrfind_plot(LR_CURVES, LR_SUGGEST, None, title="t", flat=flat_arms(LR_SUGGEST))
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert "no BN: no clear descent, no suggestion" in labels
    assert not [s for s in labels if s.startswith("no BN:") and ("steepest" in s or "minimum" in s)]
    assert [s for s in labels if s.startswith("BN before activation: steepest")]
    markers = [line for line in ax.get_lines() if line.get_marker() in ("o", "v")]
    assert {m.get_color() for m in markers} == {plotting.ARM_COLORS["before"]}


@pytest.mark.parametrize("descent, clear", [(0.6, True), (MIN_DESCENT, True), (0.01, False), (None, False),
                                            (NAN, False), ("0.5", False), (True, False)])
def test_clear_descent(descent, clear):
    assert clear_descent({"descent": descent}) is clear
    assert flat_arms({"a": {"descent": descent}}) == ([] if clear else ["a"])
    assert not clear_descent({})  # no descent recorded: nothing to trust


# -- the range figure --------------------------------------------------------------------------------------------------
def test_range_figure_lanes_legend_and_title():
    fig = plotting.range_figure(range_rows(), USABLE, ["optimizer.name", "optimizer.lr"], "optimizer.lr", None,
                                title="lr_range: mnist-5k, 4 x 100 relu")
    assert len(fig.axes) == 6  # per column: usable-range lanes, accuracy, loss
    strip, acc = fig.axes[0], fig.axes[2]
    assert len(strip.patches) + len(strip.collections) >= 3  # one lane per arm, in its own axes above the data
    assert not acc.patches  # nothing drawn over the accuracy curves
    # diverged runs sit below 0, where no accuracy lies, in every column alike
    xs = [line for ax in fig.axes for line in ax.get_lines() if line.get_marker() == "x"]
    assert xs and all(line.get_ydata().max() < 0 for line in xs)
    assert acc.get_ylim()[0] < 0 and fig.axes[3].get_ylim() == acc.get_ylim()
    texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    # the 'after' arm diverges in the adam column only, 'none' in the sgd column only: both in the one legend
    assert "BN after activation: diverged runs (count below the x)" in texts
    assert "no BN: diverged runs (count below the x)" in texts
    assert "floor: tail accuracy 0.5" in texts and any("usable range" in t for t in texts)
    title = fig._suptitle.get_text()
    assert "lr_range: mnist-5k" in title and "vs learning rate" in title and "Usable range" in title


def test_range_figure_accuracy_intervals_are_drawn_within_0_1():
    fig = plotting.range_figure(range_rows(), USABLE, ["optimizer.name", "optimizer.lr"], "optimizer.lr", None)
    for ax in fig.axes[2:4]:
        for coll in ax.collections:  # the error bars
            for seg in coll.get_segments():
                assert seg[:, 1].min() >= 0 and seg[:, 1].max() <= 1


def test_one_huge_mean_loss_does_not_stretch_the_loss_axis():
    fig = plotting.range_figure(range_rows(huge_loss=True), USABLE, ["optimizer.name", "optimizer.lr"],
                                "optimizer.lr", None)
    ax_loss = fig.axes[5]  # adam's loss
    assert ax_loss.get_ylim()[1] < 1e3
    above = [line for line in ax_loss.get_lines() if line.get_label() == "mean loss above the axis"]
    assert len(above) == 1 and above[0].get_marker() == "^"
    assert isinstance(ax_loss.yaxis.get_minor_formatter(), ticker.NullFormatter)


def test_range_figure_with_few_values_labels_them():
    rows = [{"arm": arm, "train.batch_size": b, "acc_mean": 0.9, "acc_ci_low": 0.88, "acc_ci_high": 0.92,
             "train_loss_mean": 0.3, "diverged": 0} for arm in ("none", "before") for b in (2, 8, 64)]
    fig = plotting.range_figure(rows, [], ["train.batch_size"], "train.batch_size", None)
    ax_loss = fig.axes[-1]
    assert [t.get_text() for t in ax_loss.get_xticklabels()] == ["2", "8", "64"]
    assert ax_loss.get_xlabel() == "batch size (examples), log scale"
