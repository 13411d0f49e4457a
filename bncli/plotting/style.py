"""What every figure shares: colours and names of the arms, text sized for the width the report shows, log
axes that stay readable, and deterministic, atomic saving."""

from __future__ import annotations

import io
import math
import textwrap
from contextlib import contextmanager

import matplotlib
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import atomic

ARM_COLORS = {"none": "#444444", "before": "#1f77b4", "after": "#d95f02", "noisy": "#7570b3"}
LOG_MAX = 1e200  # the largest value a log axis shows: its tick locator steps up to two strides past the
# limits in powers of ten computed in floats, which must stay below 1e308
ARM_LABELS = {"none": "no BN", "before": "BN before activation", "after": "BN after activation",
              "noisy": "noisy BN (BN before, then noise)"}
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


def as_float(v):
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


