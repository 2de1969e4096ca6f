"""CIFAR ResNets (He et al. 2016a/b) with pluggable norm, activation and residual-unit order.

Skeleton (He 2016a Sec. 4.2): a 3×3 conv stem with ``widths[0]`` channels, three stages of ``n``
residual blocks at 32×32, 16×16 and 8×8 (stride-2 at the stage changes), global average pool, fc.
Basic blocks (two 3×3 convs) give depth 6n+2 (20/32/44/56/110); bottleneck blocks (ResNet-B:
1×1, 3×3, 1×1 with expansion 4, He 2016b) give depth 9n+2 (110 with n=12, 164 with n=18); the
stage widths are the bottleneck's inner widths, so the stage outputs are 64/128/256.

Shortcuts are identity where shapes match; at a stage change (and the first bottleneck block,
16→64 channels) a 1×1 projection (``policy.shortcut_conv`` + ``policy.shortcut_norm``), He's
option B. The original CIFAR ResNet used option A (stride-2 subsampling + zero-padded channels);
the difference is 16·32 + 32·64 weights + 2·(32 + 64) BN = 2,752 parameters for the basic nets
(ResNet-20: 272,474 vs 269,722; ResNet-110: 1,730,714 vs 1,727,962), inside the 2% the tests allow
against He's 0.27M/1.7M. ResNet-164 (bottleneck) has 1,704,154 (He 2016b: 1.7M).

Units (``unit``; PAPERS.md IC-F3). A branch is the per-conv layer order below, repeated for each
conv of the block (2 basic, 3 bottleneck). The IC layer *is* BN + Dropout, so IC units have no
separate BN: the IC layer takes BN's place.

==================  ===========================  ===================  =========================
unit                per conv in the branch       after the addition   stem (after the RGB conv)
==================  ===========================  ===================  =========================
baseline            Conv-Norm-Act (no last Act)  Act                  Norm-Act
baseline, preact    Norm-Act-Conv (He 2016b)     —                    — (final Norm-Act)
① relu-ic-conv      Act-IC-Conv                  —                    — (final Act-IC)
② ic-conv-relu      IC-Conv-Act                  —                    Act (final IC)
③ conv-relu-ic      Conv-Act-IC                  —                    Act-IC
==================  ===========================  ===================  =========================

Our reading of the IC paper (Sec. 4.1 and Fig. 3, whose drawing is not in the text): following
He 2016b, each IC unit keeps a clean identity path ("a unique short path"), so no activation follows
the addition; the "extra activation and IC layers right after its element-wise addition" of the
last unit of version 1, and the "extra IC layer" of version 2, are the final layers before the
pooling/classifier, so that the classifier, like every conv, sees an IC-normalised input (version
3 ends its branch with IC and needs nothing). The stem is the RGB conv followed by the part of the
unit's order that comes after a conv (the part before it would act on the image). IC projection
shortcuts take the raw block input (as in the Keras ResNet v2 example whose schedule the paper
uses). Each IC layer keeps BN's γ, β, so an IC net has exactly the baseline's parameter count, as
the paper asks (Sec. 4.1). ``norm="ic"`` needs an IC unit and an IC unit needs ``norm="ic"``;
``unit=None`` picks ① for ``norm="ic"`` (the paper's default unit) and ``baseline`` otherwise.

Pre-activation blocks (``preact=True``, He 2016b): as in He's code, a block with a projection
shares its first Norm-Act between branch and shortcut; the stem is a bare conv and a final
Norm-Act precedes pooling. (He's code has no BN on the projection; here ``shortcut_norm`` adds one
for the BN-like norms, 2·C parameters.) IC units are their own orders and are not combined with
``preact``.

CReLU (Shang et al. 2017, PAPERS.md NP-D1, NP-F1): the activations *inside* a branch (with a conv
before and after them: basic: after the first conv's norm; bottleneck: after the first two convs
only) use ``policy.act()`` and double the next layer's channels (``policy.act_multiplier``); every
activation that touches the identity path or the head (after the addition, the stem, the first
pre-activation of a block, the final one) must keep the width: the policy's activation, or ReLU
where that is CReLU. So the identity path and the filter counts are unchanged. NormProp norms use ``policy.conv`` (NormProp convs) and BN on the
projection shortcut (Shang et al. footnote 2, via ``policy.shortcut_norm``).

MimicNorm's residual scale ends every branch (``policy.branch_scale(k, convs)``, k the 1-based
block index); Fixup's scalar biases (``policy.scalar_bias()``) precede every branch conv and every
activation, one follows the branch scale (Fixup's bias before the post-addition ReLU) and one
precedes the fc. ``final_act`` is the last activation module run before pooling.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn as nn

from normbook.layers import create_act_layer
from normbook.models.policy import (
    MODEL_ACTS,
    MODEL_NORMS,
    NormPolicy,
    ResidualBlock,
    add_stages,
    check_depth,
    check_int_option,
    stage_widths,
)
from normbook.models.registry import ModelInfo, register_model

FAMILY = "resnet_cifar"
UNITS: tuple[str, ...] = ("baseline", "relu-ic-conv", "ic-conv-relu", "conv-relu-ic")
IC_UNITS: tuple[str, ...] = UNITS[1:]
BOTTLENECK_EXPANSION = 4

# layer order around each conv of a residual branch (IC-F3; He 2016b for "preact")
_LAYER_ORDER: dict[str, tuple[str, ...]] = {
    "baseline": ("conv", "norm", "act"),
    "preact": ("norm", "act", "conv"),
    "relu-ic-conv": ("act", "ic", "conv"),
    "ic-conv-relu": ("ic", "conv", "act"),
    "conv-relu-ic": ("conv", "act", "ic"),
}
# what follows the stem's RGB conv, and what follows the last addition (IC-F3's last-unit rule)
_STEM: dict[str, tuple[str, ...]] = {
    "baseline": ("norm", "act"),
    "preact": (),
    "relu-ic-conv": (),
    "ic-conv-relu": ("act",),
    "conv-relu-ic": ("act", "ic"),
}
_FINAL: dict[str, tuple[str, ...]] = {
    "baseline": (),
    "preact": ("norm", "act"),
    "relu-ic-conv": ("act", "ic"),
    "ic-conv-relu": ("ic",),
    "conv-relu-ic": (),
}


def path_act(policy: NormPolicy) -> nn.Module:
    """The activation on the identity path or head: the policy's, unless it changes the width
    (CReLU), in which case ReLU (Shang et al.: "the activation after the addition stays ReLU")."""
    return policy.act() if policy.act_multiplier == 1 else create_act_layer("relu")


class LayerSequence:
    """Builds an ``nn.Sequential`` from layer tokens in forward order, tracking the channel count.

    Tokens: ``conv`` (takes the next ``(out_channels, kernel_size, stride)`` spec), ``norm``,
    ``ic``, ``act``. An ``act`` with a conv before *and* after it in the same sequence is inside the
    branch (``policy.act()``, may be CReLU); any other is :func:`path_act`. Fixup's scalar biases
    go before each ``act`` and, with ``conv_bias=True``, before each conv. Identity modules (a
    policy's "nothing here") are left out, so the Sequential shows the real order.
    """

    def __init__(self, policy: NormPolicy, channels: int) -> None:
        self.policy, self.channels = policy, channels
        self.layers: OrderedDict[str, nn.Module] = OrderedDict()
        self.convs: list[nn.Module] = []
        self.acts: list[nn.Module] = []
        self._counts: dict[str, int] = {}

    def add(self, kind: str, module: nn.Module) -> None:
        if isinstance(module, nn.Identity):
            return
        self._counts[kind] = self._counts.get(kind, 0) + 1
        self.layers[f"{kind}{self._counts[kind]}"] = module

    def build(
        self,
        tokens: Sequence[str],
        convs: Sequence[tuple[int, int, int]] = (),
        conv_bias: bool = True,
    ) -> LayerSequence:
        specs = list(convs)
        conv_positions = [i for i, t in enumerate(tokens) if t == "conv"]
        if len(conv_positions) != len(specs):
            raise ValueError(f"{FAMILY}: {len(conv_positions)} conv tokens for {len(specs)} specs")
        policy = self.policy
        for i, token in enumerate(tokens):
            if token == "conv":
                out_channels, kernel_size, stride = specs.pop(0)
                if conv_bias:
                    self.add("bias", policy.scalar_bias())
                conv = policy.conv(self.channels, out_channels, kernel_size, stride)
                self.add("conv", conv)
                self.convs.append(conv)
                self.channels = out_channels
            elif token == "norm":
                self.add("norm", policy.norm(self.channels))
            elif token == "ic":
                self.add("ic", policy.ic(self.channels))
            elif token == "act":
                inside = any(p < i for p in conv_positions) and any(p > i for p in conv_positions)
                self.add("bias", policy.scalar_bias())
                act = policy.act() if inside else path_act(policy)
                self.add("act", act)
                self.acts.append(act)
                if inside:
                    self.channels *= policy.act_multiplier
            else:  # pragma: no cover - internal tables only
                raise ValueError(f"{FAMILY}: unknown layer token {token!r}")
        return self

    def sequential(self) -> nn.Sequential:
        return nn.Sequential(self.layers)


class CifarResidualBlock(ResidualBlock):
    """One residual unit: ``out_act(branch(x) + shortcut(x))`` in the order of ``unit``.

    ``branch`` is an ``nn.Sequential`` whose module names (``conv1``, ``norm1``, ``act1``,
    ``ic1``, ``bias1``, ``scale``) read in forward order; ``preact`` holds the Norm-Act a
    pre-activation projection block shares with its shortcut (else ``None``).
    """

    def __init__(
        self,
        policy: NormPolicy,
        in_channels: int,
        width: int,
        stride: int,
        *,
        bottleneck: bool,
        order: str,
        block_index: int,
    ) -> None:
        super().__init__()
        out_channels = width * BOTTLENECK_EXPANSION if bottleneck else width
        convs = (
            [(width, 1, 1), (width, 3, stride), (out_channels, 1, 1)]
            if bottleneck
            else [(width, 3, stride), (out_channels, 3, 1)]
        )
        projection = stride != 1 or in_channels != out_channels
        tokens = [t for _ in convs for t in _LAYER_ORDER[order]]
        post_add_act = order == "baseline"
        if post_add_act:  # the classic unit's last activation comes after the addition
            tokens = tokens[:-1]
        self.preact: nn.Sequential | None = None
        if order == "preact" and projection:  # He's code: the first Norm-Act feeds both paths
            first_conv = tokens.index("conv")
            shared = LayerSequence(policy, in_channels).build(tokens[:first_conv])
            self.preact = shared.sequential()
            tokens = tokens[first_conv:]
        branch = LayerSequence(policy, in_channels).build(tokens, convs)
        branch.add("scale", policy.branch_scale(block_index, len(convs)))
        if post_add_act:
            branch.add("bias", policy.scalar_bias())  # Fixup: bias before the post-addition act
        self.branch = branch.sequential()
        self._branch_convs = branch.convs
        self.acts = branch.acts
        if projection:
            shortcut = OrderedDict(
                conv=policy.shortcut_conv(in_channels, out_channels, stride),
                norm=policy.shortcut_norm(out_channels),
            )
            self.shortcut: nn.Module = nn.Sequential(
                OrderedDict((k, m) for k, m in shortcut.items() if not isinstance(m, nn.Identity))
            )
        else:
            self.shortcut = nn.Identity()
        self.out_act: nn.Module | None = path_act(policy) if post_add_act else None
        if self.out_act is not None:
            self.acts = [*self.acts, self.out_act]
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def branch_weights(self) -> list[nn.Module]:
        return list(self._branch_convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact is not None:
            x = self.preact(x)
        out = self.branch(x) + self.shortcut(x)
        return self.out_act(out) if self.out_act is not None else out


class CifarResNet(nn.Module):
    """CIFAR ResNet: stem → layer1..3 → ``final`` (norm/act/IC) → avgpool → fc → head_norm.

    See the module docstring for the units, shortcuts, CReLU, NormProp, MimicNorm and Fixup
    placement (PAPERS.md IC-F3, IC-T1, NP-F1, NP-T2/T3, DBN-T1, MN-T1).
    """

    def __init__(
        self,
        num_classes: int,
        depth: int = 20,
        *,
        bottleneck: bool = False,
        preact: bool = False,
        widths: Sequence[int] = (16, 32, 64),
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
        policy = NormPolicy(FAMILY, norm, act, init=init, **(norm_kwargs or {}))
        for name, value in (("bottleneck", bottleneck), ("preact", preact)):
            if not isinstance(value, bool):
                raise ValueError(f"{FAMILY}: {name} must be True or False, got {value!r}")
        uses_ic = norm == "ic"  # validation only: which units the IC layer can be placed by
        if unit is None:  # the IC paper's recommended unit ① for norm="ic" (IC-T1 text)
            unit = IC_UNITS[0] if uses_ic else "baseline"
        if unit not in UNITS:
            raise ValueError(f"{FAMILY}: unit must be one of {', '.join(UNITS)}, got {unit!r}")
        if uses_ic and unit not in IC_UNITS:
            raise ValueError(
                f"{FAMILY}: norm='ic' needs an IC unit ({', '.join(IC_UNITS)}), got unit={unit!r}"
            )
        if unit in IC_UNITS and not uses_ic:
            raise ValueError(f"{FAMILY}: unit={unit!r} places IC layers and needs norm='ic'")
        if preact and unit in IC_UNITS:
            raise ValueError(
                f"{FAMILY}: preact=True is the pre-activation baseline; IC units fix their own"
                f" order (unit={unit!r} needs preact=False)"
            )
        n = check_depth(depth, FAMILY, 9 if bottleneck else 6)
        widths = stage_widths(widths, width_multiplier, FAMILY)
        if len(widths) != 3:
            raise ValueError(f"{FAMILY}: widths must have 3 stage widths, got {len(widths)}")
        order = "preact" if preact else unit
        self.depth, self.unit, self.preact, self.bottleneck = depth, unit, preact, bottleneck
        self.widths = tuple(widths)

        stem = LayerSequence(policy, in_channels).build(
            ("conv", *_STEM[order]), [(widths[0], 3, 1)], False
        )
        self.stem = stem.sequential()
        acts = list(stem.acts)
        channels, block_acts = add_stages(
            self,
            widths[0],
            widths,
            [n] * len(widths),
            lambda c, w, stride, k: CifarResidualBlock(
                policy, c, w, stride, bottleneck=bottleneck, order=order, block_index=k
            ),
        )
        acts += block_acts
        final = LayerSequence(policy, channels).build(_FINAL[order])
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
        """The last activation module run before pooling (NP-T1's "after the last ReLU")."""
        return self._final_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.flatten(self.avgpool(self.final(x)))
        return self.head_norm(self.fc(self.fc_bias(x)))


@register_model(
    FAMILY,
    ModelInfo(
        summary="CIFAR ResNet (He 2016a/b): basic/bottleneck, post/pre-activation, IC units"
        " (IC-F3), CReLU blocks (NP-F1)",
        norms=MODEL_NORMS,
        acts=MODEL_ACTS,
        input_shape=(3, 32, 32),
        options="depth (6n+2 basic, 9n+2 bottleneck), bottleneck, preact, widths, "
        "width_multiplier, unit (baseline | relu-ic-conv | ic-conv-relu | conv-relu-ic), init",
        tiny={"depth": 8, "widths": (4, 8, 8)},
    ),
)
def resnet_cifar(
    num_classes: int,
    depth: int = 20,
    bottleneck: bool = False,
    preact: bool = False,
    widths: Sequence[int] = (16, 32, 64),
    width_multiplier: float = 1.0,
    unit: str | None = None,
    in_channels: int = 3,
    norm: str = "bn",
    act: str = "relu",
    init: str | None = None,
    **norm_kwargs,
) -> CifarResNet:
    """``build_model("resnet_cifar", num_classes, depth=..., norm=..., act=..., unit=...)``.

    ``unit=None`` is ``"baseline"``, or ``"relu-ic-conv"`` (the IC paper's choice) for
    ``norm="ic"``. Extra keyword arguments (``drop_prob``, ``group_size``, ``eps``, ...) go to the
    normalization layers through :class:`~normbook.models.policy.NormPolicy`.
    """
    return CifarResNet(
        num_classes,
        depth,
        bottleneck=bottleneck,
        preact=preact,
        widths=widths,
        width_multiplier=width_multiplier,
        unit=unit,
        in_channels=in_channels,
        norm=norm,
        act=act,
        init=init,
        norm_kwargs=norm_kwargs,
    )
