"""Figures and widget panels: the one place that configures plotly for the book.

Importing :mod:`normbook.viz` selects the book's plotly renderer and theme, and (in a kernel)
shows NumPy scalars as plain numbers so that glued values format.
"""

from normbook.viz.figures import bar_figure, slider_figure
from normbook.viz.panels import LivePanel, live_panel, select_slider
from normbook.viz.render import BookRenderer, setup_display, setup_plotly
from normbook.viz.tables import (
    grid_table,
    html_table,
    leaderboard_table,
    reproduction_table,
    results_frame,
    results_table,
)

setup_plotly()
setup_display()

__all__ = [
    "BookRenderer",
    "bar_figure",
    "grid_table",
    "leaderboard_table",
    "LivePanel",
    "live_panel",
    "results_frame",
    "results_table",
    "html_table",
    "reproduction_table",
    "select_slider",
    "setup_display",
    "setup_plotly",
    "slider_figure",
]
