"""Wide ResNets (DBN-T2): WRN-d-k layout, parameter counts, pre-activation blocks, dropout,
the DBN-(scale-)L1 stem module, MimicNorm/Fixup pieces and invalid options."""

import pytest
import torch
import torch.nn as nn

import normbook.models.wrn  # noqa: F401  (registers the family)
from normbook.layers import CReLU, DecorrelatedBatchNorm, LastBatchNorm, ResidualScale
from normbook.models.hooks import block_io, last_activation
from normbook.models.policy import ScalarBias, count_parameters, residual_blocks
from normbook.models.registry import build_model, list_models
from normbook.models.wrn import WRN_ACTS, WRN_NORMS

WRN16_1 = {"depth": 16, "widen_factor": 1}
KINDS = {
    nn.Conv2d: "conv",
    nn.BatchNorm2d: "norm",
    DecorrelatedBatchNorm: "norm",
    nn.ReLU: "act",
    nn.ELU: "act",
    CReLU: "act",
    nn.Dropout: "dropout",
    ScalarBias: "bias",
    ResidualScale: "scale",
}


def _build(**options) -> nn.Module:
    torch.manual_seed(0)
    return build_model("wrn", 10, **{**WRN16_1, **options})


def _kinds(seq: nn.Module) -> list[str]:
    return [KINDS.get(type(m), type(m).__name__) for m in seq.children()]


def _wrn_layout(depth: int, k: int, num_classes: int) -> int:
    """Zagoruyko & Komodakis's WRN-d-k with BN, bias-free convs and 1×1 projections."""
    n = (depth - 4) // 6
    total, channels = 27 * 16, 16  # stem conv
    for width in (16 * k, 32 * k, 64 * k):
        for i in range(n):
            total += 2 * channels + 9 * channels * width + 2 * width + 9 * width * width
            if i == 0:
                total += channels * width  # 1×1 projection
            channels = width
    return total + 2 * channels + channels * num_classes + num_classes


def test_wrn_is_registered():
    assert "wrn" in list_models()


@pytest.mark.parametrize(
    ("depth", "literature"), [(28, 36.5e6), (40, 55.8e6)], ids=["WRN-28-10", "WRN-40-10"]
)
def test_parameter_counts(depth, literature):
    model = build_model("wrn", 10, depth=depth, widen_factor=10)  # counting only, no forward
    assert count_parameters(model) == _wrn_layout(depth, 10, 10)
    assert abs(count_parameters(model) / literature - 1) < 0.02
    if depth == 28:
        assert count_parameters(model) == 36_479_194  # the official WRN code's count


@pytest.mark.parametrize("norm", WRN_NORMS)
def test_every_norm_forward_backward(norm):
    model = _build(norm=norm)
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


@pytest.mark.parametrize("act", WRN_ACTS)
@pytest.mark.parametrize("norm", ["bn", "dbn-scale-l1", "mimic", "fixup"])
def test_acts_forward_backward(norm, act):
    model = _build(depth=10, widen_factor=2, norm=norm, act=act)
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_block_layout_and_projections():
    model = build_model("wrn", 10, depth=16, widen_factor=4)
    assert [len(model.layer1), len(model.layer2), len(model.layer3)] == [2, 2, 2]
    first = model.layer1[0]  # 16 → 64 channels: the first norm → act is shared with the shortcut
    assert _kinds(first.preact) == ["norm", "act"]
    assert _kinds(first.branch) == ["conv", "norm", "act", "dropout", "conv"]
    assert isinstance(first.shortcut, nn.Conv2d) and first.shortcut.kernel_size == (1, 1)
    second = model.layer1[1]  # identity shortcut on the raw input, the branch pre-activates
    assert second.preact is None and isinstance(second.shortcut, nn.Identity)
    assert _kinds(second.branch) == ["norm", "act", "conv", "norm", "act", "dropout", "conv"]
    assert model.layer2[0].branch.conv1.stride == (2, 2) and model.layer2[0].shortcut.stride == (
        2,
        2,
    )
    assert [model.layer3[-1].out_channels, model.fc.in_features] == [256, 256]
    assert _kinds(model.final) == ["norm", "act"]
    assert isinstance(model.stem_norm, nn.Identity) and model.conv1.out_channels == 16
    assert all(c.bias is None for c in model.modules() if isinstance(c, nn.Conv2d))


def test_widen_factor_one_has_no_projection_in_stage_one():
    model = _build()
    assert model.layer1[0].preact is None and isinstance(model.layer1[0].shortcut, nn.Identity)
    assert model.layer2[0].preact is not None


@pytest.mark.parametrize("depth", [10, 16, 22])
def test_block_io_gives_one_pair_per_block(depth):
    model = _build(depth=depth).eval()
    n = (depth - 4) // 6
    pairs = block_io(model, torch.randn(2, 3, 32, 32))
    assert len(pairs) == 3 * n == len(residual_blocks(model))
    assert pairs[0][0].shape == (2, 16, 32, 32) and pairs[-1][1].shape == (2, 64, 8, 8)


def test_dropout_is_active_in_train_and_off_in_eval():
    model = _build()
    assert all(m.p == 0.3 for m in model.modules() if isinstance(m, nn.Dropout))
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 6
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        model.train()
        assert not torch.allclose(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))
    without = _build(dropout=0.0).train()
    assert not any(isinstance(m, nn.Dropout) for m in without.modules())
    with torch.no_grad():
        assert torch.allclose(without(x), without(x))


@pytest.mark.parametrize("norm", ["dbn-l1", "dbn-scale-l1"])
def test_l1_norms_put_one_dbn_before_the_first_block(norm):
    model = _build(norm=norm)
    dbns = [m for m in model.modules() if isinstance(m, DecorrelatedBatchNorm)]
    assert len(dbns) == 1 and model.stem_norm is dbns[0] and dbns[0].num_features == 16
    assert dbns[0].affine == (norm == "dbn-scale-l1")
    # the blocks keep every BN of the baseline (wr_DBN_scale_L1.lua)
    baseline = _build(norm="bn")
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == sum(isinstance(m, nn.BatchNorm2d) for m in baseline.modules()) == 13
    full = _build(norm="dbn")
    assert sum(isinstance(m, DecorrelatedBatchNorm) for m in full.modules()) == 13
    assert isinstance(full.stem_norm, nn.Identity)


def test_mimic_scales_and_last_bn():
    model = _build(norm="mimic")
    norms = [
        m
        for m in model.modules()
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, DecorrelatedBatchNorm))
    ]
    assert norms == [model.head_norm] and isinstance(model.head_norm, LastBatchNorm)
    scales = [b.branch.scale.scale.item() for b in residual_blocks(model)]
    assert scales == pytest.approx([1.2**2 / k for k in range(1, 7)])


def test_fixup_biases_and_zero_init():
    model = _build(norm="fixup")
    block = model.layer1[1]
    assert _kinds(block.branch) == [
        *("bias", "act", "bias", "conv", "bias", "act", "dropout", "bias", "conv", "scale"),
    ]
    for b in residual_blocks(model):
        assert torch.count_nonzero(b.branch_weights()[-1].weight) == 0
    assert torch.count_nonzero(model.fc.weight) == 0 and isinstance(model.fc_bias, ScalarBias)


def test_crelu_sits_between_the_convs_only():
    model = _build(act="crelu", widen_factor=2)
    for block in residual_blocks(model):
        assert isinstance(block.branch.act2, CReLU)
        assert block.branch.conv2.in_channels == 2 * block.branch.conv1.out_channels
        assert block.branch.conv2.out_channels == block.out_channels
    assert isinstance(model.layer1[0].preact.act1, nn.ReLU)
    assert isinstance(model.layer1[1].branch.act1, nn.ReLU)
    assert isinstance(model.final_act, nn.ReLU)


def test_final_act_is_the_activation_before_pooling():
    model = _build().eval()
    assert model.final_act is model.final.act
    out = last_activation(model, torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 64, 8, 8) and (out >= 0).all()


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"depth": 28 + 1}, "wrn: depth must be 6n\\+4"),
        ({"depth": 26}, "wrn: depth must be 6n\\+4"),
        ({"depth": 4}, "wrn: depth"),
        ({"widen_factor": 0}, "wrn: widen_factor"),
        ({"widen_factor": 2.5}, "wrn: widen_factor"),
        ({"dropout": 1.0}, "wrn: dropout"),
        ({"dropout": -0.1}, "wrn: dropout"),
        ({"norm": "ic"}, "wrn: norm must be one of"),
        ({"norm": "normprop2"}, "wrn: norm must be one of"),
        ({"act": "swish"}, "wrn: act must be one of"),
    ],
)
def test_rejects_invalid_options(options, word):
    with pytest.raises(ValueError, match=word):
        _build(**options)
