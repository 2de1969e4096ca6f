"""Diagrams of residual units drawn from the modules themselves (PAPERS.md IC-F1, IC-F3, NP-F1).

:func:`layer_sequence` reads a built block in forward order, from its ``named_modules()``: a
residual block (a module with a ``branch`` child, like
:class:`~normbook.models.resnet_cifar.CifarResidualBlock` and the ImageNet ``ResNetBlock``) gives
the layers of its branch, of its shortcut (``shortcut`` or ``downsample``; an identity shortcut
gives none) and those after the addition; any other module gives its layers in order. The figure
(:func:`unit_diagram`) and the one-line text (:func:`sequence_text`) are drawn from that list, so
a diagram always shows what the model runs, never a drawing made by hand.

A layer is a *box* with a kind (``conv``, ``norm``, ``ic``, ``act``, ...) and a label. Containers
(``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``) are walked into; composite layers such as
:class:`~normbook.layers.ICLayer` (BN + Dropout) are one box. :func:`register_layer_style` adds a
kind and label for another layer class (a part of the book with its own layers calls it once).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
import torch.nn as nn

PATHS: tuple[str, ...] = ("main", "branch", "shortcut", "post")
SHORTCUT_NAMES: tuple[str, ...] = ("shortcut", "downsample")
KIND_COLORS: dict[str, str] = {
    "conv": "#aec7e8",
    "linear": "#aec7e8",
    "norm": "#ffbb78",
    "ic": "#98df8a",
    "act": "#ff9896",
    "dropout": "#c5b0d5",
    "pool": "#dbdb8d",
    "scale": "#c7c7c7",
    "block": "#e7e7e7",
    "other": "#e7e7e7",
}
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass(frozen=True)
class LayerBox:
    """One layer of a diagram: where it runs (``path``), its qualified module name, kind, label.

    ``path`` is ``main`` (a plain sequence, or what a block runs before splitting), ``branch``,
    ``shortcut`` or ``post`` (after the addition).
    """

    path: str
    name: str
    kind: str
    label: str


def _conv_label(module: nn.Module) -> str:
    kernel = module.kernel_size
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    stride = module.stride if isinstance(module.stride, int) else module.stride[0]
    prefix = "NormProp conv" if type(module).__name__.startswith("NormProp") else "Conv"
    step = f" /{stride}" if stride != 1 else ""
    return f"{prefix} {kh}×{kw}{step}<br>{module.in_channels}→{module.out_channels}"


def _ic_label(module: nn.Module) -> str:
    return f"IC<br>BN + drop {module.drop_prob:g}"


_STYLES: list[tuple[type, str, Callable[[nn.Module], str]]] = []


def register_layer_style(cls: type, kind: str, label: Callable[[nn.Module], str]) -> None:
    """Draw modules of class ``cls`` (and subclasses) as a ``kind`` box labelled ``label(m)``.

    Styles registered later take precedence; ``kind`` picks the colour (:data:`KIND_COLORS`).
    """
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise TypeError(f"cls must be an nn.Module class, got {cls!r}")
    if kind not in KIND_COLORS:
        raise ValueError(f"kind must be one of {', '.join(KIND_COLORS)}, got {kind!r}")
    if not callable(label):
        raise TypeError("label must be a callable module -> str")
    _STYLES.insert(0, (cls, kind, label))


def _register_defaults() -> None:
    from normbook.layers import CReLU, ICLayer, NormPropConv2d, NormPropLinear, NormPropReLU

    defaults: list[tuple[type, str, Callable[[nn.Module], str]]] = [
        (nn.Conv2d, "conv", _conv_label),
        (NormPropConv2d, "conv", _conv_label),
        (nn.Linear, "linear", lambda m: f"FC<br>{m.in_features}→{m.out_features}"),
        (
            NormPropLinear,
            "linear",
            lambda m: f"NormProp FC<br>{m.in_features}→{m.out_features}",
        ),
        (nn.modules.batchnorm._BatchNorm, "norm", lambda m: "BN"),
        (ICLayer, "ic", _ic_label),
        (nn.ReLU, "act", lambda m: "ReLU"),
        (CReLU, "act", lambda m: "CReLU"),
        (NormPropReLU, "act", lambda m: "NormProp<br>ReLU"),  # NP-EQ
        (nn.ELU, "act", lambda m: "ELU"),
        (nn.Dropout, "dropout", lambda m: f"Dropout {m.p:g}"),
        (nn.MaxPool2d, "pool", lambda m: "MaxPool"),
        (nn.AdaptiveAvgPool2d, "pool", lambda m: "AvgPool"),
        (nn.AvgPool2d, "pool", lambda m: "AvgPool"),
    ]
    for cls, kind, label in defaults:
        register_layer_style(cls, kind, label)


_register_defaults()


def layer_style(module: nn.Module) -> tuple[str, str]:
    """``(kind, label)`` of one layer (class name and kind ``other`` for an unknown layer)."""
    for cls, kind, label in _STYLES:
        if isinstance(module, cls):
            return kind, label(module)
    return "other", type(module).__name__


def _is_layer(module: nn.Module) -> bool:
    """A box of its own: a styled class, or a module without children."""
    if isinstance(module, _CONTAINERS):
        return False
    return any(isinstance(module, cls) for cls, _, _ in _STYLES) or not list(module.children())


def _is_residual(module: nn.Module) -> bool:
    return isinstance(getattr(module, "branch", None), nn.Module)


def _walk(module: nn.Module, prefix: str, path: str, top: bool) -> list[LayerBox]:
    if isinstance(module, nn.Identity):
        return []
    if not top and _is_residual(module):
        return [LayerBox(path, prefix, "block", f"{type(module).__name__}")]
    if _is_layer(module):
        kind, label = layer_style(module)
        return [LayerBox(path, prefix, kind, label)]
    boxes: list[LayerBox] = []
    for name, child in module.named_children():
        boxes += _walk(child, f"{prefix}.{name}" if prefix else name, path, False)
    return boxes


def layer_sequence(module: nn.Module, *, then: nn.Module | None = None) -> list[LayerBox]:
    """The layers of ``module`` in forward order, each with its path (see :class:`LayerBox`).

    For a residual block (a ``branch`` child) the children registered before ``branch`` are
    ``main`` (a pre-activation block's shared Norm-Act), ``branch`` and ``shortcut``/``downsample``
    are the two paths, and every other child runs after the addition (``post``). A residual block
    nested in another module is one ``block`` box. ``then`` appends the layers of another module
    (e.g. a model's ``final`` layers after its last unit) as ``post``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    if then is not None and not isinstance(then, nn.Module):
        raise TypeError(f"then must be an nn.Module or None, got {type(then).__name__}")
    boxes: list[LayerBox] = []
    if _is_residual(module):
        seen_branch = False
        for name, child in module.named_children():
            if name == "branch":
                seen_branch = True
                boxes += _walk(child, name, "branch", True)
            elif name in SHORTCUT_NAMES:
                boxes += _walk(child, name, "shortcut", True)
            else:
                boxes += _walk(child, name, "post" if seen_branch else "main", True)
    else:
        boxes += _walk(module, "", "main", True)
    if then is not None:
        boxes += [
            LayerBox("post", f"then.{b.name}" if b.name else "then", b.kind, b.label)
            for b in _walk(then, "", "post", True)
        ]
    return boxes


def kinds(module: nn.Module, *, then: nn.Module | None = None) -> dict[str, list[str]]:
    """The kinds of :func:`layer_sequence` per path: ``{"branch": ["act", "ic", "conv", ...]}``."""
    out: dict[str, list[str]] = {path: [] for path in PATHS}
    for box in layer_sequence(module, then=then):
        out[box.path].append(box.kind)
    return out


def is_residual(module: nn.Module) -> bool:
    """Whether ``module`` is drawn as a residual block (it has a ``branch`` child)."""
    return _is_residual(module)


def _plain(label: str) -> str:
    return label.replace("<br>", " ")


def sequence_text(module: nn.Module, *, then: nn.Module | None = None) -> str:
    """One line: ``branch: ReLU → IC … | shortcut: identity | after +: …`` (or ``a → b → c``)."""
    boxes = layer_sequence(module, then=then)

    def chain(path: str) -> str:
        return " → ".join(_plain(b.label) for b in boxes if b.path == path)

    if not _is_residual(module):
        main = chain("main")
        post = chain("post")
        return " → ".join(part for part in (main, post) if part) or "(no layers)"
    parts = []
    if chain("main"):
        parts.append(f"before: {chain('main')}")
    parts.append(f"branch: {chain('branch') or 'identity'}")
    parts.append(f"shortcut: {chain('shortcut') or 'identity'}")
    parts.append(f"after +: {chain('post') or 'nothing'}")
    return " | ".join(parts)


def unit_diagram(
    rows: Mapping[str, nn.Module | tuple[nn.Module, nn.Module | None]],
    *,
    title: str = "",
    box_width: float = 1.0,
) -> go.Figure:
    """A plotly figure with one row per entry of ``rows``: ``{row label: block}`` or
    ``{row label: (block, then)}`` (``then`` as in :func:`layer_sequence`).

    A residual row draws its ``main`` layers, then the branch on top and the shortcut below
    (a straight line for an identity shortcut), meeting at a ⊕, then the ``post`` layers. A plain
    row draws its layers in one line. Colours follow the layer kind (:data:`KIND_COLORS`).
    """
    if not rows:
        raise ValueError("unit_diagram needs at least one row")
    figure = go.Figure()
    shapes: list[dict] = []
    annotations: list[dict] = []
    row_height = 3.0
    gap = 0.35 * box_width
    step = box_width + gap
    max_x = 0.0
    legend_kinds: list[str] = []

    def box(x: float, y: float, layer: LayerBox) -> None:
        shapes.append(
            {
                "type": "rect",
                "x0": x,
                "x1": x + box_width,
                "y0": y - 0.45,
                "y1": y + 0.45,
                "fillcolor": KIND_COLORS.get(layer.kind, KIND_COLORS["other"]),
                "line": {"color": "#444", "width": 1},
            }
        )
        annotations.append(
            {
                "x": x + box_width / 2,
                "y": y,
                "text": layer.label,
                "showarrow": False,
                "font": {"size": 10},
                "hovertext": layer.name,
            }
        )
        if layer.kind not in legend_kinds:
            legend_kinds.append(layer.kind)

    def line(x0: float, y0: float, x1: float, y1: float) -> None:
        shapes.append(
            {
                "type": "line",
                "x0": x0,
                "y0": y0,
                "x1": x1,
                "y1": y1,
                "line": {"color": "#444", "width": 1.5},
            }
        )

    for index, (row_label, spec) in enumerate(rows.items()):
        block, then = spec if isinstance(spec, tuple) else (spec, None)
        boxes = layer_sequence(block, then=then)
        y = -index * row_height
        annotations.append(
            {
                "x": -0.2,
                "y": y,
                "xanchor": "right",
                "text": f"<b>{row_label}</b>",
                "showarrow": False,
                "font": {"size": 12},
            }
        )
        x = 0.0
        line(x, y, x + gap, y)
        x += gap
        main = [b for b in boxes if b.path == "main"]
        for layer in main:
            box(x, y, layer)
            line(x + box_width, y, x + step, y)
            x += step
        if _is_residual(block):
            branch = [b for b in boxes if b.path == "branch"]
            shortcut = [b for b in boxes if b.path == "shortcut"]
            split = x
            width = max(len(branch), len(shortcut), 1) * step
            top, bottom = y + 0.75, y - 0.75
            line(split, y, split, top)
            line(split, y, split, bottom)
            for offset, layer in enumerate(branch):
                bx = split + gap / 2 + offset * step
                box(bx, top, layer)
            for offset, layer in enumerate(shortcut):
                sx = split + gap / 2 + offset * step
                box(sx, bottom, layer)
            join = split + width + gap
            for level, count in ((top, len(branch)), (bottom, len(shortcut))):
                # the path's line, drawn in the gaps between its boxes (an identity: one line)
                edges = [split] + [
                    e
                    for k in range(count)
                    for e in (split + gap / 2 + k * step, split + gap / 2 + k * step + box_width)
                ]
                edges.append(join)
                for a, b in zip(edges[::2], edges[1::2], strict=True):
                    line(a, level, b, level)
                line(join, level, join, y)
            annotations.append(
                {
                    "x": join,
                    "y": y,
                    "text": "<b>+</b>",
                    "showarrow": False,
                    "bgcolor": "white",
                    "bordercolor": "#444",
                    "borderwidth": 1,
                    "font": {"size": 12},
                }
            )
            line(join, y, join + gap, y)
            x = join + gap
        for layer in (b for b in boxes if b.path == "post"):
            box(x, y, layer)
            line(x + box_width, y, x + step, y)
            x += step
        annotations.append(
            {"x": x + 0.05, "y": y, "xanchor": "left", "text": "→", "showarrow": False}
        )
        max_x = max(max_x, x)
    for kind in legend_kinds:  # legend entries: one invisible marker per kind shown
        figure.add_scatter(
            x=[None],
            y=[None],
            mode="markers",
            marker={"symbol": "square", "size": 12, "color": KIND_COLORS[kind]},
            name=kind,
        )
    n = len(rows)
    figure.update_layout(
        title=title,
        shapes=shapes,
        annotations=annotations,
        xaxis={"visible": False, "range": [-2.6, max_x + 0.6]},
        yaxis={"visible": False, "range": [-(n - 1) * row_height - 1.3, 1.3]},
        height=140 + 150 * n,
        plot_bgcolor="white",
        legend={"orientation": "h", "y": -0.02, "title": {"text": "layer kind: "}},
        margin={"l": 10, "r": 10, "t": 50 if title else 10, "b": 10},
    )
    return figure


def unit_rows(
    models: Mapping[str, nn.Module], *, last: bool = False
) -> dict[str, tuple[nn.Module, nn.Module | None]]:
    """Rows for :func:`unit_diagram` from whole models: each model's first residual block, or with
    ``last=True`` its last residual block followed by its ``final`` layers (IC-F3's last unit)."""
    from normbook.models import residual_blocks

    rows: dict[str, tuple[nn.Module, nn.Module | None]] = {}
    for label, model in models.items():
        blocks = residual_blocks(model)
        if not blocks:
            raise ValueError(f"{label}: {type(model).__name__} has no residual blocks")
        if last:
            rows[label] = (blocks[-1], getattr(model, "final", None))
        else:
            rows[label] = (blocks[0], None)
    return rows


def layer_table(module: nn.Module, *, then: nn.Module | None = None) -> list[dict[str, str]]:
    """:func:`layer_sequence` as rows of plain strings (path, module name, kind, label)."""
    return [
        {"path": b.path, "module": b.name, "kind": b.kind, "layer": _plain(b.label)}
        for b in layer_sequence(module, then=then)
    ]


__all__: Sequence[str] = (
    "KIND_COLORS",
    "LayerBox",
    "is_residual",
    "kinds",
    "layer_sequence",
    "layer_style",
    "layer_table",
    "register_layer_style",
    "sequence_text",
    "unit_diagram",
    "unit_rows",
)
