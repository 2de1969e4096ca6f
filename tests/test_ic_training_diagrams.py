"""Diagrams of residual units drawn from the built modules (normbook.viz.diagrams; IC-F3, NP-F1)."""

from __future__ import annotations

import pytest
import torch.nn as nn

from normbook.layers import CReLU, ICLayer
from normbook.models import build_model, residual_blocks
from normbook.viz.diagrams import (
    KIND_COLORS,
    is_residual,
    kinds,
    layer_sequence,
    layer_style,
    layer_table,
    register_layer_style,
    sequence_text,
    unit_diagram,
    unit_rows,
)

TINY = {"depth": 8, "widths": (4, 8, 8), "in_channels": 1}
ORDER = {  # per conv of a branch (IC-F3)
    "relu-ic-conv": ["act", "ic", "conv"],
    "ic-conv-relu": ["ic", "conv", "act"],
    "conv-relu-ic": ["conv", "act", "ic"],
}
FINAL = {"relu-ic-conv": ["act", "ic"], "ic-conv-relu": ["ic"], "conv-relu-ic": []}


def _model(unit: str, **options) -> nn.Module:
    norm = "bn" if unit == "baseline" else "ic"
    return build_model("resnet_cifar", 10, **{**TINY, **options}, unit=unit, norm=norm)


@pytest.mark.parametrize("unit", list(ORDER))
def test_ic_unit_branches_read_in_forward_order(unit):
    model = _model(unit)
    first, last = residual_blocks(model)[0], residual_blocks(model)[-1]
    assert kinds(first) == {"main": [], "branch": ORDER[unit] * 2, "shortcut": [], "post": []}
    last_kinds = kinds(last, then=model.final)
    assert last_kinds["shortcut"] == ["conv", "norm"]  # a stride-2 projection
    assert last_kinds["post"] == FINAL[unit]  # the last-unit rule
    assert "identity" in sequence_text(first) and "→" in sequence_text(first)


def test_baseline_and_preact_blocks():
    block = residual_blocks(_model("baseline"))[1]
    assert kinds(block) == {
        "main": [],
        "branch": ["conv", "norm", "act", "conv", "norm"],
        "shortcut": ["conv", "norm"],
        "post": ["act"],
    }
    preact = residual_blocks(build_model("resnet_cifar", 10, **TINY, preact=True))[1]
    assert kinds(preact)["main"] == ["norm", "act"]  # shared by branch and shortcut
    text = sequence_text(preact)
    assert text.startswith("before: BN → ReLU | branch: Conv 3×3 /2 4→8")


def test_labels_come_from_the_modules():
    assert layer_style(nn.Conv2d(3, 5, 3, stride=2)) == ("conv", "Conv 3×3 /2<br>3→5")
    assert layer_style(ICLayer(4, drop_prob=0.1)) == ("ic", "IC<br>BN + drop 0.1")
    assert layer_style(CReLU()) == ("act", "CReLU")
    assert layer_style(nn.Tanh()) == ("other", "Tanh")
    rows = layer_table(nn.Sequential(nn.Linear(4, 3), nn.Identity(), nn.ReLU()))
    assert [r["layer"] for r in rows] == ["FC 4→3", "ReLU"]  # identities are left out
    assert [r["module"] for r in rows] == ["0", "2"]


def test_nested_blocks_are_single_boxes_and_plain_models_are_sequences():
    model = _model("relu-ic-conv")
    assert not is_residual(model) and is_residual(residual_blocks(model)[0])
    boxes = layer_sequence(model)
    assert [b.kind for b in boxes].count("block") == len(residual_blocks(model))
    assert {b.path for b in boxes} == {"main"}


def test_registered_styles_take_precedence():
    class Gate(nn.Module):
        def forward(self, x):
            return x

    assert layer_style(Gate())[0] == "other"
    register_layer_style(Gate, "dropout", lambda m: "gate")
    assert layer_style(Gate()) == ("dropout", "gate")
    with pytest.raises(ValueError, match="kind must be one of"):
        register_layer_style(Gate, "laser", lambda m: "x")
    with pytest.raises(TypeError, match="nn.Module class"):
        register_layer_style(int, "conv", lambda m: "x")


def test_unit_diagram_draws_one_box_per_layer():
    models = {u: _model(u) for u in ["baseline", *ORDER]}
    rows = unit_rows(models)
    rows.update({f"{u} last": spec for u, spec in unit_rows(models, last=True).items()})
    figure = unit_diagram(rows, title="units")
    rects = [s for s in figure.layout.shapes if s.type == "rect"]
    expected = sum(len(layer_sequence(b, then=t)) for b, t in rows.values())
    assert len(rects) == expected
    plus = [a for a in figure.layout.annotations if a.text == "<b>+</b>"]
    assert len(plus) == len(rows)  # every row is a residual block
    assert {t.name for t in figure.data} <= set(KIND_COLORS)
    with pytest.raises(ValueError, match="at least one row"):
        unit_diagram({})
    with pytest.raises(ValueError, match="no residual blocks"):
        unit_rows({"mlp": nn.Sequential(nn.Linear(2, 2))})


def test_imagenet_blocks_use_downsample_as_the_shortcut():
    model = build_model(
        "resnet_imagenet", 10, depth=18, width_multiplier=0.0625, norm="ic", unit="relu-ic-conv"
    )
    block = residual_blocks(model)[2]  # first block of stage 2: a projection
    assert kinds(block)["shortcut"] == ["conv", "norm"]
    assert kinds(block)["branch"] == ORDER["relu-ic-conv"] * 2
