"""normbook.viz: the book's plotly renderer, static slider figures and live widget panels."""

from __future__ import annotations

import ipywidgets as widgets
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from normbook.viz import BookRenderer, live_panel, select_slider, slider_figure


def grid_table() -> pd.DataFrame:
    rows = [
        {"lr": lr, "norm": norm, "epoch": epoch, "acc": lr * epoch + (norm == "bn"), "sd": 0.1}
        for lr in (0.01, 0.1, 1.0)
        for norm in ("bn", "none")
        for epoch in range(4)
    ]
    return pd.DataFrame(rows)


def test_slider_figure_has_one_frame_per_grid_point():
    figure = slider_figure(grid_table(), x="epoch", y="acc", slider="lr", trace="norm", std="sd")
    assert [frame.name for frame in figure.frames] == ["0.01", "0.1", "1"]
    steps = figure.layout.sliders[0].steps
    assert [list(step.args[0]) for step in steps] == [["0.01"], ["0.1"], ["1"]]
    # every frame has the same traces (band + line per norm), so plotly can swap them
    assert {len(frame.data) for frame in figure.frames} == {4}
    # the data of each frame is that grid point's data
    line_bn_last = figure.frames[2].data[1]
    assert list(line_bn_last.y) == [1.0, 2.0, 3.0, 4.0]
    assert list(figure.frames[0].data[3].y) == pytest.approx([0.0, 0.01, 0.02, 0.03])
    # the initial data is the first frame's
    assert list(figure.data[1].y) == list(figure.frames[0].data[1].y)


def test_slider_figure_without_traces_or_bands():
    table = grid_table()
    figure = slider_figure(table[table.norm == "bn"], x="epoch", y="acc", slider="lr")
    assert len(figure.frames) == 3
    assert all(len(frame.data) == 1 for frame in figure.frames)


def test_curves_without_slider_have_no_frames():
    table = grid_table()
    figure = slider_figure(table[table.lr == 0.1], x="epoch", y="acc", slider=None, trace="norm")
    assert not figure.frames and not figure.layout.sliders
    assert [trace.name for trace in figure.data] == ["bn", "none"]


def test_slider_figure_rejects_missing_columns_and_empty_tables():
    with pytest.raises(ValueError, match="lacks column"):
        slider_figure(grid_table(), x="epoch", y="loss", slider="lr")
    with pytest.raises(ValueError, match="non-empty"):
        slider_figure(grid_table().iloc[:0], x="epoch", y="acc", slider="lr")


def test_renderer_emits_html_without_plotlyjs_and_the_plotly_mimetype():
    figure = go.Figure(go.Scatter(x=[0, 1], y=[1, 2]))
    bundle = BookRenderer().to_mimebundle(figure.to_dict())
    html = bundle["text/html"]
    assert "Plotly.newPlot" in html
    assert "plotly.js v" not in html and len(html) < 100_000  # plotly.js is not inlined
    assert bundle["application/vnd.plotly.v1+json"]["data"][0]["y"] == [1, 2]
    assert pio.renderers.default == "normbook"
    assert pio.templates.default == "normbook"


def test_static_figure_does_not_autoplay():
    figure = slider_figure(grid_table(), x="epoch", y="acc", slider="lr", trace="norm")
    html = BookRenderer().to_mimebundle(figure.to_dict())["text/html"]
    assert "Plotly.animate" not in html


def test_live_panel_runs_once_headless_and_again_on_change():
    calls = []

    def experiment(lr, norm):
        calls.append((lr, norm))
        return go.Figure(go.Scatter(x=[0, 1], y=[0, lr]))

    lr = select_slider([0.1, 1.0], 0.1, "lr")
    norm = widgets.Dropdown(options=["bn", "none"], value="bn")
    panel = live_panel(experiment, {"lr": lr, "norm": norm}, show=False)
    assert panel.calls == 1 and calls == [(0.1, "bn")]
    assert isinstance(panel.result, go.Figure)
    lr.value = 1.0  # what a front-end does when the reader moves the slider
    assert panel.calls == 2 and calls[-1] == (1.0, "bn")
    assert list(panel.result.data[0].y) == [0, 1.0]


def test_live_panel_validates_controls():
    with pytest.raises(ValueError, match="at least one control"):
        live_panel(lambda: None, {}, show=False)
    with pytest.raises(TypeError, match="control 'lr'"):
        live_panel(lambda lr: None, {"lr": 0.1}, show=False)


def test_numpy_scalars_display_as_plain_numbers_for_glue():
    """NumPy 2 prints np.float64(0.25): glue's formatted roles need the plain number."""
    import numpy as np
    from IPython.core.interactiveshell import InteractiveShell

    from normbook.viz import setup_display

    shell = InteractiveShell.instance()
    try:
        setup_display()
        text = {v: shell.display_formatter.format(v)[0]["text/plain"] for v in (
            np.float64(0.25), np.float32(2.0), np.int64(7), np.bool_(True)
        )}  # fmt: skip
        assert list(text.values()) == ["0.25", "2.0", "7", "True"]
        assert float(text[np.float64(0.25)]) == 0.25
    finally:
        InteractiveShell.clear_instance()
