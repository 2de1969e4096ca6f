"""S-plain (DBN-F6): layout without shortcuts, norms, the depth rule and invalid options."""

import pytest
import torch
import torch.nn as nn

import normbook.models.splain  # noqa: F401  (registers the family)
from normbook.layers import DecorrelatedBatchNorm, LastBatchNorm
from normbook.models.hooks import last_activation
from normbook.models.policy import ResidualBlock, count_parameters
from normbook.models.registry import build_model, list_models
from normbook.models.splain import SPLAIN_ACTS, SPLAIN_NORMS

TINY = {"depth": 8, "width": 8}


def _build(**options) -> nn.Module:
    torch.manual_seed(0)
    return build_model("splain", 10, **{**TINY, **options})


def test_splain_is_registered():
    assert "splain" in list_models()


@pytest.mark.parametrize("act", SPLAIN_ACTS)
@pytest.mark.parametrize("norm", SPLAIN_NORMS)
def test_forward_backward(norm, act):
    model = _build(norm=norm, act=act)
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("depth", [8, 20, 32, 44])
def test_layout_is_the_resnet_skeleton_without_shortcuts(depth):
    model = build_model("splain", 10, depth=depth)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == depth  # 6n+2 weight layers
    assert all(c.out_channels == 48 and c.kernel_size == (3, 3) for c in convs)
    assert [c.stride for c in convs].count((2, 2)) == 2
    n = (depth - 2) // 6
    assert [len(model.layer1), len(model.layer2), len(model.layer3)] == [2 * n] * 3
    assert model.layer2[0].conv.stride == (2, 2) and model.layer3[0].conv.stride == (2, 2)
    assert not any(isinstance(m, ResidualBlock) for m in model.modules())
    kinds = [type(m) for m in model.layer1[0].children()]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]


def test_width_42_and_parameter_count():
    model = build_model("splain", 10, depth=20, width=42)
    assert model.fc.in_features == 42
    expected = 3 * 9 * 42 + 18 * 9 * 42 * 42 + 19 * 2 * 42 + 42 * 10 + 10
    assert count_parameters(model) == expected


def test_final_act_is_the_last_activation():
    model = _build().eval()
    assert model.final_act is model.layer3[-1].act
    out = last_activation(model, torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 8, 8, 8) and (out >= 0).all()


@pytest.mark.parametrize("norm", ["dbn-l1", "dbn-scale-l1"])
def test_l1_norms_whiten_only_the_stem(norm):
    model = _build(norm=norm)
    dbns = [m for m in model.modules() if isinstance(m, DecorrelatedBatchNorm)]
    assert len(dbns) == 1 and model.stem.norm is dbns[0]
    assert dbns[0].affine == (norm == "dbn-scale-l1")
    full = _build(norm="dbn")
    assert sum(isinstance(m, DecorrelatedBatchNorm) for m in full.modules()) == 7


def test_mimic_and_plain_have_no_hidden_norm():
    mimic = _build(norm="mimic")
    bns = [m for m in mimic.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns == [mimic.head_norm] and isinstance(mimic.head_norm, LastBatchNorm)
    plain = _build(norm="none")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in plain.modules())
    assert all(c.bias is not None for c in plain.modules() if isinstance(c, nn.Conv2d))


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"depth": 21}, "depth must be 6n\\+2"),
        ({"depth": 2}, "depth"),
        ({"width": 0}, "width"),
        ({"norm": "fixup"}, "norm must be one of"),
        ({"norm": "ic"}, "norm must be one of"),
        ({"act": "crelu"}, "act must be one of"),
    ],
)
def test_rejects_invalid_options(options, word):
    with pytest.raises(ValueError, match=word):
        _build(**options)
