"""ImageNet ResNets with IC units (IC-F5): the resnet_cifar unit orders in resnet_imagenet."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from normbook.layers import ICLayer
from normbook.models import build_model, residual_blocks
from normbook.models.policy import count_parameters
from normbook.models.resnet_cifar import IC_UNITS
from normbook.viz.diagrams import kinds

TINY = {"depth": 18, "width_multiplier": 0.0625}
TINY_B = {"depth": 50, "width_multiplier": 0.0625, "stem": "cifar"}
ORDER = {
    "relu-ic-conv": ["act", "ic", "conv"],
    "ic-conv-relu": ["ic", "conv", "act"],
    "conv-relu-ic": ["conv", "act", "ic"],
}
STEM = {
    "relu-ic-conv": ["conv"],
    "ic-conv-relu": ["conv", "act"],
    "conv-relu-ic": ["conv", "act", "ic"],
}
FINAL = {"relu-ic-conv": ["act", "ic"], "ic-conv-relu": ["ic"], "conv-relu-ic": []}


def _build(**options) -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet_imagenet", 10, **options)


@pytest.mark.parametrize("tiny", [TINY, TINY_B], ids=["basic", "bottleneck"])
@pytest.mark.parametrize("unit", IC_UNITS)
def test_ic_units_order_forward_and_parameter_count(unit, tiny):
    model = _build(**tiny, norm="ic", unit=unit, drop_prob=0.1)
    convs = 3 if tiny is TINY_B else 2
    for block in residual_blocks(model):
        assert kinds(block)["branch"] == ORDER[unit] * convs
        assert block.out_act is None  # a clean identity path: nothing after the addition
    stem = kinds(model.stem)["main"]
    assert [k for k in stem if k != "pool"] == STEM[unit]
    assert kinds(model.final)["main"] == FINAL[unit]
    # IC Sec. 4.1: the IC layers' scale and shift keep the baseline's parameter count
    assert count_parameters(model) == count_parameters(_build(**tiny))
    assert all(m.drop_prob == 0.1 for m in model.modules() if isinstance(m, ICLayer))
    x = torch.randn(4, 3, 32, 32)
    out = model(x)
    assert out.shape == (4, 10)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.final_act in list(model.modules())


def test_defaults_and_the_baseline_are_unchanged():
    default = _build(**TINY)
    assert default.unit == "baseline" and len(default.final) == 0
    assert kinds(default.stem)["main"] == ["conv", "norm", "act", "pool"]
    assert default.final_act is residual_blocks(default)[-1].out_act
    explicit = _build(**TINY, unit="baseline")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(default.eval()(x), explicit.eval()(x))
    assert _build(**TINY, norm="ic").unit == "relu-ic-conv"  # the paper's unit for ImageNet
    assert count_parameters(build_model("resnet_imagenet", 1000, depth=50)) == 25_557_032


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unit": "relu-ic-conv"}, "IC unit with norm='ic'"),
        ({"norm": "ic", "unit": "baseline"}, "norm='ic' goes with an IC unit"),
        ({"unit": "preact"}, "unit must be one of"),
    ],
)
def test_rejects_mismatched_units(options, message):
    with pytest.raises(ValueError, match=message):
        _build(**TINY, **options)
