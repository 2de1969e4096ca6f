"""ImageNet ResNets (He 2016a, torchvision layout): parameter counts, CReLU fan-in, stems, norms."""

import math

import pytest
import torch
import torch.nn as nn

import normbook.models.resnet_imagenet  # noqa: F401  (registers the family)
from normbook.layers import (
    CReLU,
    DecorrelatedBatchNorm,
    LastBatchNorm,
    NormPropConv2d,
    ResidualScale,
)
from normbook.models.hooks import block_io, last_activation
from normbook.models.policy import ScalarBias, count_parameters, residual_blocks
from normbook.models.registry import build_model, list_models
from normbook.models.resnet_imagenet import ACTS, LAYOUTS, NORMS, STAGE_WIDTHS

TINY = {"depth": 18, "width_multiplier": 0.125, "stem": "cifar"}
TINY_B = {"depth": 50, "width_multiplier": 0.125, "stem": "cifar"}
X = torch.randn(4, 3, 16, 16)


def _build(num_classes: int = 10, **options) -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet_imagenet", num_classes, **options)


def test_resnet_imagenet_is_registered():
    assert "resnet_imagenet" in list_models()


@pytest.mark.parametrize(
    ("depth", "millions"), [(18, 11.69), (34, 21.80), (50, 25.56), (101, 44.55)]
)
def test_imagenet_parameter_counts_match_the_literature(depth, millions):
    count = count_parameters(_build(1000, depth=depth))
    assert abs(count / 1e6 - millions) / millions < 0.02, count


def test_cifar_stem_parameter_counts():
    # MimicNorm's CIFAR-100 ResNet18/50 (pytorch-cifar100 layout: 11.22M / 23.7M)
    for depth, millions in ((18, 11.22), (50, 23.7)):
        count = count_parameters(_build(100, depth=depth, stem="cifar"))
        assert abs(count / 1e6 - millions) / millions < 0.02, count
    # the CIFAR stem differs from the ImageNet one only in the first conv's kernel: 3·64·(49 − 9)
    cifar = count_parameters(_build(100, depth=18, stem="cifar"))
    assert count_parameters(_build(100, depth=18)) - cifar == 3 * 64 * (49 - 9)


def _crelu_extra_weights(depth: int, width_multiplier: float) -> int:
    """Weights CReLU adds: each conv after an in-branch CReLU sees twice its input channels."""
    bottleneck, blocks = LAYOUTS[depth]
    extra = 0
    for base, n in zip(STAGE_WIDTHS, blocks, strict=True):
        width = round(base * width_multiplier)
        if bottleneck:  # conv2 (3×3, width→width) and conv3 (1×1, width→4·width) double fan-in
            extra += n * (width * width * 9 + width * 4 * width)
        else:  # conv2 (3×3, width→width) doubles its fan-in
            extra += n * width * width * 9
    return extra


@pytest.mark.parametrize("depth", [18, 50])
def test_crelu_parameter_count_follows_the_doubled_fan_in(depth):
    relu = _build(100, depth=depth, width_multiplier=0.5)
    crelu = _build(100, depth=depth, width_multiplier=0.5, act="crelu")
    extra = _crelu_extra_weights(depth, 0.5)
    assert count_parameters(crelu) - count_parameters(relu) == extra
    for block in residual_blocks(crelu):
        convs = block.branch_weights()
        for before, after in zip(convs[:-1], convs[1:], strict=True):
            assert after.in_channels == 2 * before.out_channels
        crelus = [m for m in block.branch.modules() if isinstance(m, CReLU)]
        assert len(crelus) == len(convs) - 1  # inside the branch only
        assert isinstance(block.out_act, nn.ReLU)  # after the addition: ReLU, width kept
    assert isinstance(crelu.stem.act1, nn.ReLU)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("norm", NORMS)
def test_every_norm_and_act_forward_backward(norm, act):
    model = _build(**TINY, norm=norm, act=act)
    out = model(X)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]


@pytest.mark.parametrize("norm", NORMS)
def test_bottleneck_forward_backward(norm):
    model = _build(**TINY_B, norm=norm, act="crelu" if norm != "fixup" else "relu")
    out = model(X)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]


def test_imagenet_stem_and_v15_bottleneck_layout():
    model = _build(depth=50, width_multiplier=0.125)
    stem = list(model.stem.children())
    assert [type(m) for m in stem] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d]
    assert stem[0].kernel_size == (7, 7) and stem[0].stride == (2, 2)
    assert stem[3].kernel_size == 3 and stem[3].stride == 2
    cifar = _build(**TINY)
    assert [type(m) for m in cifar.stem.children()] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert cifar.stem.conv1.kernel_size == (3, 3) and cifar.stem.conv1.stride == (1, 1)
    first = model.layer2[0]  # torchvision v1.5: the stride sits in the 3×3 conv
    conv1, conv2, conv3 = first.branch_weights()
    assert conv1.stride == (1, 1) and conv2.stride == (2, 2) and conv2.kernel_size == (3, 3)
    assert conv3.out_channels == 4 * conv1.out_channels
    assert [type(m) for m in first.downsample.children()] == [nn.Conv2d, nn.BatchNorm2d]
    assert first.downsample.conv.kernel_size == (1, 1) and first.downsample.conv.stride == (2, 2)
    assert isinstance(model.layer1[1].downsample, nn.Identity)
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]


@pytest.mark.parametrize(("tiny", "blocks", "channels"), [(TINY, 8, 64), (TINY_B, 16, 256)])
def test_block_io_and_last_activation(tiny, blocks, channels):
    model = _build(**tiny).eval()
    pairs = block_io(model, X)
    assert len(pairs) == blocks == len(residual_blocks(model))
    for (inp, out), block in zip(pairs, residual_blocks(model), strict=True):
        assert inp.shape[1] == block.in_channels and out.shape[1] == block.out_channels
    final = last_activation(model, X)
    assert model.final_act is residual_blocks(model)[-1].out_act
    assert final.shape == (4, channels, 2, 2) and (final >= 0).all()
    assert torch.equal(final, pairs[-1][1])


@pytest.mark.parametrize("norm", ["dbn-l1", "dbn-scale-l1"])
def test_l1_norms_put_one_dbn_on_the_stem(norm):
    model = _build(**TINY, norm=norm)
    dbns = [m for m in model.modules() if isinstance(m, DecorrelatedBatchNorm)]
    assert len(dbns) == 1 and dbns[0] is model.stem.norm1
    assert dbns[0].affine == (norm == "dbn-scale-l1")
    assert all(isinstance(b.branch.norm1, nn.BatchNorm2d) for b in residual_blocks(model))


def test_mimic_scales_downsample_and_has_only_the_last_batchnorm():
    model = _build(**TINY_B, norm="mimic")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 1 and isinstance(norms[0], LastBatchNorm)
    assert model.head_norm is norms[0]
    for k, block in enumerate(residual_blocks(model), start=1):
        assert block.branch.scale1.scale.item() == pytest.approx(1.2**3 / k)  # 1.2^L/k, global k
    scaled = [b for b in residual_blocks(model) if not isinstance(b.downsample, nn.Identity)]
    assert len(scaled) == 4
    for block in scaled:  # "scaled downsample": 1×1 conv (with bias) → learnable scalar 1.2
        assert [type(m) for m in block.downsample.children()] == [nn.Conv2d, ResidualScale]
        assert block.downsample.conv.bias is not None
        assert block.downsample.scale.scale.item() == pytest.approx(1.2)
    basic = _build(**TINY, norm="mimic")
    assert residual_blocks(basic)[2].branch.scale1.scale.item() == pytest.approx(1.2**2 / 3)


def test_normprop_convs_with_bn_on_the_projection():
    model = _build(**TINY, norm="normprop3")
    block = model.layer2[0]
    assert all(isinstance(c, NormPropConv2d) for c in block.branch_weights())
    assert isinstance(block.downsample.norm, nn.BatchNorm2d)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.branch.modules())


def test_fixup_biases_and_zero_branch_ends():
    model = _build(**TINY_B, norm="fixup")
    assert isinstance(model.fc_bias, ScalarBias)
    for block in residual_blocks(model):
        biases = [m for m in block.branch.modules() if isinstance(m, ScalarBias)]
        assert len(biases) == 3 + 2 + 1  # before each conv, each inner act, after the scale
        assert torch.count_nonzero(block.branch_weights()[-1].weight) == 0
        first = block.branch_weights()[0].weight
        he_std = math.sqrt(2 / (first.shape[0] * first[0, 0].numel()))  # fan_out
        assert first.std().item() < he_std  # scaled down by L^(-1/(2m-2))
    assert torch.count_nonzero(model.fc.weight) == 0


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"depth": 20}, "depth must be one of 18, 34, 50, 101"),
        ({"depth": 18.0}, "depth"),
        ({"depth": True}, "depth"),
        ({"stem": "tiny"}, "stem must be one of imagenet, cifar"),
        ({"width_multiplier": 0}, "width_multiplier"),
        ({"norm": "ic", "unit": "baseline"}, "norm"),  # IC layers need an IC unit (IC-F5)
        ({"norm": "normprop1"}, "norm"),
        ({"act": "tanh"}, "act"),
    ],
)
def test_rejects_invalid_options(options, word):
    with pytest.raises(ValueError, match=f"resnet_imagenet: {word}"):
        _build(**{**TINY, **options})
