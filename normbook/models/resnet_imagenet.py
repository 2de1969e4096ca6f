"""ImageNet ResNets (He et al. 2016a) in torchvision's layout, with pluggable norm and activation.

Skeleton: a 7×7 stride-2 stem conv with 64 channels, norm, activation and a 3×3 stride-2 max-pool;
four stages (``layer1``..``layer4``, widths 64/128/256/512, stride 2 at the start of stages 2-4);
global average pool; ``fc``. ResNet-18/34 use basic blocks (two 3×3 convs; [2,2,2,2] and
[3,4,6,3] blocks), ResNet-50/101 bottleneck blocks (1×1, 3×3, 1×1 with expansion 4; [3,4,6,3] and
[3,4,23,3]) with the stride in the 3×3 conv (torchvision's "ResNet v1.5"). Where the shape changes
the shortcut is a 1×1 projection conv followed by ``policy.shortcut_norm`` (He's option B).
Parameter counts (1000 classes, ``norm="bn"``): 11,689,512 / 21,797,672 / 25,557,032 / 44,549,160,
torchvision's numbers (He 2016a's 11.7M/21.8M/25.6M/44.5M).

``stem="cifar"`` is the CIFAR variant MimicNorm trains on CIFAR-100 (PAPERS.md MN-T1; the official
code's ResNet18/50): a 3×3 stride-1 stem conv with 64 channels and no max-pool, the same four
stages (32→32→16→8→4 on CIFAR). ResNet-18 for 100 classes has 11,220,132 parameters.

Norms (see :mod:`normbook.models.policy`): ``bn``, ``none``, ``none-nobias``, ``dbn``, ``dbn-l1``
and ``dbn-scale-l1`` (the stem's norm is the first one built, so the ``*-l1`` norms put their one
DBN on the stem: DBN-T3), ``normprop2``/``normprop3`` (NormProp convs, BN on the projection
shortcut: Shang et al. footnote 2, NP-T4), ``mimic`` and ``fixup``.

CReLU (NP-D1, NP-F1): inside the branch only (basic: after the first conv; bottleneck: after the
first two convs, Shang et al. Fig. 1b), doubling the next conv's input channels; the stem, the
identity path and the post-addition activation keep ReLU, so the filter counts do not change.

MimicNorm (MN-T1, MN-T3): no normalization but the last BN on the logits; every branch ends in a
learnable scalar 1.2^L/k (L convs in the branch, k the 1-based block index over the whole net);
conv init N(0, 2/fan_in) and weight mean through :meth:`NormPolicy.initialize`. The "scaled
downsample": our reading of the official code (Kid-key/MimicNorm, ``resnet_nobn.py`` for both
CIFAR-100 and ImageNet) is that the projection shortcut keeps its 1×1 conv (with a bias) and the
BN after it is replaced by a learnable scalar initialised to 1.2 (= 1.2^1/1, a one-conv branch
that accumulates nothing; the paper's text does not say). That scalar is built here, in
:func:`shortcut_scale`, because :class:`NormPolicy` has no builder for it.

Fixup (Zhang et al. 2019): scalar biases before every branch conv and activation and after the
branch multiplier (:class:`~normbook.models.resnet_cifar.LayerSequence`), one before the fc; the
projection shortcut is a bare 1×1 conv.

IC units (Chen et al. 2019, PAPERS.md IC-F5: ResNet-50 with ReLU-IC-Conv on ImageNet): ``unit``
and ``norm="ic"`` place IC layers exactly as :mod:`normbook.models.resnet_cifar` does (same
per-conv orders, stem and final layers, same validation; see its docstring for our reading of the
paper's Fig. 3): the stem is the 7×7 conv followed by the part of the unit's order that comes after
a conv, then the max-pool; the blocks keep a clean identity path; ① ends with ReLU + IC and ② with
IC before pooling. The parameter count equals the baseline's.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from normbook.layers import ResidualScale, mimic_residual_init
from normbook.models.policy import (
    NormPolicy,
    ResidualBlock,
    add_stages,
    check_int_option,
    stage_widths,
)
from normbook.models.registry import ModelInfo, register_model
from normbook.models.resnet_cifar import (
    _FINAL,
    _LAYER_ORDER,
    _STEM,
    IC_UNITS,
    UNITS,
    LayerSequence,
    path_act,
)

FAMILY = "resnet_imagenet"
STEMS: tuple[str, ...] = ("imagenet", "cifar")
NORMS: tuple[str, ...] = (
    "bn",
    "none",
    "none-nobias",
    "dbn",
    "dbn-l1",
    "dbn-scale-l1",
    "normprop2",
    "normprop3",
    "mimic",
    "fixup",
    "ic",
)
ACTS: tuple[str, ...] = ("relu", "crelu", "elu")
STAGE_WIDTHS: tuple[int, ...] = (64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4
# depth -> (bottleneck blocks?, blocks per stage) (He 2016a Table 1)
LAYOUTS: dict[int, tuple[bool, tuple[int, ...]]] = {
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
}


def shortcut_scale(policy: NormPolicy) -> nn.Module:
    """MimicNorm's "scaled downsample": a learnable scalar (init 1.2) where the projection
    shortcut's BN would be (official code); identity for every other policy."""
    return ResidualScale(mimic_residual_init(1, 1)) if policy.is_mimic else nn.Identity()


def _sequential(modules: OrderedDict[str, nn.Module]) -> nn.Sequential:
    """An ``nn.Sequential`` of ``modules`` without the policy's ``nn.Identity`` placeholders."""
    return nn.Sequential(
        OrderedDict((k, m) for k, m in modules.items() if not isinstance(m, nn.Identity))
    )


class ResNetBlock(ResidualBlock):
    """Basic (two 3×3) or bottleneck (1×1, 3×3 with the stride, 1×1 ×4) block:
    ``out_act(branch(x) + downsample(x))``.

    ``branch`` is an ``nn.Sequential`` named in forward order (``conv1``, ``norm1``, ``act1``, ...,
    ``scale``; Fixup adds ``bias1``...); ``downsample`` is the projection (``conv``, ``norm`` or
    MimicNorm's ``scale``) or ``nn.Identity`` where the shapes match.
    """

    def __init__(
        self,
        policy: NormPolicy,
        in_channels: int,
        width: int,
        stride: int,
        *,
        bottleneck: bool,
        block_index: int,
        order: str = "baseline",
    ) -> None:
        super().__init__()
        out_channels = width * BOTTLENECK_EXPANSION if bottleneck else width
        convs = (
            [(width, 1, 1), (width, 3, stride), (out_channels, 1, 1)]
            if bottleneck
            else [(width, 3, stride), (out_channels, 3, 1)]
        )
        # the unit's order per conv (baseline: Conv-Norm-Act, the last activation after the addition)
        tokens = [t for _ in convs for t in _LAYER_ORDER[order]]
        post_add_act = order == "baseline"
        if post_add_act:
            tokens = tokens[:-1]
        branch = LayerSequence(policy, in_channels).build(tokens, convs)
        branch.add("scale", policy.branch_scale(block_index, len(convs)))
        if post_add_act:
            branch.add("bias", policy.scalar_bias())  # Fixup: bias before the post-addition act
        self.branch = branch.sequential()
        self._branch_convs = branch.convs
        if stride != 1 or in_channels != out_channels:
            self.downsample: nn.Module = _sequential(
                OrderedDict(
                    conv=policy.shortcut_conv(in_channels, out_channels, stride),
                    norm=policy.shortcut_norm(out_channels),
                    scale=shortcut_scale(policy),
                )
            )
        else:
            self.downsample = nn.Identity()
        self.out_act: nn.Module | None = path_act(policy) if post_add_act else None
        self.acts = [*branch.acts, *([self.out_act] if self.out_act is not None else [])]
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def branch_weights(self) -> list[nn.Module]:
        return list(self._branch_convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x) + self.downsample(x)
        return self.out_act(out) if self.out_act is not None else out


class ResNet(nn.Module):
    """ImageNet ResNet: stem → layer1..4 → avgpool → fc → head_norm (PAPERS.md DBN-T3, NP-T4,
    MN-T1, MN-T3); see the module docstring for the stem, norms, CReLU and MimicNorm placement."""

    def __init__(
        self,
        num_classes: int,
        depth: int = 50,
        *,
        stem: str = "imagenet",
        width_multiplier: float = 1.0,
        unit: str | None = None,
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
        if isinstance(depth, bool) or not isinstance(depth, int) or depth not in LAYOUTS:
            raise ValueError(
                f"{FAMILY}: depth must be one of {', '.join(map(str, LAYOUTS))}, got {depth!r}"
            )
        if stem not in STEMS:
            raise ValueError(f"{FAMILY}: stem must be one of {', '.join(STEMS)}, got {stem!r}")
        if unit is None:  # the IC paper's unit ① for norm="ic" (IC-F5), else the classic unit
            unit = IC_UNITS[0] if norm == "ic" else "baseline"
        if unit not in UNITS:
            raise ValueError(f"{FAMILY}: unit must be one of {', '.join(UNITS)}, got {unit!r}")
        if (norm == "ic") != (unit in IC_UNITS):
            raise ValueError(
                f"{FAMILY}: norm='ic' goes with an IC unit ({', '.join(IC_UNITS)}) and an IC unit"
                f" with norm='ic'; got norm={norm!r}, unit={unit!r}"
            )
        self.unit = unit
        bottleneck, blocks_per_stage = LAYOUTS[depth]
        widths = stage_widths(STAGE_WIDTHS, width_multiplier, FAMILY)
        self.depth, self.stem_kind, self.bottleneck = depth, stem, bottleneck
        self.widths = tuple(widths)

        stem_conv = (widths[0], 7, 2) if stem == "imagenet" else (widths[0], 3, 1)
        stem_layers = LayerSequence(policy, in_channels).build(
            ("conv", *_STEM[unit]), [stem_conv], False
        )
        if stem == "imagenet":
            stem_layers.add("pool", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.stem = stem_layers.sequential()
        acts = list(stem_layers.acts)
        channels, block_acts = add_stages(
            self,
            widths[0],
            widths,
            blocks_per_stage,
            lambda c, w, stride, k: ResNetBlock(
                policy, c, w, stride, bottleneck=bottleneck, block_index=k, order=unit
            ),
        )
        acts += block_acts
        final = LayerSequence(policy, channels).build(_FINAL[unit])  # IC-F3's last-unit rule
        self.final = final.sequential()
        acts += final.acts
        self.__dict__["_final_act"] = acts[-1]  # a reference, not a second registration
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc_bias = policy.scalar_bias()  # Fixup's bias before the classifier
        self.fc = nn.Linear(channels, num_classes)
        self.head_norm = policy.head_norm(num_classes)
        self.policy = policy
        policy.initialize(self)

    @property
    def final_act(self) -> nn.Module:
        """The last activation run before pooling (the baseline's: the last block's post-addition
        activation)."""
        return self._final_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.flatten(self.avgpool(self.final(x)))
        return self.head_norm(self.fc(self.fc_bias(x)))


@register_model(
    FAMILY,
    ModelInfo(
        summary="ImageNet ResNet-18/34/50/101 (He 2016a, torchvision layout; CIFAR stem for"
        " MimicNorm MN-T1); DBN-T3, NP-T4, MN-T3",
        norms=NORMS,
        acts=ACTS,
        input_shape=(3, 224, 224),
        options="depth (18 | 34 | 50 | 101), stem (imagenet | cifar), width_multiplier, init,"
        " unit (baseline | relu-ic-conv | ic-conv-relu | conv-relu-ic, with norm='ic': IC-F5)",
        tiny={"depth": 18, "width_multiplier": 0.0625},
    ),
)
def resnet_imagenet(
    num_classes: int,
    depth: int = 50,
    stem: str = "imagenet",
    width_multiplier: float = 1.0,
    unit: str | None = None,
    in_channels: int = 3,
    norm: str = "bn",
    act: str = "relu",
    init: str | None = None,
    **norm_kwargs,
) -> ResNet:
    """``build_model("resnet_imagenet", num_classes, depth=..., stem=..., norm=..., act=...)``.

    ``unit`` (IC-F5): ``None`` is ``"baseline"``, or ``"relu-ic-conv"`` for ``norm="ic"``.

    Extra keyword arguments (``group_size``, ``eps``, ``momentum``, ...) go to the normalization
    layers through :class:`~normbook.models.policy.NormPolicy`.
    """
    return ResNet(
        num_classes,
        depth,
        stem=stem,
        width_multiplier=width_multiplier,
        unit=unit,
        in_channels=in_channels,
        norm=norm,
        act=act,
        init=init,
        norm_kwargs=norm_kwargs,
    )
