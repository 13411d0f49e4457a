"""bncli.report.figures: each drawing function returns its Figure (written only with a path); small differences
show (points on a fitted axis instead of bars from 0), a paired difference is drawn per seed against its
equivalence margin, the two percentile panels share one y scale, and no legend sits on the data. Specs written
before these arguments existed (an older figures.json) still replay."""

from __future__ import annotations

import json
import math

import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from bncli.errors import UsageError
from bncli.report import figspec, figures

CATS = ["batch 16", "batch 64"]
SERIES = {"none": [(0.950, 0.948, 0.952), (0.949, 0.947, 0.951)],
          "before": [(0.955, 0.953, 0.957), (math.nan, math.nan, math.nan)]}


def bars(**kw):
    return figures.bars(title="T", panels=[("final test accuracy", CATS, SERIES)], ylabel="accuracy", **kw)


def bar_patches(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_drawers_return_figures_and_write_only_with_a_path(tmp_path):
    made = [bars(), bars(zero=False),
            figures.lines(title="T", panels=[("", {"a": ([1, 2], [0.1, 0.2], [0.0, 0.1], [0.2, 0.3])})],
                          xlabel="x", ylabel="y"),
            figures.percentiles(title="T", curves={"none": ([0, 1], [0, -1], [1, 0], [2, 1])}, unit=0),
            figures.differences(title="T", rows=[("final", [0.001, -0.002], (-0.0005, -0.01, 0.009))],
                                ylabel="d", margin=0.005)]
    assert all(isinstance(f, Figure) for f in made)
    assert list(tmp_path.iterdir()) == []
    bars(path=tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_points_on_a_fitted_axis_show_differences_of_thousandths():
    ax = bars(zero=False).axes[0]
    assert not bar_patches(ax)  # no bars from 0
    lo, hi = ax.get_ylim()
    assert 0.94 < lo < 0.948 and 0.957 < hi < 0.97
    with_bars = bars().axes[0]
    assert len(bar_patches(with_bars)) == 4 and with_bars.get_ylim()[0] == 0


@pytest.mark.parametrize("zero", [True, False])
def test_a_missing_value_is_marked_upright_and_the_legend_sits_below(zero):
    fig = bars(zero=zero)
    ax = fig.axes[0]
    (na,) = [t for t in ax.texts if t.get_text() == "n/a"]
    assert na.get_rotation() == 0
    assert ax.get_legend() is None and len(fig.legends) == 1  # one legend, outside the panels
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["no BN", "BN before activation"]


def test_a_panel_with_one_series_has_no_legend():
    fig = figures.bars(title="C12", panels=[("inference", ["no BN", "BN as a layer"],
                                             {"inference": [(2.0, 1.9, 2.1), (2.2, 2.1, 2.3)]})], ylabel="ms")
    assert not fig.legends and fig.axes[0].get_legend() is None


def test_series_and_categories_must_match():
    with pytest.raises(IndexError, match="1 values for 2 categories"):
        figures.bars(title="T", panels=[("p", CATS, {"none": [(0.5, 0.4, 0.6)]})], ylabel="y")


def test_the_paired_difference_plot():
    diffs = [0.003, -0.008, -0.001, 0.0, 0.0, -0.002]
    fig = figures.differences(title="C7", rows=[("final test accuracy", diffs, (-0.0013, -0.0045, 0.0019)),
                                                ("best test accuracy", [0.001] * 6, (0.001, 0.001, 0.001))],
                              ylabel="accuracy difference, with bias - without", margin=0.005)
    ax = fig.axes[0]
    dots = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert sorted(dots[0].get_ydata()) == sorted(diffs) and len(dots[1].get_ydata()) == 6  # one dot per seed
    (band,) = ax.patches  # the margin, as a band around 0
    assert band.get_y() == pytest.approx(-0.005) and band.get_y() + band.get_height() == pytest.approx(0.005)
    lo, hi = ax.get_ylim()
    assert lo < -0.008 and hi > 0.005
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == ["equivalence margin ±0.005", "one seed", "mean, 95% t-interval"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["final test accuracy", "best test accuracy"]


def test_the_percentile_panels_share_one_y_scale_and_keep_the_legend_off_the_bands():
    fig = figures.percentiles(title="C9", curves={"none": ([0, 1, 2], [-3, -2, -2], [-2, -1, -1], [-1, 0, 0]),
                                                   "before": ([0, 1, 2], [-2, -2, -2], [0, 0, 0], [2, 2, 2])}, unit=0)
    a, b = fig.axes
    assert a.get_ylim() == b.get_ylim() and a.get_ylim()[0] <= -3 and a.get_ylim()[1] >= 2
    assert a.get_legend() is None and b.get_legend() is None and len(fig.legends) == 1


# -- specs: the new drawing function and argument, and specs from before them ------------------------------------------
def _replay(tmp_path, specs):
    path = tmp_path / "figures" / figspec.FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": figspec.FORMAT, "version": figspec.VERSION, "figures": specs}))
    return figspec.replay(tmp_path, tmp_path / "out", "png")


def test_a_differences_spec_replays_and_a_damaged_one_is_one_usage_error(tmp_path):
    spec = figspec.make("c07_bias", figures.differences,
                        {"title": "C7", "rows": [("final", [0.001, math.nan], (0.0, -0.01, 0.01))], "ylabel": "d",
                         "margin": 0.005, "note": ""}, claim="C7")
    assert [p.name for p in _replay(tmp_path, [spec])] == ["c07_bias.png"]
    bad = json.loads(json.dumps(spec))
    bad["args"]["rows"][0][2] = [0.0, -0.01]
    with pytest.raises(UsageError, match=r"figure 'c07_bias'.*to be an array of 3, found 2 values"):
        _replay(tmp_path / "bad", [bad])


def test_specs_written_before_zero_and_differences_still_replay(tmp_path):
    """An older figures.json: C7 as bars, C4 without 'zero' (bars from 0, as it was drawn then)."""
    old_c07 = {"name": "c07_bias", "claim": "C7", "draw": "bncli.report.figures.bars",
               "args": {"title": "C7", "ylabel": "accuracy",
                        "panels": [["", ["final test accuracy"], {"without bias": [[0.94, 0.93, 0.95]],
                                                                  "with bias": [[0.94, 0.935, 0.945]]}]]}}
    assert [p.name for p in _replay(tmp_path, [old_c07])] == ["c07_bias.png"]
