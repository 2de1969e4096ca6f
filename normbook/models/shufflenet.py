"""ShuffleNet V2 (Ma et al. 2018) with pluggable norm, for MimicNorm's lightweight nets (MN-T1, MN-T3).

Layout (Ma et al. Table 5; torchvision's module names): stem 3×3 stride-2 conv with 24 channels,
norm, activation, 3×3 stride-2 max-pool; ``stage2``..``stage4`` of 4, 8, 4 units; ``conv5`` (1×1
conv to 1024 channels, 2048 for ``width=2.0``, norm, activation); global average pool; ``fc``.
Stage output channels by ``width``: 0.5 → 48/96/192, 1.0 → 116/232/464, 1.5 → 176/352/704,
2.0 → 244/488/976. Parameter counts (1000 classes, BN): 1,366,792 / 2,278,604 / 3,503,624 /
7,393,996 for 0.5×/1.0×/1.5×/2.0×, the counts of the released models (torchvision's 1.37M/2.28M).
With the CIFAR stem and 100 classes, 1.0× has 1,356,104 (pytorch-cifar100 reports 1.3M).

Units: the first unit of a stage (stride 2) sends the input through both branches — ``branch1``:
depthwise 3×3 stride 2, norm, 1×1 conv, norm, activation; ``branch2``: 1×1 conv, norm, activation,
depthwise 3×3 stride 2, norm, 1×1 conv, norm, activation — and concatenates them; the other units
(stride 1) split the channels in half, keep the first half and send the second through
``branch2``. Every unit ends with a channel shuffle of the two halves. Depthwise convs are
``policy.conv(..., groups=C)``; no activation follows them (Ma et al. Fig. 3c, d).

``stem="cifar"``: a 3×3 stride-1 stem and no max-pool (32→32 into ``stage2``, which then
downsamples to 16, 8, 4), as in the pytorch-cifar100 layout MimicNorm's CIFAR-100 code uses
(that layout's stem has BN but no ReLU; here the stem keeps Ma et al.'s activation).

Norms: ``bn``, ``none``, ``mimic``. MimicNorm's weight mean skips depthwise convs ("the total
number of weights in one channel is too small", Sec. 4): :func:`normbook.layers.weight_mean_`
only touches convs with per-filter fan-in in·kh·kw/groups > 50, and a depthwise 3×3 has 9, so
nothing here needs to choose. MimicNorm's branches (official ``shufflenetv2_nobn.py``) end in a
learnable scalar before their last activation: 1.2² for ``branch2`` (two 1×1 convs; the depthwise
conv is not counted), 1.2 for ``branch1`` and for ``conv5``, i.e. MimicNorm's 1.2^L/k with k = 1
(a concatenated branch does not accumulate variance over blocks); :func:`branch_scale` builds them
through ``policy.branch_scale(1, L)``. The official init counts a conv's fan-in as
k²·max(4, in/groups): 36 instead of 9 for a depthwise 3×3, 36 instead of 27 for the RGB stem;
:func:`mimic_narrow_fan_in_` applies that after ``policy.initialize`` (with the true fan-in the
activations of a mimic ShuffleNetV2 1.0× grow ~100× over the 16 units at init; with the official
one they stay within 0.4-1.9). Not reproduced: the official units' extra learnable scalar pair
(×1, +0) after ``branch2``.

``final_act`` is the activation after ``conv5``.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn as nn

from normbook.models.policy import NormPolicy, check_int_option
from normbook.models.registry import ModelInfo, register_model

FAMILY = "shufflenetv2"
NORMS: tuple[str, ...] = ("bn", "none", "mimic")
ACTS: tuple[str, ...] = ("relu",)
STEMS: tuple[str, ...] = ("imagenet", "cifar")
STEM_CHANNELS = 24
MIMIC_MIN_FAN_IN_CHANNELS = 4  # official shufflenetv2_nobn.py / squeezenet_nobn.py init
STAGE_REPEATS: tuple[int, ...] = (4, 8, 4)
# width -> (stage2, stage3, stage4, conv5) output channels (Ma et al. 2018 Table 5)
STAGE_CHANNELS: dict[float, tuple[int, int, int, int]] = {
    0.5: (48, 96, 192, 1024),
    1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024),
    2.0: (244, 488, 976, 2048),
}


def branch_scale(policy: NormPolicy, convs: int) -> nn.Module:
    """End of a concatenated branch with ``convs`` dense convs: MimicNorm's scalar 1.2^convs
    (the policy's 1.2^L/k at k = 1), identity for the other norms."""
    return policy.branch_scale(1, convs)


def mimic_narrow_fan_in_(model: nn.Module, min_channels: int = MIMIC_MIN_FAN_IN_CHANNELS) -> None:
    """MimicNorm's official init for its mobile nets: a conv's fan-in counts at least
    ``min_channels`` input channels per group, k²·max(min_channels, in/groups). Rescales weights
    drawn with the true fan-in (``policy.initialize``) by √(true/official); zero filter means stay
    zero. Only convs with fewer than ``min_channels`` channels per group change (depthwise, RGB)."""
    with torch.no_grad():
        for conv in model.modules():
            if isinstance(conv, nn.Conv2d) and conv.in_channels // conv.groups < min_channels:
                kernel = conv.weight[0, 0].numel()
                conv.weight.mul_(math.sqrt(conv.weight[0].numel() / (kernel * min_channels)))


def _sequential(layers: list[tuple[str, nn.Module]]) -> nn.Sequential:
    """An ``nn.Sequential`` of named layers without the policy's ``nn.Identity`` placeholders."""
    return nn.Sequential(OrderedDict((k, m) for k, m in layers if not isinstance(m, nn.Identity)))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups: (N, g·c, H, W) → view (N, g, c) → transpose → flatten."""
    n, channels, h, w = x.shape
    return x.view(n, groups, channels // groups, h, w).transpose(1, 2).reshape(n, channels, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNet V2 unit (Ma et al. Fig. 3c stride 1, Fig. 3d stride 2); output channels
    ``out_channels`` = 2 × each branch's."""

    def __init__(self, policy: NormPolicy, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"{FAMILY}: unit stride must be 1 or 2, got {stride}")
        if out_channels % 2:
            raise ValueError(f"{FAMILY}: unit out_channels must be even, got {out_channels}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"{FAMILY}: a stride-1 unit keeps its channels")
        half = out_channels // 2
        self.stride, self.in_channels, self.out_channels = stride, in_channels, out_channels
        if stride == 2:
            self.branch1: nn.Module = _sequential(
                [
                    (
                        "dwconv",
                        policy.conv(in_channels, in_channels, 3, stride, groups=in_channels),
                    ),
                    ("norm1", policy.norm(in_channels)),
                    ("conv", policy.conv(in_channels, half, 1)),
                    ("norm2", policy.norm(half)),
                    ("scale", branch_scale(policy, 1)),
                    ("act", policy.act()),
                ]
            )
            branch2_in = in_channels
        else:
            self.branch1 = nn.Identity()
            branch2_in = half
        self.branch2 = _sequential(
            [
                ("conv1", policy.conv(branch2_in, half, 1)),
                ("norm1", policy.norm(half)),
                ("act1", policy.act()),
                ("dwconv", policy.conv(half, half, 3, stride, groups=half)),
                ("norm2", policy.norm(half)),
                ("conv2", policy.conv(half, half, 1)),
                ("norm3", policy.norm(half)),
                ("scale", branch_scale(policy, 2)),
                ("act2", policy.act()),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            kept, x2 = x.chunk(2, dim=1)
            out = torch.cat([kept, self.branch2(x2)], dim=1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], dim=1)
        return channel_shuffle(out, 2)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, stride={self.stride}"


class ShuffleNetV2(nn.Module):
    """ShuffleNet V2: stem → stage2..4 → conv5 → avgpool → fc → head_norm (MN-T1, MN-T3)."""

    def __init__(
        self,
        num_classes: int,
        width: float = 1.0,
        *,
        stem: str = "imagenet",
        in_channels: int = 3,
        norm: str = "bn",
        act: str = "relu",
        init: str | None = None,
        norm_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        in_channels = check_int_option(in_channels, "in_channels", FAMILY)
        policy = NormPolicy(
            FAMILY, norm, act, norms=NORMS, acts=ACTS, init=init, **(norm_kwargs or {})
        )
        if isinstance(width, bool) or width not in STAGE_CHANNELS:
            raise ValueError(
                f"{FAMILY}: width must be one of {', '.join(map(str, STAGE_CHANNELS))},"
                f" got {width!r}"
            )
        if stem not in STEMS:
            raise ValueError(f"{FAMILY}: stem must be one of {', '.join(STEMS)}, got {stem!r}")
        *stage_channels, conv5_channels = STAGE_CHANNELS[width]
        self.width, self.stem_kind = float(width), stem
        stride = 2 if stem == "imagenet" else 1
        stem_layers = [
            ("conv", policy.conv(in_channels, STEM_CHANNELS, 3, stride)),
            ("norm", policy.norm(STEM_CHANNELS)),
            ("act", policy.act()),
        ]
        if stem == "imagenet":
            stem_layers.append(("pool", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)))
        self.stem = _sequential(stem_layers)
        channels = STEM_CHANNELS
        for stage, (out_channels, repeats) in enumerate(
            zip(stage_channels, STAGE_REPEATS, strict=True), start=2
        ):
            units = []
            for i in range(repeats):
                units.append(ShuffleUnit(policy, channels, out_channels, 2 if i == 0 else 1))
                channels = out_channels
            self.add_module(f"stage{stage}", nn.Sequential(*units))
        self.conv5 = _sequential(
            [
                ("conv", policy.conv(channels, conv5_channels, 1)),
                ("norm", policy.norm(conv5_channels)),
                ("scale", branch_scale(policy, 1)),
                ("act", policy.act()),
            ]
        )
        self.__dict__["_final_act"] = self.conv5.act  # a reference, not a second registration
        self.num_features = conv5_channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(conv5_channels, num_classes)
        self.head_norm = policy.head_norm(num_classes)
        self.policy = policy
        policy.initialize(self)
        if policy.init == "mimic":
            mimic_narrow_fan_in_(self)

    @property
    def final_act(self) -> nn.Module:
        """The activation after ``conv5`` (the last one before pooling)."""
        return self._final_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage4(self.stage3(self.stage2(self.stem(x))))
        x = self.flatten(self.avgpool(self.conv5(x)))
        return self.head_norm(self.fc(x))


@register_model(
    FAMILY,
    ModelInfo(
        summary="ShuffleNet V2 0.5×-2.0× (Ma et al. 2018), ImageNet or CIFAR stem (MN-T1, MN-T3)",
        norms=NORMS,
        acts=ACTS,
        input_shape=(3, 224, 224),
        options="width (0.5 | 1.0 | 1.5 | 2.0), stem (imagenet | cifar), init",
        tiny={"width": 0.5},
    ),
)
def shufflenetv2(
    num_classes: int,
    width: float = 1.0,
    stem: str = "imagenet",
    in_channels: int = 3,
    norm: str = "bn",
    act: str = "relu",
    init: str | None = None,
    **norm_kwargs,
) -> ShuffleNetV2:
    """``build_model("shufflenetv2", num_classes, width=..., stem=..., norm=...)``.

    Extra keyword arguments (``eps``, ``momentum``, ...) go to the normalization layers through
    :class:`~normbook.models.policy.NormPolicy`.
    """
    return ShuffleNetV2(
        num_classes,
        width,
        stem=stem,
        in_channels=in_channels,
        norm=norm,
        act=act,
        init=init,
        norm_kwargs=norm_kwargs,
    )
