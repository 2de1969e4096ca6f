"""VGG (DBN-F5 VGG-A; MimicNorm VGG11/16 on CIFAR and ImageNet): layouts, heads, norm positions,
parameter counts against the literature, norms and invalid options."""

import math

import pytest
import torch
import torch.nn as nn

import normbook.models.vgg  # noqa: F401  (registers the family)
from normbook.layers import CReLU, DecorrelatedBatchNorm, LastBatchNorm, NormPropConv2d
from normbook.models.hooks import last_activation
from normbook.models.policy import ResidualBlock, count_parameters
from normbook.models.registry import build_model, list_models
from normbook.models.vgg import CONFIGS, HEADS, VARIANTS, VGG_ACTS, VGG_NORMS

TINY = {"variant": "A", "width_multiplier": 0.0625}
KINDS = {
    nn.Conv2d: "conv",
    NormPropConv2d: "conv",
    nn.BatchNorm2d: "norm",
    DecorrelatedBatchNorm: "norm",
    nn.ReLU: "act",
    nn.ELU: "act",
    CReLU: "act",
    nn.MaxPool2d: "pool",
}
BN_TYPES = (nn.modules.batchnorm._BatchNorm, DecorrelatedBatchNorm)


def _build(num_classes: int = 10, **options) -> nn.Module:
    torch.manual_seed(0)
    return build_model("vgg", num_classes, **{**TINY, **options})


def _kinds(seq: nn.Module) -> list[str]:
    return [KINDS.get(type(m), type(m).__name__) for m in seq.children()]


def _train_step(model: nn.Module, x: torch.Tensor, classes: int = 10) -> None:
    out = model(x)
    assert out.shape == (x.shape[0], classes) and torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


def test_vgg_is_registered():
    assert "vgg" in list_models()


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_and_head_forward_backward(variant, head):
    model = _build(variant=variant, head=head)
    size = 64 if head == "imagenet" else 32
    _train_step(model, torch.randn(4, 3, size, size))


@pytest.mark.parametrize("act", VGG_ACTS)
@pytest.mark.parametrize("norm", VGG_NORMS)
def test_every_norm_and_act_forward_backward(norm, act):
    _train_step(_build(norm=norm, act=act), torch.randn(4, 3, 32, 32))


@pytest.mark.parametrize("position", ["after_act", "before_conv"])
@pytest.mark.parametrize("norm", ["bn", "dbn", "mimic"])
def test_norm_positions_forward_backward(position, norm):
    _train_step(_build(norm=norm, norm_position=position, act="crelu"), torch.randn(4, 3, 32, 32))


@pytest.mark.parametrize("variant", VARIANTS)
def test_conv_layout_and_five_pools(variant):
    model = build_model("vgg", 10, variant=variant, head="linear")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    widths = [w for w in CONFIGS[variant] if w != "M"]
    assert [c.out_channels for c in convs] == widths
    assert len(convs) == {"A": 8, "11": 8, "16": 13}[variant]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert _kinds(model.features).count("pool") == 5
    assert model.features(torch.zeros(1, 3, 32, 32)).shape == (1, 512, 1, 1)


def test_default_heads_follow_the_papers():
    vgg_a = build_model("vgg", 10, variant="A")  # DBN-F5: FC-512 → BN → ReLU → classifier
    assert _kinds(vgg_a.classifier) == ["Linear", "BatchNorm1d", "act", "Linear"]
    assert vgg_a.classifier.fc1.out_features == 512 and vgg_a.classifier.fc.in_features == 512
    for variant in ("11", "16"):  # MimicNorm's CIFAR code: 512 → 4096 → 4096 → classes
        model = _build(num_classes=100, variant=variant, width_multiplier=1.0)
        assert _kinds(model.classifier) == ["Linear", "act", "Dropout"] * 2 + ["Linear"]
        assert [m.out_features for m in model.classifier if isinstance(m, nn.Linear)] == [
            4096,
            4096,
            100,
        ]
        assert all(m.p == 0.5 for m in model.classifier if isinstance(m, nn.Dropout))
        assert not any(isinstance(m, BN_TYPES) for m in model.classifier)
    assert not any(isinstance(m, nn.Dropout) for m in _build(variant="16", dropout=0).modules())


@pytest.mark.parametrize(
    ("position", "order"),
    [
        ("before_act", ["conv", "norm", "act", "pool"]),
        ("after_act", ["conv", "act", "norm", "pool"]),
        ("before_conv", ["norm", "conv", "act", "pool"]),
    ],
)
def test_norm_position_orders_each_unit(position, order):
    model = _build(norm_position=position)
    kinds = _kinds(model.features)
    assert kinds[:4] == order
    assert kinds.count("norm") == kinds.count("conv") == 8
    first_norm = next(m for m in model.features if isinstance(m, nn.BatchNorm2d))
    # Fig. 5d's official code normalises each conv's input: the RGB image first
    assert first_norm.num_features == (3 if position == "before_conv" else 4)
    # the FC-512 layer keeps Linear → norm → act in every position (official VGG-A files)
    assert _kinds(model.classifier)[:3] == ["Linear", "BatchNorm1d", "act"]


def _cifar_vgg16_bn_layout(num_classes: int, head: str) -> int:
    """VGG16 (configuration D) with BN, convs without bias (BN's β replaces it), CIFAR head."""
    widths = [w for w in CONFIGS["16"] if w != "M"]
    total, channels = 0, 3
    for width in widths:
        total += 9 * channels * width + 2 * width
        channels = width
    if head == "linear":
        return total + 512 * num_classes + num_classes
    return total + (512 + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * num_classes


def test_parameter_counts_match_layout_and_literature():
    # VGG16 on ImageNet without BN: Simonyan & Zisserman's 138M; torchvision's vgg16 138,357,544
    imagenet = build_model("vgg", 1000, variant="16", head="imagenet", norm="none")
    assert count_parameters(imagenet) == 138_357_544
    assert abs(count_parameters(imagenet) / 138.36e6 - 1) < 0.02
    # CIFAR-10 VGG16 with BN and one linear classifier: the common 14.7M (kuangliu/pytorch-cifar
    # reports 14,728,266, whose convs also carry a bias before BN: 4,224 more)
    linear = build_model("vgg", 10, variant="16", head="linear")
    assert count_parameters(linear) == _cifar_vgg16_bn_layout(10, "linear") == 14_724_042
    assert abs(count_parameters(linear) / 14.728266e6 - 1) < 0.02
    # MimicNorm's CIFAR-100 VGG16 (pytorch-cifar100 layout, which reports 34.0M)
    fc4096 = build_model("vgg", 100, variant="16")
    assert count_parameters(fc4096) == _cifar_vgg16_bn_layout(100, "fc4096")
    assert abs(count_parameters(fc4096) / 34.0e6 - 1) < 0.02


def test_imagenet_head_pools_to_seven_by_seven():
    model = _build(variant="16", head="imagenet", dropout=0.0).eval()
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)
    assert model.classifier.fc1.in_features == 32 * 7 * 7
    assert model(torch.randn(1, 3, 224, 224)).shape == (1, 10)


def test_mimic_has_only_the_last_bn_and_vgg_init():
    model = _build(norm="mimic")
    norms = [m for m in model.modules() if isinstance(m, BN_TYPES)]
    assert norms == [model.head_norm] and isinstance(model.head_norm, LastBatchNorm)
    torch.manual_seed(0)
    wide = build_model("vgg", 10, variant="16", width_multiplier=0.25, norm="mimic")
    conv = wide.features.conv4  # 32 → 32 channels: 9,216 weights
    fan_in = conv.weight[0].numel()
    std = conv.weight.std().item()
    assert std == pytest.approx(math.sqrt(2.8 * (1 - 1 / fan_in) / fan_in), rel=0.04)
    assert conv.weight.flatten(1).mean(dim=1).abs().max() < 1e-6  # weight mean at init
    assert not any(isinstance(m, ResidualBlock) for m in wide.modules())


@pytest.mark.parametrize("norm", ["dbn-l1", "dbn-scale-l1"])
def test_l1_norms_whiten_only_the_first_conv_unit(norm):
    model = _build(norm=norm)
    dbns = [m for m in model.modules() if isinstance(m, DecorrelatedBatchNorm)]
    assert len(dbns) == 1 and model.features.norm1 is dbns[0]
    assert dbns[0].affine == (norm == "dbn-scale-l1")
    assert isinstance(model.classifier.norm1, nn.BatchNorm1d)


def test_dbn_replaces_every_norm():
    model = _build(norm="dbn")
    assert sum(isinstance(m, DecorrelatedBatchNorm) for m in model.modules()) == 9  # 8 conv + FC
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_plain_norms_and_biases():
    plain = _build(norm="none")
    assert not any(isinstance(m, BN_TYPES) for m in plain.modules())
    assert all(m.bias is not None for m in plain.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    nobias = _build(norm="none-nobias")
    assert all(m.bias is None for m in nobias.features if isinstance(m, nn.Conv2d))


def test_crelu_doubles_the_next_fan_in():
    model = _build(act="crelu", variant="16", head="fc4096")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    for prev, conv in zip(convs, convs[1:], strict=False):
        assert conv.in_channels == 2 * prev.out_channels
    assert model.classifier.fc1.in_features == 2 * convs[-1].out_channels
    assert model.classifier.fc2.in_features == 2 * model.classifier.fc1.out_features


@pytest.mark.parametrize(("head", "shape"), [("fc512", (2, 32)), ("linear", (2, 32, 2, 2))])
def test_final_act_is_the_last_activation_before_the_classifier(head, shape):
    model = _build(head=head).eval()
    acts = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert model.final_act is acts[-1]
    out = last_activation(model, torch.randn(2, 3, 32, 32))
    assert out.shape == shape and (out >= 0).all()


def test_int_variant_and_width_multiplier():
    model = build_model("vgg", 10, variant=16, width_multiplier=0.5, head="fc512")
    assert model.variant == "16"
    assert model.features.conv1.out_channels == 32 and model.classifier.fc1.out_features == 256


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"variant": "19"}, "vgg: variant must be one of"),
        ({"variant": "B"}, "variant"),
        ({"head": "resnet"}, "vgg: head must be one of"),
        ({"norm_position": "after_pool"}, "vgg: norm_position"),
        ({"width_multiplier": 0}, "width_multiplier"),
        ({"dropout": 1.0}, "vgg: dropout"),
        ({"dropout": True}, "dropout"),
        ({"norm": "fixup"}, "vgg: norm must be one of"),
        ({"norm": "ic"}, "norm must be one of"),
        ({"norm": "normprop1"}, "norm must be one of"),
        ({"act": "swish"}, "vgg: act must be one of"),
        ({"norm": "none", "group_size": 4}, "vgg: norm='none' has no normalization layer"),
    ],
)
def test_rejects_invalid_options(options, word):
    with pytest.raises(ValueError, match=word):
        _build(**options)


def test_cifar_heads_reject_imagenet_sized_inputs():
    with pytest.raises(ValueError, match="vgg: head='fc512' expects 32×32"):
        _build()(torch.randn(2, 3, 64, 64))
