"""CIFAR ResNet family: IC unit orders (IC-F3), CReLU blocks (NP-F1), parameter counts, options."""

import pytest
import torch
import torch.nn as nn

import normbook.models.resnet_cifar  # noqa: F401  (registers the family)
from normbook.layers import (
    CReLU,
    DecorrelatedBatchNorm,
    ICLayer,
    LastBatchNorm,
    NormPropConv2d,
    ResidualScale,
)
from normbook.models.hooks import block_io, last_activation
from normbook.models.policy import ScalarBias, count_parameters, residual_blocks
from normbook.models.registry import build_model, list_models
from normbook.models.resnet_cifar import IC_UNITS, UNITS

TINY = {"depth": 8, "widths": (4, 8, 8)}
TINY_B = {"depth": 11, "widths": (4, 8, 8), "bottleneck": True}

KINDS = {nn.Conv2d: "conv", ICLayer: "ic", nn.BatchNorm2d: "norm", nn.ReLU: "act", CReLU: "act"}


def _kinds(seq: nn.Module) -> list[str]:
    return [KINDS.get(type(m), type(m).__name__) for m in seq.children()]


def _build(**options) -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet_cifar", 10, **options)


def _ic(unit: str) -> dict:
    return {"norm": "ic", "unit": unit} if unit in IC_UNITS else {}


def test_resnet_cifar_is_registered():
    assert "resnet_cifar" in list_models()


@pytest.mark.parametrize("tiny", [TINY, TINY_B], ids=["basic", "bottleneck"])
@pytest.mark.parametrize("unit", UNITS)
def test_every_unit_forward_backward(unit, tiny):
    model = _build(**tiny, **_ic(unit))
    x = torch.randn(4, 3, 32, 32)
    out = model(x)
    assert out.shape == (4, 10)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize(
    "options",
    [
        {"preact": True},
        {"preact": True, **TINY_B},
        {"preact": True, "act": "crelu"},
        {"preact": True, "norm": "fixup"},
        {"act": "crelu", **TINY_B, "norm": "normprop2"},
        {"act": "crelu", "norm": "ic", "unit": "ic-conv-relu"},
        {"act": "crelu", "norm": "ic", "unit": "conv-relu-ic", **TINY_B},
        {"width_multiplier": 1.5},
    ],
)
def test_other_variants_forward_backward(options):
    model = _build(**{**TINY, **options})
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


# branch order per conv (IC-F3): the IC layer takes BN's place and precedes its weight layer in ①②
BRANCH = {
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


@pytest.mark.parametrize("bottleneck", [False, True])
@pytest.mark.parametrize("unit", IC_UNITS)
def test_ic_unit_module_order_and_last_unit_rule(unit, bottleneck):
    tiny = TINY_B if bottleneck else TINY
    model = _build(**tiny, norm="ic", unit=unit)
    convs = 3 if bottleneck else 2
    for block in residual_blocks(model):
        assert _kinds(block.branch) == BRANCH[unit] * convs
        assert block.out_act is None  # clean identity path: nothing after the addition
        assert not any(isinstance(m, nn.BatchNorm2d) for m in block.branch.modules())
    if unit != "conv-relu-ic":  # ① and ②: every branch conv directly follows an IC layer
        for block in residual_blocks(model):
            kinds = _kinds(block.branch)
            assert all(kinds[i - 1] == "ic" for i, k in enumerate(kinds) if k == "conv")
    assert _kinds(model.stem) == STEM[unit]
    assert _kinds(model.final) == FINAL[unit]  # ①: extra ReLU + IC; ②: extra IC; ③: nothing
    if unit == "relu-ic-conv":
        assert model.final_act is model.final[0]
    else:
        assert (
            model.final_act
            is residual_blocks(model)[-1].branch[-1 if unit != "conv-relu-ic" else -2]
        )


def test_baseline_and_preact_module_order():
    post = _build(**TINY)
    block = residual_blocks(post)[0]
    assert _kinds(post.stem) == ["conv", "norm", "act"]
    assert _kinds(block.branch) == ["conv", "norm", "act", "conv", "norm"]
    assert isinstance(block.out_act, nn.ReLU)
    assert post.final_act is residual_blocks(post)[-1].out_act
    pre = _build(**TINY, preact=True)
    blocks = residual_blocks(pre)
    assert _kinds(pre.stem) == ["conv"]
    assert _kinds(blocks[0].branch) == ["norm", "act", "conv", "norm", "act", "conv"]
    # a projection block shares its first BN-ReLU with the shortcut (He 2016b code)
    assert _kinds(blocks[1].preact) == ["norm", "act"]
    assert _kinds(blocks[1].branch) == ["conv", "norm", "act", "conv"]
    assert _kinds(pre.final) == ["norm", "act"] and pre.final_act is pre.final[1]
    out = last_activation(pre, torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 8, 8, 8) and (out >= 0).all()


@pytest.mark.parametrize("unit", UNITS)
def test_ic_units_keep_the_baseline_parameter_count(unit):
    # IC paper Sec. 4.1: the IC layers' scale/shift keep the learnable parameter count unchanged
    for tiny in ({"depth": 20}, {"depth": 29, "bottleneck": True}):
        assert count_parameters(_build(**tiny, **_ic(unit))) == count_parameters(_build(**tiny))


@pytest.mark.parametrize("unit", UNITS)
def test_crelu_doubles_the_next_conv_and_keeps_block_widths(unit):
    x = torch.randn(2, 3, 32, 32)
    for tiny in (TINY, TINY_B):
        relu = _build(**tiny, **_ic(unit)).eval()
        crelu = _build(**tiny, **_ic(unit), act="crelu").eval()
        for block in residual_blocks(crelu):
            convs = block.branch_weights()
            for before, after in zip(convs[:-1], convs[1:], strict=True):
                assert after.in_channels == 2 * before.out_channels
            assert sum(isinstance(m, CReLU) for m in block.branch) == len(convs) - 1
            if block.out_act is not None:
                assert type(block.out_act) is nn.ReLU  # the activation after the addition
        assert not any(isinstance(m, CReLU) for m in crelu.stem.modules())
        assert not any(isinstance(m, CReLU) for m in crelu.final.modules())
        shapes = [(i.shape, o.shape) for i, o in block_io(relu, x)]
        assert [(i.shape, o.shape) for i, o in block_io(crelu, x)] == shapes
        assert crelu.fc.in_features == relu.fc.in_features


@pytest.mark.parametrize(("options", "blocks"), [({"depth": 14}, 6), ({**TINY_B, "depth": 20}, 6)])
def test_block_io_gives_one_pair_per_block(options, blocks):
    model = _build(**{"widths": (4, 8, 8), **options}).eval()
    pairs = block_io(model, torch.randn(2, 3, 32, 32))
    assert len(pairs) == blocks == len(residual_blocks(model))
    assert pairs[-1][1].shape[1] == model.fc.in_features


@pytest.mark.parametrize(
    ("options", "millions"),
    [
        ({"depth": 20}, 0.27),
        ({"depth": 32}, 0.46),
        ({"depth": 44}, 0.66),
        ({"depth": 56}, 0.85),
        ({"depth": 110}, 1.7),
        ({"depth": 164, "bottleneck": True}, 1.7),
        ({"depth": 164, "bottleneck": True, "preact": True}, 1.7),
    ],
)
def test_parameter_counts_match_the_literature(options, millions):
    # He et al. 2016a Table 6 (CIFAR-10) and 2016b Table 2 (ResNet-164)
    count = count_parameters(build_model("resnet_cifar", 10, **options))
    assert count == pytest.approx(millions * 1e6, rel=0.02)


def test_widths_options_follow_shang_table3():
    base = count_parameters(_build(depth=20))
    narrow = count_parameters(_build(depth=20, widths=(12, 24, 48), act="crelu"))
    assert _build(depth=20, widths=(32, 64, 128)).fc.in_features == 128
    assert _build(depth=20, width_multiplier=2).fc.in_features == 128
    # 12-24-48 with CReLU is size-matched to 16-32-64 with ReLU (NP-T3)
    assert narrow == pytest.approx(base, rel=0.15)


def test_dbn_scale_l1_replaces_only_the_stem_bn():
    model = _build(**TINY, norm="dbn-scale-l1")
    dbns = [m for m in model.modules() if isinstance(m, DecorrelatedBatchNorm)]
    assert len(dbns) == 1 and model.stem[1] is dbns[0] and dbns[0].affine
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 1
    full = _build(**TINY, norm="dbn")
    assert sum(isinstance(m, DecorrelatedBatchNorm) for m in full.modules()) == 1 + 2 * 3


def test_mimic_has_only_the_last_bn_and_residual_scales():
    model = _build(**TINY, norm="mimic")
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns == [model.head_norm] and isinstance(model.head_norm, LastBatchNorm)
    for k, block in enumerate(residual_blocks(model), start=1):
        scale = block.branch[-1]
        assert isinstance(scale, ResidualScale)
        assert scale.scale.item() == pytest.approx(1.2**2 / k)


def test_fixup_scalar_biases_precede_convs_and_activations():
    model = _build(**TINY, norm="fixup")
    for block in residual_blocks(model):
        kinds = _kinds(block.branch)
        assert kinds == [
            "ScalarBias", "conv", "ScalarBias", "act", "ScalarBias", "conv",
            "ResidualScale", "ScalarBias",
        ]  # fmt: skip
    assert isinstance(model.fc_bias, ScalarBias)


def test_normprop_uses_normprop_convs_and_bn_on_the_projection():
    model = _build(**TINY, norm="normprop2")
    for block in residual_blocks(model):
        assert all(isinstance(c, NormPropConv2d) for c in block.branch_weights())
    projections = [
        b.shortcut for b in residual_blocks(model) if not isinstance(b.shortcut, nn.Identity)
    ]
    assert len(projections) == 2
    assert all(isinstance(p.norm, nn.BatchNorm2d) for p in projections)
    assert not any(
        isinstance(m, nn.BatchNorm2d) for b in residual_blocks(model) for m in b.branch.modules()
    )
    plain = _build(**TINY, norm="none-nobias")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in plain.modules())


def test_drop_prob_reaches_the_ic_layers():
    model = _build(**TINY, norm="ic", drop_prob=0.1)
    ics = [m for m in model.modules() if isinstance(m, ICLayer)]
    assert ics and all(m.drop_prob == 0.1 for m in ics)


def test_ic_norm_defaults_to_unit_one():
    model = _build(**TINY, norm="ic")
    assert model.unit == "relu-ic-conv"


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"depth": 21}, "depth must be 6n\\+2"),
        ({"depth": 32, "bottleneck": True}, "depth must be 9n\\+2"),
        ({"depth": 2}, "depth"),
        ({"unit": "relu-ic-conv"}, "needs norm='ic'"),
        ({"norm": "ic", "unit": "baseline"}, "needs an IC unit"),
        ({"unit": "relu-conv-ic"}, "unit must be one of"),
        ({"norm": "ic", "unit": "ic-conv-relu", "preact": True}, "preact"),
        ({"act": "gelu"}, "act must be one of"),
        ({"norm": "layernorm"}, "norm must be one of"),
        ({"norm": "normprop1", "act": "crelu"}, "normprop1"),
        ({"widths": (16, 32)}, "widths"),
        ({"width_multiplier": 0}, "width_multiplier"),
        ({"bottleneck": "yes"}, "bottleneck"),
    ],
)
def test_rejects_invalid_options(options, word):
    with pytest.raises(ValueError, match=word):
        build_model("resnet_cifar", 10, **{"depth": 8, **options})


def test_misspelt_norm_keyword_is_not_swallowed():
    with pytest.raises(TypeError, match="drop_pro"):
        build_model("resnet_cifar", 10, depth=8, norm="bn", drop_pro=0.1)
