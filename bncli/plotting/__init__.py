"""Figures, drawn headless (matplotlib's Agg canvas, no pyplot state) and written atomically.

Every drawing function builds and returns a `matplotlib.figure.Figure` (a notebook shows it as it is); given a path
it also writes it there (`save`). No-BN and each BN placement keep the same colour in every figure. The report shows
figures at most about 900 px wide: text grows with a figure's width (`styled`) so that it stays readable there.
"""

# The drawing functions, and what the report's own figures (report/figures.py) share with them.
from .curves import gap_curves, learning_curves
from .lrfind import lrfind_plot
from .ranges import range_figure
from .style import ARM_COLORS, ARM_LABELS, as_float, finish, short_key, styled, wrap

__all__ = ["ARM_COLORS", "ARM_LABELS", "as_float", "finish", "gap_curves", "learning_curves", "lrfind_plot",
           "range_figure", "short_key", "styled", "wrap"]
