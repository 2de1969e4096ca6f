"""The one place that configures plotly rendering and the house theme.

Figures are emitted as a MIME bundle with two representations:

* ``text/html`` without plotly.js inlined: the book serves ``plotly.min.js`` once as a static file
  (see ``_config.yml``), so pages stay small and work offline. myst-nb keeps this one.
* ``application/vnd.plotly.v1+json``: JupyterLab (with the ``jupyterlab-plotly`` extension that
  the plotly wheel installs) and VS Code draw the figure natively from it, so the same notebooks
  show live figures to a student in Jupyter.

plotly's own default under a kernel (``plotly_mimetype``) emits only the second, which myst-nb
drops; see BUILD-NOTES.
"""

from __future__ import annotations

import json
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.io._base_renderers import MimetypeRenderer

from normbook.viz.figures import COLORWAY

RENDERER = "normbook"
TEMPLATE = "normbook"
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


class BookRenderer(MimetypeRenderer):
    """Render a figure as HTML that expects a page-level plotly.js, plus the plotly MIME type."""

    def __init__(self, config: dict | None = None, height: int = 460):
        self.config = dict(PLOTLY_CONFIG if config is None else config)
        self.height = height

    def to_mimebundle(self, fig_dict: dict) -> dict:
        html = pio.to_html(
            fig_dict,
            config=self.config,
            include_plotlyjs=False,
            include_mathjax=False,
            auto_play=False,
            full_html=False,
            default_width="100%",
            default_height=self.height,
            validate=False,
        )
        plotly_json = json.loads(pio.to_json(fig_dict, validate=False, remove_uids=False))
        plotly_json["config"] = self.config
        return {"text/html": html, "application/vnd.plotly.v1+json": plotly_json}


def _house_template() -> go.layout.Template:
    template = go.layout.Template(pio.templates["plotly_white"])
    template.layout.font = {"family": "Helvetica, Arial, sans-serif", "size": 13}
    template.layout.margin = {"l": 60, "r": 20, "t": 60, "b": 55}
    template.layout.legend = {"bgcolor": "rgba(255,255,255,0.6)"}
    template.layout.colorway = list(COLORWAY)
    return template


def setup_plotly() -> None:
    """Register and select the book's renderer and theme (idempotent)."""
    pio.templates[TEMPLATE] = _house_template()
    pio.templates.default = TEMPLATE
    pio.renderers[RENDERER] = BookRenderer()
    pio.renderers.default = RENDERER


def _plain_number(value: Any, printer: Any, cycle: bool) -> None:
    printer.text(repr(value.item()))


def setup_display() -> None:
    """Show NumPy scalars as plain numbers in a kernel (idempotent; no-op outside IPython).

    NumPy 2 prints ``np.float64(0.25)``; ``myst_nb.glue`` stores that text, and a formatted glue
    role (``{glue:text}`key:.2f` ``) can then not read it back as a number. With this, a glued
    NumPy scalar behaves like the Python number it holds.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with ipykernel
        return
    shell = get_ipython()
    if shell is None:
        return
    import numpy as np

    plain = shell.display_formatter.formatters["text/plain"]
    # concrete types: IPython's printer looks the exact type up before the abstract ones
    scalars = {np.dtype(code).type for code in np.typecodes["AllInteger"] + "efdg?"}
    for scalar in scalars:
        plain.for_type(scalar, _plain_number)
