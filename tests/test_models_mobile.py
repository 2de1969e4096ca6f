"""Lightweight nets of MimicNorm (MN-T1, MN-T3): CIFAR SqueezeNet and ShuffleNet V2."""

import math

import pytest
import torch
import torch.nn as nn

import normbook.models.shufflenet  # noqa: F401  (registers the family)
import normbook.models.squeezenet  # noqa: F401  (registers the family)
from normbook.layers import LastBatchNorm, ResidualScale, weight_mean_
from normbook.models.hooks import last_activation
from normbook.models.policy import WEIGHT_MEAN_MIN_FAN_IN, count_parameters, training_callbacks
from normbook.models.registry import build_model, list_models
from normbook.models.shufflenet import NORMS as SHUFFLE_NORMS
from normbook.models.shufflenet import STAGE_CHANNELS, channel_shuffle
from normbook.models.squeezenet import BYPASS_FIRES, FIRE_CHANNELS, STEM_CHANNELS, Fire
from normbook.models.squeezenet import NORMS as SQUEEZE_NORMS


def _build(name: str, num_classes: int = 10, **options) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, num_classes, **options)


def _only_last_bn(model: nn.Module) -> bool:
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    return len(norms) == 1 and isinstance(norms[0], LastBatchNorm)


def _forward_backward(model: nn.Module, x: torch.Tensor, num_classes: int = 10) -> None:
    out = model(x)
    assert out.shape == (x.shape[0], num_classes) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]


def test_both_families_are_registered():
    assert {"squeezenet", "shufflenetv2"} <= set(list_models())


# -- SqueezeNet --------------------------------------------------------------------------------


def _squeezenet_count(num_classes: int, norm: str) -> int:
    """Parameters from the layer shapes: a conv has k²·in·out weights, a bias only without a norm
    after it (``none``), BN adds γ, β per channel (``bn``); conv10 (512→classes) has a bias."""
    per_channel = {"bn": 2, "none": 1, "mimic": 0}[norm]

    def conv(cin: int, cout: int, k: int) -> int:
        return k * k * cin * cout + per_channel * cout

    total = conv(3, STEM_CHANNELS, 3)
    for cin, cout, squeeze in FIRE_CHANNELS:
        total += conv(cin, squeeze, 1) + conv(squeeze, cout // 2, 1) + conv(squeeze, cout // 2, 3)
    return total + FIRE_CHANNELS[-1][1] * num_classes + num_classes


@pytest.mark.parametrize("norm", SQUEEZE_NORMS)
def test_squeezenet_parameter_count(norm):
    model = _build("squeezenet", 100, norm=norm)
    assert count_parameters(model) == _squeezenet_count(100, norm)
    if norm == "bn":  # pytorch-cifar100 (MimicNorm's layout) reports 0.78M
        assert abs(count_parameters(model) / 0.78e6 - 1) < 0.02


@pytest.mark.parametrize("bypass", [True, False])
@pytest.mark.parametrize("norm", SQUEEZE_NORMS)
def test_squeezenet_forward_backward(norm, bypass):
    _forward_backward(_build("squeezenet", norm=norm, bypass=bypass), torch.randn(4, 3, 32, 32))


def test_squeezenet_layout():
    model = _build("squeezenet")
    assert [type(m) for m in model.stem.children()] == [
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.ReLU,
        nn.MaxPool2d,
    ]
    assert model.stem.conv1.kernel_size == (3, 3) and model.stem.conv1.stride == (1, 1)
    fires = [getattr(model, f"fire{i}") for i in range(2, 10)]
    assert [f.bypass for f in fires] == [i in BYPASS_FIRES for i in range(2, 10)]
    plain = _build("squeezenet", bypass=False)
    assert not any(m.bypass for m in plain.modules() if isinstance(m, Fire))
    for fire, (cin, cout, squeeze) in zip(fires, FIRE_CHANNELS, strict=True):
        assert fire.squeeze.conv1.in_channels == cin and fire.squeeze.conv1.out_channels == squeeze
        assert fire.expand1x1.conv1.kernel_size == (1, 1)
        assert fire.expand3x3.conv1.kernel_size == (3, 3)
        assert fire.expand1x1.conv1.out_channels + fire.expand3x3.conv1.out_channels == cout
    assert [n for n, m in model.named_children() if isinstance(m, nn.MaxPool2d)] == [
        "pool4",
        "pool8",
    ]
    assert model.conv10.kernel_size == (1, 1) and model.conv10.bias is not None
    x = torch.randn(2, 3, 32, 32)
    final = last_activation(model.eval(), x)  # fire9's output: 512 × 4 × 4 on CIFAR
    assert model.final_act is model.fire9.expand_act
    assert final.shape == (2, 512, 4, 4) and (final >= 0).all()


def test_squeezenet_mimic():
    model = _build("squeezenet", norm="mimic")
    assert _only_last_bn(model) and isinstance(model.head_norm, LastBatchNorm)
    # weight mean reaches conv10 (a conv with fan-in 512), as in the official code
    assert model.conv10.weight.flatten(1).mean(dim=1).abs().max() < 1e-6
    assert training_callbacks(model)
    # official init N(0, 2.8 / (9·max(4, in))) for the RGB stem
    std = model.stem.conv1.weight.std().item()
    assert std == pytest.approx(math.sqrt(2.8 / 36), rel=0.05)
    squeeze = model.fire5.squeeze.conv1.weight  # 1×1, 256 → 32: N(0, 2.8/256) before the mean
    assert squeeze.std().item() == pytest.approx(math.sqrt(2.8 / 256), rel=0.05)


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"bypass": "yes"}, "bypass"),
        ({"norm": "dbn"}, "norm"),
        ({"act": "crelu"}, "act"),
        ({"depth": 18}, None),
    ],
)
def test_squeezenet_rejects_invalid_options(options, word):
    if word is None:  # an unknown option is a TypeError, never silently swallowed
        with pytest.raises(TypeError, match="depth"):
            _build("squeezenet", **options)
        return
    with pytest.raises(ValueError, match=f"squeezenet: {word}"):
        _build("squeezenet", **options)


# -- ShuffleNet V2 -----------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "millions"), [(0.5, 1.37), (1.0, 2.28)])
def test_shufflenet_parameter_counts_match_the_literature(width, millions):
    count = count_parameters(_build("shufflenetv2", 1000, width=width))
    assert abs(count / 1e6 - millions) / millions < 0.02, count


def test_shufflenet_widths_and_conv5():
    for width, channels in STAGE_CHANNELS.items():
        model = _build("shufflenetv2", 10, width=width, stem="cifar")
        outs = [getattr(model, f"stage{s}")[-1].out_channels for s in (2, 3, 4)]
        assert outs == list(channels[:3])
        assert model.conv5.conv.out_channels == (2048 if width == 2.0 else 1024)
        assert [len(getattr(model, f"stage{s}")) for s in (2, 3, 4)] == [4, 8, 4]


@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
@pytest.mark.parametrize("norm", SHUFFLE_NORMS)
def test_shufflenet_forward_backward(norm, stem):
    model = _build("shufflenetv2", width=0.5, stem=stem, norm=norm)
    size = 64 if stem == "imagenet" else 16  # both reach stage4 at 2×2
    _forward_backward(model, torch.randn(4, 3, size, size))


def test_shufflenet_stems_units_and_final_act():
    imagenet = _build("shufflenetv2", width=0.5)
    kinds = [type(m) for m in imagenet.stem.children()]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d]
    assert imagenet.stem.conv.stride == (2, 2)
    cifar = _build("shufflenetv2", width=0.5, stem="cifar")
    assert [type(m) for m in cifar.stem.children()] == kinds[:3]
    assert cifar.stem.conv.stride == (1, 1) and cifar.stem.conv.kernel_size == (3, 3)
    down, unit = cifar.stage3[0], cifar.stage3[1]
    assert down.branch1.dwconv.groups == down.in_channels == 48
    assert down.branch1.dwconv.stride == (2, 2) and down.branch2.dwconv.stride == (2, 2)
    assert isinstance(unit.branch1, nn.Identity)
    assert unit.branch2.conv1.in_channels == 48  # the split half of 96
    assert unit.branch2.dwconv.groups == 48
    # no activation right after a depthwise conv (Ma et al. Fig. 3)
    names = [n for n, _ in unit.branch2.named_children()]
    assert names[names.index("dwconv") + 1 : names.index("dwconv") + 3] == ["norm2", "conv2"]
    final = last_activation(cifar.eval(), torch.randn(2, 3, 32, 32))
    assert cifar.final_act is cifar.conv5.act
    assert final.shape == (2, 1024, 4, 4) and (final >= 0).all()


def test_channel_shuffle_interleaves_the_halves():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_shufflenet_mimic_weight_mean_skips_depthwise_convs():
    model = _build("shufflenetv2", width=0.5, stem="cifar", norm="mimic")
    assert _only_last_bn(model)
    convs = dict(model.named_modules())
    touched = weight_mean_(model, WEIGHT_MEAN_MIN_FAN_IN)
    assert touched  # the wide 1×1 convs
    assert not [n for n in touched if convs[n].groups > 1]
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 3 * 2 + 13  # two per stride-2 unit, one per stride-1 unit
    for conv in depthwise:  # untouched: their filter means are not projected to zero
        assert conv.weight.flatten(1).mean(dim=1).abs().max() > 1e-4
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 36), rel=0.25)
    # official scalars: 1.2² at the end of branch2, 1.2 at branch1 and conv5
    unit = model.stage2[0]
    assert isinstance(unit.branch2.scale, ResidualScale)
    assert unit.branch2.scale.scale.item() == pytest.approx(1.44)
    assert unit.branch1.scale.scale.item() == pytest.approx(1.2)
    assert model.conv5.scale.scale.item() == pytest.approx(1.2)
    assert not any(isinstance(m, ResidualScale) for m in _build("shufflenetv2").modules())


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"width": 0.75}, "width must be one of 0.5, 1.0, 1.5, 2.0"),
        ({"width": True}, "width"),
        ({"stem": "tiny"}, "stem must be one of imagenet, cifar"),
        ({"norm": "dbn"}, "norm"),
        ({"act": "elu"}, "act"),
    ],
)
def test_shufflenet_rejects_invalid_options(options, word):
    with pytest.raises(ValueError, match=f"shufflenetv2: {word}"):
        _build("shufflenetv2", **options)
