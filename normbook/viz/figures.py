"""Plotly figure builders shared by every chapter.

:func:`slider_figure` turns a precomputed grid of results into one figure with a slider over one
knob and plotly animation frames, one frame per knob value. It needs no kernel: the static HTML
of the book lets a reader move the slider over the grid that ``normbook run`` computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

# twelve distinguishable colours: the synthesis part draws up to twelve methods in one figure
COLORWAY: tuple[str, ...] = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#7f7f7f",
    "#000000",
    "#aec7e8",
)


def _hex_to_rgba(color: str, alpha: float) -> str:
    color = color.lstrip("#")
    r, g, b = (int(color[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _require_columns(table: pd.DataFrame, columns: Sequence[str | None]) -> None:
    missing = [c for c in columns if c is not None and c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}; it has {list(table.columns)}")


def slider_figure(
    table: pd.DataFrame,
    *,
    x: str,
    y: str,
    slider: str | None,
    trace: str | None = None,
    std: str | None = None,
    title: str = "",
    x_title: str | None = None,
    y_title: str | None = None,
    slider_title: str | None = None,
    log_x: bool = False,
    log_y: bool = False,
    mode: str = "lines+markers",
    y_range: Sequence[float] | None = None,
) -> go.Figure:
    """One figure with a slider over ``slider`` and one frame per value of it.

    ``table`` is long-form: one row per (slider value, trace value, x). In each frame every
    value of ``trace`` is a line of ``y`` against ``x``; with ``std`` a band of ±1 std is drawn
    around it. The traces are the same in every frame (a missing combination is an empty line),
    so plotly can animate between frames in the static page. With ``slider=None`` the figure is
    the same plot without a slider (the live panels draw their single grid point this way).
    """
    _require_columns(table, [x, y, slider, trace, std])
    if table.empty:
        raise ValueError("slider_figure needs a non-empty table")
    slider_values = sorted(table[slider].unique().tolist()) if slider else [None]
    trace_values = sorted(table[trace].unique().tolist(), key=str) if trace else [None]
    colorway = COLORWAY

    def frame_traces(slider_value: object) -> list[go.Scatter]:
        rows = table if slider is None else table[table[slider] == slider_value]
        traces: list[go.Scatter] = []
        for index, trace_value in enumerate(trace_values):
            part = rows if trace is None else rows[rows[trace] == trace_value]
            part = part.sort_values(x)
            color = colorway[index % len(colorway)]
            name = _format_value(trace_value) if trace else y
            if std is not None:
                upper = (part[y] + part[std]).tolist()
                lower = (part[y] - part[std]).tolist()
                traces.append(
                    go.Scatter(
                        x=part[x].tolist() + part[x].tolist()[::-1],
                        y=upper + lower[::-1],
                        mode="lines",
                        fill="toself",
                        fillcolor=_hex_to_rgba(color, 0.18),
                        line={"width": 0},
                        hoverinfo="skip",
                        showlegend=False,
                        name=f"{name} ±1 std",
                        legendgroup=name,
                    )
                )
            traces.append(
                go.Scatter(
                    x=part[x].tolist(),
                    y=part[y].tolist(),
                    mode=mode,
                    name=name,
                    legendgroup=name,
                    line={"color": color},
                    marker={"size": 5},
                )
            )
        return traces

    frames = [
        go.Frame(name=_format_value(value), data=frame_traces(value)) for value in slider_values
    ]
    axes = {
        "title": title,
        "xaxis": {"title": x_title or x, "type": "log" if log_x else "linear"},
        "yaxis": {"title": y_title or y, "type": "log" if log_y else "linear"},
    }
    if slider is None:
        figure = go.Figure(data=frames[0].data)
        figure.update_layout(**axes)
        if y_range is not None:
            figure.update_yaxes(range=list(y_range))
        return figure
    label = slider_title or slider
    steps = [
        {
            "label": frame.name,
            "method": "animate",
            "args": [
                [frame.name],
                {
                    "mode": "immediate",
                    "frame": {"duration": 0, "redraw": True},
                    "transition": {"duration": 0},
                },
            ],
        }
        for frame in frames
    ]
    figure = go.Figure(data=frames[0].data, frames=frames)
    figure.update_layout(
        **axes,
        sliders=[
            {
                "active": 0,
                "currentvalue": {"prefix": f"{label} = "},
                "pad": {"t": 50},
                "steps": steps,
            }
        ],
    )
    if y_range is not None:
        figure.update_yaxes(range=list(y_range))
    return figure


def bar_figure(
    table: pd.DataFrame,
    *,
    x: str,
    y: str,
    std: str | None = None,
    color: str | None = None,
    title: str = "",
    x_title: str | None = None,
    y_title: str | None = None,
    reference: float | None = None,
    reference_label: str = "",
    y_range: Sequence[float] | None = None,
) -> go.Figure:
    """Bars of ``y`` per ``x`` (one row each, in the table's order), with ±``std`` error bars;
    ``color`` (a boolean column) splits them into two legend groups; ``reference`` draws a
    dashed horizontal line (chance, or the ratio 1 of BN)."""
    _require_columns(table, [x, y, std, color])
    if table.empty:
        raise ValueError("bar_figure needs a non-empty table")
    groups = [(None, table)] if color is None else list(table.groupby(color, sort=False))
    figure = go.Figure()
    for index, (value, part) in enumerate(groups):
        figure.add_trace(
            go.Bar(
                x=part[x].tolist(),
                y=part[y].tolist(),
                error_y=None if std is None else {"type": "data", "array": part[std].tolist()},
                name=y if value is None else f"{color}: {_format_value(value)}",
                marker={"color": COLORWAY[index % len(COLORWAY)]},
                showlegend=value is not None,
            )
        )
    figure.update_layout(
        title=title,
        xaxis={"title": x_title or x, "categoryorder": "array", "categoryarray": table[x].tolist()},
        yaxis={"title": y_title or y},
        barmode="overlay",
    )
    if reference is not None:
        figure.add_hline(
            y=reference, line_dash="dash", line_color="#555", annotation_text=reference_label
        )
    if y_range is not None:
        figure.update_yaxes(range=list(y_range))
    return figure
