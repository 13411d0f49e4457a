"""Figures, drawn headless (matplotlib's Agg canvas, no pyplot state) and written atomically.

Every drawing function builds and returns a `matplotlib.figure.Figure` (a notebook shows it as it is); given a path
it also writes it there (`save`). No-BN and each BN placement keep the same colour in every figure. The report shows
figures at most about 900 px wide: text grows with a figure's width (`styled`) so that it stays readable there.
"""

from .curves import gap_curves, learning_curves, mean_band, reached_step, run_diverged
from .lrfind import lrfind_plot
from .ranges import range_figure
from .style import (
                    ARM_COLORS,
                    ARM_LABELS,
                    LOG_MAX,
                    as_float,
                    clamp_log_axis,
                    finish,
                    key_name,
                    log_ticks,
                    save,
                    short_key,
                    styled,
                    wrap,
)

__all__ = ["ARM_COLORS", "ARM_LABELS", "LOG_MAX", "as_float", "clamp_log_axis", "finish", "gap_curves", "key_name",
           "learning_curves", "log_ticks", "lrfind_plot", "mean_band", "range_figure", "reached_step",
           "run_diverged", "save", "short_key", "styled", "wrap"]
